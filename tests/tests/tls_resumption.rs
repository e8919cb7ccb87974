//! TLS session resumption across workers: tern's workers share one generation's ticket keys
//! and session cache, so a client that reconnects resumes whichever worker the kernel hands
//! its new connection to (SO_REUSEPORT spreads connections by their 4-tuple). Over TLS 1.3
//! (tickets) and TLS 1.2 (tickets or session ids), with two workers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption;
use rustls::HandshakeKind;
use tern_e2e::{PortBlock, ServerKind, ServerOptions, TestServer};

mod tls_pki;
use tls_pki::Pki;

/// Reconnections after the first full handshake. With two workers, the chance that all of
/// them land on the first one's worker is 2^-16.
const RECONNECTS: usize = 16;

fn start(pki: &Pki, tls_port: u16) -> TestServer {
    let mut options = ServerOptions::rest("resumption-secret", "tern.test");
    options.extra_args = vec![
        format!("--cert={}", pki.cert.display()),
        format!("--pkey={}", pki.key.display()),
        format!("--tls-listening-port={tls_port}"),
        "--relay-threads=2".to_owned(),
    ];
    let server = TestServer::start(ServerKind::Tern, &options);
    server.wait_healthy(Duration::from_secs(5));
    server
}

/// A client configuration trusting the test CA, offering only `versions`, that keeps
/// sessions for resumption (rustls's in-memory store).
fn client_config(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&pki.ca).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::in_memory_sessions(64);
    Arc::new(config)
}

/// Connects, does a Binding over TLS (so the client reads the TLS 1.3 tickets sent after
/// the handshake), and says how the handshake went.
fn connect(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> HandshakeKind {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn =
        rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // A Binding request: no attributes, a fixed transaction id.
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    request.extend_from_slice(b"resumption!!");
    tls.write_all(&request).unwrap();
    let mut answer = [0u8; 20];
    tls.read_exact(&mut answer).expect("a Binding answer");
    assert_eq!(&answer[..2], &[0x01, 0x01], "a Binding success");
    assert_eq!(&answer[8..20], b"resumption!!");
    let mut rest = vec![0u8; usize::from(u16::from_be_bytes([answer[2], answer[3]]))];
    tls.read_exact(&mut rest).unwrap();
    tls.conn
        .handshake_kind()
        .expect("the handshake is done once data flowed")
}

fn every_reconnect_resumes(versions: &[&'static rustls::SupportedProtocolVersion], name: &str) {
    let pki = Pki::new(name);
    let port = PortBlock::reserve();
    let mut server = start(&pki, port.listen_port());
    let addr = SocketAddr::from(([127, 0, 0, 1], port.listen_port()));
    let config = client_config(&pki, versions);
    assert_eq!(connect(&config, addr), HandshakeKind::Full);
    for i in 0..RECONNECTS {
        assert_eq!(
            connect(&config, addr),
            HandshakeKind::Resumed,
            "reconnection #{i} made a full handshake"
        );
    }
    // A client without the session makes a full handshake: resumption is not assumed.
    let fresh = client_config(&pki, versions);
    assert_eq!(connect(&fresh, addr), HandshakeKind::Full);
    server.assert_alive();
}

#[test]
fn tls13_reconnections_resume_on_either_worker() {
    every_reconnect_resumes(&[&rustls::version::TLS13], "resume13");
}

#[test]
fn tls12_reconnections_resume_on_either_worker() {
    every_reconnect_resumes(&[&rustls::version::TLS12], "resume12");
}
