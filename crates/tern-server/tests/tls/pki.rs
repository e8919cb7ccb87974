//! A throw-away PKI for the tests: a root CA, an intermediate, and leaves it issues, written
//! as PEM files into a directory of the test's own.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};

/// The committed test keys (see keys/README.md).
pub const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/keys");

/// A test key: its PEM as the key file holds it, and the same key for rcgen to certify.
pub struct TestKey {
    pub file_pem: String,
    pub pair: KeyPair,
}

impl TestKey {
    /// A fresh ECDSA P-256 key (PKCS#8).
    pub fn generate() -> Self {
        let pair = KeyPair::generate().unwrap();
        Self {
            file_pem: pair.serialize_pem(),
            pair,
        }
    }

    /// A committed key: `file` is what the key file holds, `pkcs8` the same key as PKCS#8.
    pub fn committed(file: &str, pkcs8: &str) -> Self {
        let read = |f: &str| std::fs::read_to_string(Path::new(KEYS).join(f)).unwrap();
        Self {
            file_pem: read(file),
            pair: KeyPair::from_pem(&read(pkcs8)).unwrap(),
        }
    }
}

/// A leaf certificate written to files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

pub struct Pki {
    pub dir: PathBuf,
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("tern test {name}"));
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

impl Pki {
    /// A new PKI with a directory of its own, named after the test.
    pub fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tern-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root =
            CertifiedIssuer::self_signed(ca_params("root"), KeyPair::generate().unwrap()).unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("intermediate"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        Self {
            dir,
            root,
            intermediate,
        }
    }

    /// Writes `contents` to `name` in the test's directory.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A leaf for `names` (DNS names or IP addresses) with a fresh key; the certificate file
    /// `<stem>.crt` holds the leaf and the intermediate, the key file `<stem>.key`.
    pub fn leaf(&self, stem: &str, names: &[&str]) -> Leaf {
        self.leaf_with(stem, names, TestKey::generate(), |_| {}, true)
    }

    /// A leaf with a given key, parameters adjusted by `adjust`, and the intermediate in the
    /// certificate file or not.
    pub fn leaf_with(
        &self,
        stem: &str,
        names: &[&str],
        key: TestKey,
        adjust: impl FnOnce(&mut CertificateParams),
        with_intermediate: bool,
    ) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        adjust(&mut params);
        let cert = params.signed_by(&key.pair, &self.intermediate).unwrap();
        let mut pem = cert.pem();
        if with_intermediate {
            pem.push_str(&self.intermediate.pem());
        }
        Leaf {
            cert: self.write(&format!("{stem}.crt"), pem),
            key: self.write(&format!("{stem}.key"), &key.file_pem),
            der: cert.der().clone(),
        }
    }

    /// A client trusting the root only, with these versions and ALPN protocols.
    pub fn client(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.root.der().clone()).unwrap();
        #[allow(deprecated)] // the ring provider, as the server uses
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The name a client connects to: an IP address (no SNI is sent) or a DNS name (sent as SNI).
pub fn server_name(name: &str) -> ServerName<'static> {
    match name.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(name.to_owned()).unwrap(),
    }
}
