//! A TCP connection that holds no allocation and stays silent is closed after the idle
//! timeout, counted as `idle`; one that allocated stays open however quiet it is.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use tern_proto::{StaticUser, UserSecret};
use tern_server::{ServerConfig, StreamClose};
use tern_wire::{attr, Class, Message, MessageType, MessageWriter, Method, TransactionId};

const REALM: &str = "example.org";
const PASSWORD: &str = "alice-password";

fn relay_ports() -> std::ops::RangeInclusive<u16> {
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = probe.local_addr().unwrap().port().min(u16::MAX - 8);
    p..=p + 7
}

fn request(method: Method, tid: u8, nonce: Option<&[u8]>) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(method, Class::Request),
        TransactionId([tid; 12]),
    );
    if method == Method::ALLOCATE {
        w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
    }
    if let Some(nonce) = nonce {
        let key = tern_proto::auth::long_term_key("alice", REALM, PASSWORD);
        w.attr(attr::USERNAME, b"alice")
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, nonce)
            .message_integrity(&key);
    }
    w.finish();
    buf
}

/// Writes `req` on the stream and reads one STUN answer: its error code and NONCE.
fn exchange(conn: &mut TcpStream, req: &[u8]) -> (Option<u16>, Option<Vec<u8>>) {
    conn.write_all(req).unwrap();
    let mut msg = vec![0u8; 20];
    conn.read_exact(&mut msg).expect("a STUN header");
    let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    msg.resize(20 + len, 0);
    conn.read_exact(&mut msg[20..]).expect("the STUN body");
    let m = Message::parse(&msg).unwrap();
    assert_eq!(m.transaction_id().0, req[8..20]);
    let code = m
        .get(attr::ERROR_CODE)
        .map(|a| attr::decode_error_code(a.value).unwrap().0);
    (code, m.get(attr::NONCE).map(|a| a.value.to_vec()))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c
}

#[test]
fn a_silent_connection_without_an_allocation_is_closed_and_counted() {
    let mut core = tern_proto::Config::new(REALM, "127.0.0.1".parse().unwrap(), relay_ports());
    core.users = vec![StaticUser {
        name: "alice".into(),
        secret: UserSecret::Password(PASSWORD.into()),
    }];
    let mut config = ServerConfig::new(Vec::new(), "127.0.0.1".parse().unwrap(), core);
    config.tcp_listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.workers = 1;
    config.tcp_idle_timeout = Duration::from_millis(300);
    let server = tern_server::start(config).unwrap();
    assert!(server.listen_addrs().is_empty(), "TCP only");
    let addr = server.tcp_listen_addrs()[0];

    let mut holder = connect(addr);
    let (code, nonce) = exchange(&mut holder, &request(Method::ALLOCATE, 1, None));
    assert_eq!(code, Some(401));
    let (code, _) = exchange(&mut holder, &request(Method::ALLOCATE, 2, nonce.as_deref()));
    assert_eq!(code, None, "allocated over TCP");

    let mut silent = connect(addr);
    let start = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(silent.read(&mut buf).expect("closed, not timed out"), 0);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );

    // The allocating connection outlived the timeout several times and still answers.
    std::thread::sleep(Duration::from_millis(700));
    let (code, _) = exchange(&mut holder, &request(Method::BINDING, 3, None));
    assert_eq!(code, None);

    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let t = server.workers().totals();
        if t.stream_closes[StreamClose::Idle.index()] == 1 {
            assert_eq!((t.connections, t.allocations), (1, 1));
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", t.stream_closes);
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
}
