//! What `openssl s_client` sees of tern's TLS: the full chain from the `cert` file (leaf and
//! intermediate, verified against the root alone), and SNI choosing between the default
//! certificate and a `tls-sni-cert` one.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tern_e2e::{PortBlock, ServerKind, ServerOptions, TestServer};

/// A root, an intermediate it signs, and two leaves the intermediate signs: the default one
/// (127.0.0.1, localhost) and one for `turn.sni.test`. Each leaf's file holds the leaf and
/// then the intermediate, as a CA's "fullchain.pem" does.
struct ChainPki {
    dir: PathBuf,
    root: PathBuf,
    default_chain: PathBuf,
    default_key: PathBuf,
    sni_chain: PathBuf,
    sni_key: PathBuf,
}

const SNI_NAME: &str = "turn.sni.test";

impl ChainPki {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tern-e2e-chain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_params = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p
        };
        let root = CertifiedIssuer::self_signed(
            ca_params("tern chain test root"),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("tern chain test intermediate"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        let leaf = |names: Vec<String>, cn: &str| {
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &intermediate).unwrap();
            (
                format!("{}{}", cert.pem(), intermediate.pem()),
                key.serialize_pem(),
            )
        };
        let (default_chain, default_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "tern default leaf",
        );
        let (sni_chain, sni_key) = leaf(vec![SNI_NAME.into()], "tern sni leaf");
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Self {
            root: write("root.pem", &root.pem()),
            default_chain: write("default.pem", &default_chain),
            default_key: write("default.key", &default_key),
            sni_chain: write("sni.pem", &sni_chain),
            sni_key: write("sni.key", &sni_key),
            dir,
        }
    }
}

impl Drop for ChainPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `openssl s_client -showcerts` against `addr` with `version`, SNI `servername` if any,
/// verifying against `root` only; its whole output.
fn s_client(
    openssl: &Path,
    addr: SocketAddr,
    root: &Path,
    version: &str,
    servername: Option<&str>,
) -> String {
    let mut cmd = Command::new(openssl);
    cmd.args(["s_client", "-connect", &addr.to_string(), version])
        .args(["-showcerts", "-verify_return_error"])
        .arg("-CAfile")
        .arg(root);
    match servername {
        Some(name) => cmd.args(["-servername", name, "-verify_hostname", name]),
        None => cmd.arg("-noservername"),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    // Closing stdin ends s_client once the handshake is done (or failed).
    let _ = child.stdin.take().map(|mut s| s.write_all(b""));
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn openssl_sees_the_full_chain_and_sni_picks_the_certificate() {
    let Some(openssl) = tern_e2e::prereq::tool("openssl", "apt-get install -y openssl") else {
        return;
    };
    let pki = ChainPki::new();
    let tls_port = PortBlock::reserve();
    let mut options = ServerOptions::rest("chain-secret", "tern.test");
    options.extra_args = vec![
        format!("--cert={}", pki.default_chain.display()),
        format!("--pkey={}", pki.default_key.display()),
        format!("--tls-listening-port={}", tls_port.listen_port()),
        format!(
            "--tls-sni-cert={SNI_NAME}:{}:{}",
            pki.sni_chain.display(),
            pki.sni_key.display()
        ),
    ];
    let mut server = TestServer::start(ServerKind::Tern, &options);
    server.wait_healthy(Duration::from_secs(5));
    let addr = SocketAddr::from(([127, 0, 0, 1], tls_port.listen_port()));
    for version in ["-tls1_2", "-tls1_3"] {
        // No SNI: the default certificate, with its intermediate; the root alone verifies it.
        let text = s_client(&openssl, addr, &pki.root, version, None);
        let verified = text.contains("Verify return code: 0 (ok)");
        assert!(verified, "{version} without SNI:\n{text}");
        assert!(
            text.contains("CN = tern default leaf") || text.contains("CN=tern default leaf"),
            "{text}"
        );
        assert!(
            text.contains(" 1 s:") && text.contains("tern chain test intermediate"),
            "the chain has the intermediate at depth 1:\n{text}"
        );
        let expected = if version == "-tls1_2" {
            "TLSv1.2"
        } else {
            "TLSv1.3"
        };
        assert!(text.contains(expected), "{version}:\n{text}");
        // SNI for the other name: its own certificate, verified for that name.
        let text = s_client(&openssl, addr, &pki.root, version, Some(SNI_NAME));
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{version} with SNI:\n{text}"
        );
        assert!(
            text.contains("tern sni leaf"),
            "SNI {SNI_NAME} picks its certificate:\n{text}"
        );
        assert!(!text.contains("tern default leaf"), "{text}");
        // SNI for an unknown name: the default certificate, which does not verify for it.
        let text = s_client(&openssl, addr, &pki.root, version, Some("other.sni.test"));
        assert!(text.contains("tern default leaf"), "{text}");
        assert!(text.contains("hostname mismatch"), "{text}");
    }
    server.assert_alive();
}
