//! tern's TCP/TLS listeners behind a load balancer and under load (issue 11): the PROXY
//! protocol (v1 and v2) on `tcp-proxy-port` and under `proxy-protocol`, the connection limits
//! (`max-connections`, `max-connections-per-ip`), the timeouts (`tls-handshake-timeout`,
//! `tcp-idle-timeout`) and `alt-listening-port`. Each client here writes its PROXY header
//! itself, as a load balancer would, and reads where the server says it is from
//! (XOR-MAPPED-ADDRESS).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_e2e::{PortBlock, RawClient, ServerKind, ServerOptions, TestServer};
use tern_wire::{attr, Class, Message, MessageType, MessageWriter, Method, TransactionId};

mod tls_pki;
use tls_pki::Pki;

const SECRET: &str = "proxy-e2e-secret";
const REALM: &str = "tern.test";

fn start(extra: &[String]) -> TestServer {
    let mut options = ServerOptions::rest(SECRET, REALM);
    options.extra_args = extra.to_vec();
    let server = TestServer::start(ServerKind::Tern, &options);
    server.wait_healthy(Duration::from_secs(5));
    server
}

/// A loopback port of its own, for one more listener.
fn spare_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, PortBlock::reserve().listen_port()))
}

fn closes(reason: &str) -> String {
    format!("tern_stream_closes_total{{reason=\"{reason}\"}}")
}

/// A PROXY v1 line naming `client` (IPv4) as the source.
fn v1(client: SocketAddr) -> Vec<u8> {
    format!(
        "PROXY TCP4 {} 127.0.0.1 {} 3478\r\n",
        client.ip(),
        client.port()
    )
    .into_bytes()
}

/// A PROXY v2 PROXY header over TCP/IPv4 naming `client` as the source.
fn v2(client: SocketAddrV4) -> Vec<u8> {
    let mut h = tern_wire::proxy::V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    h.extend_from_slice(&client.ip().octets());
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&3478u16.to_be_bytes());
    h
}

/// A PROXY v2 LOCAL header (a load balancer's health check).
fn v2_local() -> Vec<u8> {
    let mut h = tern_wire::proxy::V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    h
}

fn binding_request(n: u8) -> Vec<u8> {
    let mut req = Vec::new();
    MessageWriter::new(
        &mut req,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([n; 12]),
    )
    .finish();
    req
}

/// The XOR-MAPPED-ADDRESS of a Binding answer.
fn mapped(answer: &[u8]) -> SocketAddr {
    let m = Message::parse(answer).expect("a STUN message");
    let a = m.get(attr::XOR_MAPPED_ADDRESS).expect("XOR-MAPPED-ADDRESS");
    attr::decode_xor_address(a.value, a.typ, &m.transaction_id()).unwrap()
}

/// A connection to `addr` that has written `header`.
fn behind(addr: SocketAddr, header: &[u8]) -> RawClient {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    conn.write_all(header).unwrap();
    RawClient::over(conn, SECRET, REALM)
}

/// A Binding over `client`'s connection; an error when the server closed it.
fn try_binding(client: &RawClient, n: u8) -> io::Result<SocketAddr> {
    client.send_raw(&binding_request(n));
    client.recv().map(|answer| mapped(&answer))
}

/// A TCP connection to `addr` from `local_ip`.
fn connect_from(local_ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((local_ip, 0)).into()).unwrap();
    s.connect_timeout(&addr.into(), Duration::from_secs(2))
        .unwrap();
    s.into()
}

/// Reads until the server closes `conn`; panics if it is still open after `limit`.
/// Returns how long that took.
fn wait_closed(conn: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    conn.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return start.elapsed(),
            Ok(_) => {}
            Err(e) => panic!("not closed after {:?}: {e}", start.elapsed()),
        }
        assert!(start.elapsed() < limit, "still open after {limit:?}");
    }
}

#[test]
fn the_proxy_header_names_the_client_on_tcp_proxy_port() {
    let proxy_addr = spare_port();
    let mut server = start(&[format!("--tcp-proxy-port={}", proxy_addr.port())]);
    let named: SocketAddr = "203.0.113.7:4242".parse().unwrap();

    // v1, with the Binding request in the same write: the bytes behind the header count.
    let mut conn = TcpStream::connect(proxy_addr).unwrap();
    let mut bytes = v1(named);
    bytes.extend_from_slice(&binding_request(1));
    conn.write_all(&bytes).unwrap();
    let mut client = RawClient::over(conn, SECRET, REALM);
    assert_eq!(mapped(&client.recv().expect("an answer")), named);
    assert_eq!(client.mapped_address(), named, "and on later requests");

    // v2 over IPv4, the header alone in its write.
    let named_v2 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 5555);
    let mut client = behind(proxy_addr, &v2(named_v2));
    assert_eq!(client.mapped_address(), SocketAddr::V4(named_v2));

    // v2 LOCAL (a health check): the connection's own address.
    let mut client = behind(proxy_addr, &v2_local());
    assert_eq!(client.mapped_address(), client.local_addr());

    // The listening port takes no header: the socket's address, as before.
    let mut plain = RawClient::tcp(server.addr(), SECRET, REALM);
    assert_eq!(plain.mapped_address(), plain.local_addr());
    assert_eq!(server.metric(&closes("proxy_header")), 0.0);
    server.assert_alive();
}

#[test]
fn an_allocation_over_a_proxied_connection_relays_and_ends_with_it() {
    let proxy_addr = spare_port();
    let mut server = start(&[format!("--tcp-proxy-port={}", proxy_addr.port())]);
    let named: SocketAddr = "203.0.113.7:4242".parse().unwrap();
    let mut client = behind(proxy_addr, &v1(named));
    assert_eq!(client.mapped_address(), named);
    let relayed = client.allocate_ok();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    client.bind_channel(0x4000, peer.local_addr().unwrap());
    client.relay_over_channel(relayed, &peer, 20);
    server.wait_metric("tern_allocations{transport=\"tcp\",family=\"ipv4\"}", 1.0);
    drop(client);
    server.wait_metric(
        "tern_allocations_ended_total{reason=\"connection_closed\",relayed=\"true\",transport=\"tcp\",family=\"ipv4\"}",
        1.0,
    );
    server.wait_metric("tern_connections", 0.0);
    server.assert_alive();
}

#[test]
fn a_missing_bad_late_or_cut_header_closes_the_connection_and_is_counted() {
    let proxy_addr = spare_port();
    let mut server = start(&[
        format!("--tcp-proxy-port={}", proxy_addr.port()),
        "--tls-handshake-timeout=1".into(),
    ]);
    let bad: [&[u8]; 3] = [
        &binding_request(1), // no header: STUN straight away
        b"HELLO WORLD\r\n",
        b"PROXY TCP4 203.0.113.999 127.0.0.1 1 2\r\n",
    ];
    for bytes in bad {
        let mut conn = TcpStream::connect(proxy_addr).unwrap();
        conn.write_all(bytes).unwrap();
        wait_closed(&mut conn, Duration::from_secs(2));
    }
    // Half a header, then a hang-up.
    let mut conn = TcpStream::connect(proxy_addr).unwrap();
    conn.write_all(b"PROXY TCP4 203.0").unwrap();
    drop(conn);
    // Nothing at all within the handshake timeout (1 s).
    let mut silent = TcpStream::connect(proxy_addr).unwrap();
    let took = wait_closed(&mut silent, Duration::from_secs(4));
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    server.wait_metric(&closes("proxy_header"), 5.0);
    // A connection that closes without a byte is a plain hang-up.
    drop(TcpStream::connect(proxy_addr).unwrap());
    server.wait_metric(&closes("peer_closed"), 1.0);

    // On the listening port (no PROXY protocol) a header is bad input, closed as ever.
    let mut conn = TcpStream::connect(server.addr()).unwrap();
    conn.write_all(&v1("203.0.113.7:4242".parse().unwrap()))
        .unwrap();
    wait_closed(&mut conn, Duration::from_secs(2));
    server.wait_metric(&closes("bad_channel_number"), 1.0);
    assert_eq!(server.metric(&closes("proxy_header")), 5.0);
    server.assert_alive();
}

/// A rustls client that trusts the test CA.
fn tls_client(pki: &Pki) -> rustls::ClientConnection {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&pki.ca).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap()
}

/// Sends a Binding request over `tls` and returns its XOR-MAPPED-ADDRESS.
fn binding_over_tls(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) -> SocketAddr {
    tls.write_all(&binding_request(7)).unwrap();
    let mut answer = vec![0u8; 20];
    tls.read_exact(&mut answer).expect("a STUN header");
    let len = usize::from(u16::from_be_bytes([answer[2], answer[3]]));
    answer.resize(20 + len, 0);
    tls.read_exact(&mut answer[20..]).expect("the attributes");
    mapped(&answer)
}

#[test]
fn tls_after_a_v2_header_and_proxy_protocol_on_every_port() {
    let pki = Pki::new("proxy");
    let tls_addr = spare_port();
    let mut server = start(&[
        format!("--cert={}", pki.cert.display()),
        format!("--pkey={}", pki.key.display()),
        format!("--tls-listening-port={}", tls_addr.port()),
        "--proxy-protocol".into(),
    ]);
    let named = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 44), 40000);
    // The header and the ClientHello in one write, as a load balancer forwards them.
    let mut conn = TcpStream::connect(tls_addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut tls = tls_client(&pki);
    let mut first = v2(named);
    tls.write_tls(&mut first).unwrap();
    conn.write_all(&first).unwrap();
    let mut tls = rustls::StreamOwned::new(tls, conn);
    assert_eq!(binding_over_tls(&mut tls), SocketAddr::V4(named));

    // TLS on the listening port too (by the first byte after the header), header alone.
    let mut conn = TcpStream::connect(server.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    conn.write_all(&v1("203.0.113.8:1000".parse().unwrap()))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(tls_client(&pki), conn);
    assert_eq!(
        binding_over_tls(&mut tls),
        "203.0.113.8:1000".parse().unwrap()
    );

    // Plain TURN behind a header works there too; without one it is refused.
    let mut client = behind(server.addr(), &v2(named));
    assert_eq!(client.mapped_address(), SocketAddr::V4(named));
    let plain = RawClient::tcp(server.addr(), SECRET, REALM);
    assert!(try_binding(&plain, 2).is_err(), "no header, no answer");
    server.wait_metric(&closes("proxy_header"), 1.0);
    assert_eq!(
        server.metric("tern_tls_handshake_failures_total{reason=\"other\"}"),
        0.0
    );
    server.assert_alive();
}

#[test]
fn the_per_ip_limit_counts_the_socket_or_the_header_address() {
    let proxy_addr = spare_port();
    let mut server = start(&[
        "--max-connections-per-ip=3".into(),
        format!("--tcp-proxy-port={}", proxy_addr.port()),
    ]);
    let mut three: Vec<RawClient> = (0..3)
        .map(|_| RawClient::tcp(server.addr(), SECRET, REALM))
        .collect();
    for c in &mut three {
        assert_eq!(c.mapped_address().ip(), Ipv4Addr::LOCALHOST);
    }
    // The fourth from 127.0.0.1 is closed at once.
    let mut fourth = TcpStream::connect(server.addr()).unwrap();
    wait_closed(&mut fourth, Duration::from_secs(2));
    server.wait_metric(&closes("per_ip_limit"), 1.0);
    // Another source address still gets in.
    let mut other = RawClient::over(connect_from([127, 0, 0, 2], server.addr()), SECRET, REALM);
    assert_eq!(other.mapped_address().ip(), Ipv4Addr::new(127, 0, 0, 2));
    // Behind a header, the address it names is counted, not the balancer's (127.0.0.1).
    let named = |port| SocketAddr::from(([198, 51, 100, 1], port));
    let mut proxied: Vec<RawClient> = (1..=3).map(|p| behind(proxy_addr, &v1(named(p)))).collect();
    for (p, c) in (1..).zip(&mut proxied) {
        assert_eq!(c.mapped_address(), named(p));
    }
    // The fourth from 198.51.100.1 is closed once its header is read.
    let mut over = TcpStream::connect(proxy_addr).unwrap();
    over.write_all(&v1(named(4))).unwrap();
    wait_closed(&mut over, Duration::from_secs(2));
    server.wait_metric(&closes("per_ip_limit"), 2.0);
    let mut elsewhere = behind(proxy_addr, &v1("198.51.100.2:1".parse().unwrap()));
    assert_eq!(
        elsewhere.mapped_address().ip(),
        Ipv4Addr::new(198, 51, 100, 2)
    );

    // Closing one frees its place (once the server has read the close).
    drop(three.pop());
    server.wait_metric(&closes("peer_closed"), 1.0);
    let mut again = RawClient::tcp(server.addr(), SECRET, REALM);
    assert_eq!(again.mapped_address().ip(), Ipv4Addr::LOCALHOST);
    assert_eq!(server.metric(&closes("per_ip_limit")), 2.0);
    server.assert_alive();
}

#[test]
fn max_connections_bounds_all_connections() {
    let mut server = start(&[
        "--max-connections=2".into(),
        "--max-connections-per-ip=0".into(),
    ]);
    let mut two: Vec<RawClient> = (0..2)
        .map(|_| RawClient::tcp(server.addr(), SECRET, REALM))
        .collect();
    for c in &mut two {
        c.mapped_address();
    }
    let mut third = connect_from([127, 0, 0, 3], server.addr());
    wait_closed(&mut third, Duration::from_secs(2));
    server.wait_metric(&closes("over_limit"), 1.0);
    drop(two.pop());
    server.wait_metric("tern_connections", 1.0);
    let mut next = RawClient::tcp(server.addr(), SECRET, REALM);
    next.mapped_address();
    server.assert_alive();
}

#[test]
fn a_stalled_or_abandoned_tls_handshake_is_a_handshake_failure() {
    let pki = Pki::new("proxy-timeout");
    let tls_addr = spare_port();
    let mut server = start(&[
        format!("--cert={}", pki.cert.display()),
        format!("--pkey={}", pki.key.display()),
        format!("--tls-listening-port={}", tls_addr.port()),
        "--tls-handshake-timeout=1".into(),
    ]);
    // One byte of a handshake record, then nothing: closed after about 1 s.
    let mut conn = TcpStream::connect(tls_addr).unwrap();
    conn.write_all(&[0x16]).unwrap();
    let took = wait_closed(&mut conn, Duration::from_secs(4));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "closed after {took:?}"
    );
    server.wait_metric("tern_tls_handshake_failures_total{reason=\"timeout\"}", 1.0);
    // The start of a ClientHello, then a hang-up: a failed handshake, not a plain close.
    let mut conn = TcpStream::connect(tls_addr).unwrap();
    conn.write_all(&[0x16, 0x03, 0x01]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(conn);
    server.wait_metric("tern_tls_handshake_failures_total{reason=\"other\"}", 1.0);
    server.wait_metric(&closes("tls"), 2.0);
    assert_eq!(server.metric(&closes("peer_closed")), 0.0);
    server.assert_alive();
}

#[test]
fn the_idle_timeout_closes_silent_connections_without_an_allocation() {
    let mut server = start(&["--tcp-idle-timeout=1".into()]);
    let mut allocated = RawClient::tcp(server.addr(), SECRET, REALM);
    allocated.allocate_ok();
    let mut silent = TcpStream::connect(server.addr()).unwrap();
    let took = wait_closed(&mut silent, Duration::from_secs(4));
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    server.wait_metric(&closes("idle"), 1.0);
    // The one with an allocation outlives the timeout twice over and still works.
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        allocated.refresh(600),
        0,
        "Refresh over the same connection"
    );
    assert_eq!(server.metric(&closes("idle")), 1.0);
    server.assert_alive();
}

#[test]
fn alt_listening_port_takes_udp_and_tcp() {
    let alt = spare_port();
    let mut server = start(&[format!("--alt-listening-port={}", alt.port())]);
    tern_e2e::binding_request_once(alt, Duration::from_secs(2)).expect("UDP on the alt port");
    let mut tcp = RawClient::tcp(alt, SECRET, REALM);
    assert_eq!(tcp.mapped_address(), tcp.local_addr());
    tcp.allocate_ok();
    server.assert_alive();
}
