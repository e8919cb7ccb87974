//! TURN over TLS against tern (RFC 8656 §3.1): `tern probe --transport tls` passes every
//! step on the TLS port and on the plain listening port (the first byte tells TLS from plain
//! TURN on every TCP port), plain TCP works on the TLS port, openssl handshakes with TLS 1.2
//! and 1.3, and `no-tlsv1_2` refuses 1.2. A certificate reload (SIGUSR2, or the file watch)
//! serves new connections while an allocation on an old connection keeps relaying.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use tern_e2e::{
    http_get, run_bounded, tern_bin, PortBlock, RawClient, ServerKind, ServerOptions, TestServer,
};

mod tls_pki;
use tls_pki::Pki;

const SECRET: &str = "tls-e2e-secret";
const REALM: &str = "tern.test";

/// tern with TLS on `tls_port` (and on the listening port, by the first byte).
fn start_tls(pki: &Pki, tls_port: u16, extra: &[&str]) -> TestServer {
    let mut options = ServerOptions::rest(SECRET, REALM);
    options.extra_args = vec![
        format!("--cert={}", pki.cert.display()),
        format!("--pkey={}", pki.key.display()),
        format!("--tls-listening-port={tls_port}"),
    ];
    options
        .extra_args
        .extend(extra.iter().map(|s| s.to_string()));
    let server = TestServer::start(ServerKind::Tern, &options);
    server.wait_healthy(Duration::from_secs(5));
    server
}

fn probe(addr: SocketAddr, transport: &str, ca: Option<&PathBuf>) -> tern_e2e::Output {
    let mut cmd = Command::new(tern_bin());
    cmd.args(["probe", &addr.to_string(), "--transport", transport]);
    cmd.args(["--secret", SECRET, "--timeout", "2"]);
    if let Some(ca) = ca {
        cmd.arg("--ca").arg(ca);
    }
    run_bounded(&mut cmd, Duration::from_secs(30))
}

#[test]
fn probe_over_tls_passes_on_the_tls_port_and_the_plain_port() {
    let pki = Pki::new("probe");
    let tls_port = PortBlock::reserve();
    let mut server = start_tls(&pki, tls_port.listen_port(), &[]);
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], tls_port.listen_port()));
    let out = probe(tls_addr, "tls", Some(&pki.ca));
    tern_e2e::assert_probe_relayed(&out, "probe --transport tls to the TLS port");
    let out = probe(server.addr(), "tls", Some(&pki.ca));
    tern_e2e::assert_probe_relayed(&out, "probe --transport tls to the listening port");
    let out = probe(tls_addr, "tcp", None);
    tern_e2e::assert_probe_relayed(&out, "probe --transport tcp to the TLS port");
    let out = probe(server.addr(), "tcp", None);
    tern_e2e::assert_probe_relayed(&out, "probe --transport tcp to the listening port");
    // Two allocations over TLS and two over TCP, each counted under its own transport.
    let created =
        |t: &str| format!("tern_allocations_created_total{{transport=\"{t}\",family=\"ipv4\"}} ");
    let start = std::time::Instant::now();
    loop {
        let text = http_get(server.admin_addr(), "/metrics").unwrap().1;
        let want = [("tls", 2), ("tcp", 2), ("udp", 0)];
        if want
            .iter()
            .all(|(t, n)| text.contains(&format!("{}{n}\n", created(t))))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{want:?} in {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.assert_alive();
}

/// Whether `openssl s_client` with `version` (`-tls1_2`, `-tls1_3`) completes a handshake
/// with `addr`, verified against the test CA.
fn openssl_handshakes(
    openssl: &PathBuf,
    addr: SocketAddr,
    ca: &PathBuf,
    version: &str,
) -> (bool, String) {
    let mut child = Command::new(openssl)
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            version,
            "-verify_return_error",
        ])
        .arg("-CAfile")
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    // Closing stdin ends s_client once the handshake is done (or failed).
    let _ = child.stdin.take().map(|mut s| s.write_all(b""));
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = text.contains("Verify return code: 0 (ok)")
        && (text.contains("Protocol  : TLSv1.") || text.contains(", TLSv1."))
        && !text.contains("no peer certificate available");
    (ok, text)
}

#[test]
fn openssl_handshakes_with_tls_1_2_and_1_3_and_no_tlsv1_2_refuses_1_2() {
    let Some(openssl) = tern_e2e::prereq::tool("openssl", "apt-get install -y openssl") else {
        return;
    };
    let pki = Pki::new("openssl");
    let tls_port = PortBlock::reserve();
    let mut server = start_tls(&pki, tls_port.listen_port(), &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], tls_port.listen_port()));
    for version in ["-tls1_2", "-tls1_3"] {
        let (ok, text) = openssl_handshakes(&openssl, addr, &pki.ca, version);
        assert!(ok, "openssl s_client {version}:\n{text}");
    }
    server.assert_alive();
    drop(server);

    let tls_port = PortBlock::reserve();
    let mut server = start_tls(&pki, tls_port.listen_port(), &["--no-tlsv1_2"]);
    let addr = SocketAddr::from(([127, 0, 0, 1], tls_port.listen_port()));
    let (ok, text) = openssl_handshakes(&openssl, addr, &pki.ca, "-tls1_3");
    assert!(ok, "openssl s_client -tls1_3 with no-tlsv1_2:\n{text}");
    let (ok, text) = openssl_handshakes(&openssl, addr, &pki.ca, "-tls1_2");
    assert!(!ok, "no-tlsv1_2, yet TLS 1.2 handshook:\n{text}");
    server.assert_alive();
    // The refusal is counted.
    let (code, metrics) = http_get(server.admin_addr(), "/metrics").unwrap();
    assert_eq!(code, 200);
    let start = Instant::now();
    let mut metrics = metrics;
    while !metrics.contains("tern_tls_handshake_failures_total{reason=\"protocol\"} 1") {
        assert!(start.elapsed() < Duration::from_secs(3), "{metrics}");
        std::thread::sleep(Duration::from_millis(50));
        metrics = http_get(server.admin_addr(), "/metrics").unwrap().1;
    }
}

#[test]
fn a_silent_tls_client_is_closed_after_the_handshake_timeout() {
    let pki = Pki::new("timeout");
    let tls_port = PortBlock::reserve();
    let server = start_tls(&pki, tls_port.listen_port(), &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], tls_port.listen_port()));
    let mut s = TcpStream::connect(addr).unwrap();
    // The start of a TLS record, then nothing.
    s.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let start = Instant::now();
    loop {
        let text = http_get(server.admin_addr(), "/metrics").unwrap().1;
        if text.contains("tern_tls_handshake_failures_total{reason=\"timeout\"} 1") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        start.elapsed() >= Duration::from_secs(8),
        "closed too early"
    );
}

/// `tern_config_reloads_total{result}` now.
fn reloads(server: &TestServer, result: &str) -> u64 {
    let text = http_get(server.admin_addr(), "/metrics").unwrap().1;
    let series = format!("tern_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Waits (up to 5 s; the file watch may count one more) until `result` reloads exceed
/// `before`.
fn wait_reloads(server: &TestServer, result: &str, before: u64) {
    let start = Instant::now();
    while reloads(server, result) <= before {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no {result} reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reloaded_certificates_serve_new_connections_and_a_bad_one_keeps_the_old() {
    let (old, new) = (Pki::new("reload-old"), Pki::new("reload-new"));
    let tls_port = PortBlock::reserve();
    // The server reads its files where the old PKI wrote them.
    let mut server = start_tls(&old, tls_port.listen_port(), &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], tls_port.listen_port()));
    tern_e2e::assert_probe_relayed(
        &probe(addr, "tls", Some(&old.ca)),
        "probe with the first CA",
    );
    assert!(
        !probe(addr, "tls", Some(&new.ca)).success(),
        "the second CA verifies nothing yet"
    );

    // Swap in the certificate of another CA; SIGUSR2 (coturn's signal) reloads.
    std::fs::copy(&new.cert, &old.cert).unwrap();
    std::fs::copy(&new.key, &old.key).unwrap();
    let before = reloads(&server, "success");
    server.signal("USR2");
    wait_reloads(&server, "success", before);
    tern_e2e::assert_probe_relayed(&probe(addr, "tls", Some(&new.ca)), "probe after the reload");
    assert!(
        !probe(addr, "tls", Some(&old.ca)).success(),
        "the old certificate is gone"
    );

    // A broken certificate: the reload fails, counted, and the last good one stays.
    let before = reloads(&server, "failure");
    std::fs::write(&old.cert, "not a certificate").unwrap();
    server.signal("HUP");
    wait_reloads(&server, "failure", before);
    tern_e2e::assert_probe_relayed(
        &probe(addr, "tls", Some(&new.ca)),
        "probe after a failed reload",
    );
    assert!(
        server.output().contains(&old.cert.display().to_string()),
        "the failure names the file:\n{}",
        server.output()
    );
    server.assert_alive();
}

/// A client-side TLS stream to tern.
type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS stream the test and a [`RawClient`] share: the client speaks TURN over it, the test
/// still looks at its certificate.
struct Shared(Rc<RefCell<TlsStream>>);

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// A new TLS connection to `addr` that trusts only `ca` (its own client configuration, so
/// nothing resumes), handshake completed.
fn tls_connect(addr: SocketAddr, ca: &Path) -> TlsStream {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    tcp.set_nodelay(true).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .expect("a verified TLS handshake");
    }
    rustls::StreamOwned::new(conn, tcp)
}

/// The DER of the certificate the server presented on `tls`.
fn leaf_of(tls: &TlsStream) -> Vec<u8> {
    tls.conn.peer_certificates().expect("a server certificate")[0].to_vec()
}

/// Connects anew until the server presents `der` (a reload finished); panics after 10 s.
fn wait_for_certificate(addr: SocketAddr, ca: &Path, der: &[u8]) {
    let start = Instant::now();
    while leaf_of(&tls_connect(addr, ca)) != der {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "new connections never got the new certificate"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (up to 3 s; workers publish every 100 ms) until `series` reads `want`.
fn wait_gauge(server: &TestServer, series: &str, want: f64) {
    let start = Instant::now();
    while gauge(server, series) != want {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{series} never read {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A value of the admin port's `/metrics` now.
fn gauge(server: &TestServer, series: &str) -> f64 {
    let text = http_get(server.admin_addr(), "/metrics").unwrap().1;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Waits (up to 3 s) until the server's output after byte `from` logs a successful reload
/// by `trigger`; returns the length of the output then.
fn wait_reloaded_by(server: &TestServer, from: usize, trigger: &str) -> usize {
    let start = Instant::now();
    let trigger = format!("trigger=\"{trigger}\"");
    loop {
        let out = server.output();
        if out[from..]
            .lines()
            .any(|l| l.contains("configuration reloaded") && l.contains(&trigger))
        {
            return out.len();
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no reload by {trigger} logged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Moves a renewed leaf over the files the server reads (key first, then certificate), each
/// by a rename, as a deploy does.
fn deploy(leaf: &tls_pki::Leaf, pki: &Pki) {
    std::fs::rename(&leaf.key, &pki.key).unwrap();
    std::fs::rename(&leaf.cert, &pki.cert).unwrap();
}

#[test]
fn a_reload_swaps_the_certificate_of_new_connections_while_an_old_one_keeps_relaying() {
    let pki = Pki::new("reload-live");
    let tls_port = PortBlock::reserve();
    let mut server = start_tls(&pki, tls_port.listen_port(), &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], tls_port.listen_port()));

    // An allocation over TLS, channel-bound to a loopback peer, relaying both ways.
    let first = CertificateDer::from_pem_file(&pki.cert).unwrap().to_vec();
    let tls = Rc::new(RefCell::new(tls_connect(addr, &pki.ca)));
    assert_eq!(leaf_of(&tls.borrow()), first);
    let local = tls.borrow().sock.local_addr().unwrap();
    let mut client = RawClient::over_stream(Shared(tls.clone()), local, addr, SECRET, REALM);
    let relayed = client.allocate_ok();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    client.bind_channel(0x4000, peer.local_addr().unwrap());
    client.relay_over_channel(relayed, &peer, 5);
    wait_gauge(
        &server,
        "tern_allocations{transport=\"tls\",family=\"ipv4\"}",
        1.0,
    );

    // A renewal by the same CA (new key, serial 2) renamed into place; SIGUSR2 reloads.
    let renewed = pki.issue("renewed", 2);
    deploy(&renewed, &pki);
    server.signal("USR2");
    wait_for_certificate(addr, &pki.ca, &renewed.der);
    let since = wait_reloaded_by(&server, 0, "SIGUSR2");
    // The old connection keeps its certificate, its allocation and its relay.
    assert_eq!(leaf_of(&tls.borrow()), first);
    client.relay_over_channel(relayed, &peer, 300);
    assert_eq!(client.refresh(600), 0, "Refresh of the old allocation");
    client.relay_over_channel(relayed, &peer, 5);

    // Another renewal (serial 3) with no signal: the file watch reloads.
    let third = pki.issue("third", 3);
    deploy(&third, &pki);
    wait_for_certificate(addr, &pki.ca, &third.der);
    assert_eq!(leaf_of(&tls.borrow()), first);
    client.relay_over_channel(relayed, &peer, 300);
    assert_eq!(client.refresh(600), 0, "Refresh of the old allocation");
    wait_gauge(
        &server,
        "tern_allocations{transport=\"tls\",family=\"ipv4\"}",
        1.0,
    );
    wait_reloaded_by(&server, since, "file change");
    server.assert_alive();
}
