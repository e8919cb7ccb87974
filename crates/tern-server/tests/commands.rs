//! Commands wake the workers through their eventfd: a reload or a drain is in force for the
//! very next datagram, not at the worker's next periodic turn (every 100 ms). The worker
//! reads its commands before the datagrams that woke it with them.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tern_proto::{StaticUser, UserSecret};
use tern_server::{Command, Reload, ServerConfig};
use tern_wire::{attr, Class, Message, MessageType, MessageWriter, Method, TransactionId};

const REALM: &str = "example.org";

fn user(name: &str) -> StaticUser {
    StaticUser {
        name: name.into(),
        secret: UserSecret::Password(format!("{name}-password")),
    }
}

/// A few relay ports that were free a moment ago (a port taken meanwhile is skipped).
fn relay_ports() -> std::ops::RangeInclusive<u16> {
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = probe.local_addr().unwrap().port().min(u16::MAX - 8);
    p..=p + 7
}

/// An Allocate request; signed by `name` with `nonce` when given.
fn allocate(tid: u8, signed: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId([tid; 12]),
    );
    w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
    if let Some((name, nonce)) = signed {
        let key = tern_proto::auth::long_term_key(name, REALM, &format!("{name}-password"));
        w.attr(attr::USERNAME, name.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, nonce)
            .message_integrity(&key);
    }
    w.finish();
    buf
}

/// Sends `req` and returns the response's error code (None for a success) and NONCE.
fn exchange(sock: &UdpSocket, server: SocketAddr, req: &[u8]) -> (Option<u16>, Option<Vec<u8>>) {
    sock.send_to(req, server).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("a response");
    let msg = Message::parse(&buf[..n]).unwrap();
    assert_eq!(msg.transaction_id().0, req[8..20]);
    let code = msg
        .get(attr::ERROR_CODE)
        .map(|a| attr::decode_error_code(a.value).unwrap().0);
    (code, msg.get(attr::NONCE).map(|a| a.value.to_vec()))
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Waits (up to 5 s, then goes on regardless) until the worker has just published, so that
/// its next periodic turn, when commands used to be read, is about 100 ms away.
fn just_after_a_heartbeat(workers: &tern_server::Workers) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match workers.heartbeats(Instant::now())[0] {
            Some(age) if age < Duration::from_millis(5) => return,
            _ => std::thread::sleep(Duration::from_micros(200)),
        }
    }
}

#[test]
fn reload_and_drain_are_in_force_for_the_next_datagram() {
    let mut core = tern_proto::Config::new(REALM, "127.0.0.1".parse().unwrap(), relay_ports());
    core.users = vec![user("alice")];
    let mut config = ServerConfig::new(
        vec!["127.0.0.1:0".parse().unwrap()],
        "127.0.0.1".parse().unwrap(),
        core,
    );
    config.workers = 1;
    let server = tern_server::start(config).unwrap();
    let addr = server.listen_addrs()[0];
    let workers = server.workers().clone();

    let bob = client();
    let (code, nonce) = exchange(&bob, addr, &allocate(1, None));
    assert_eq!(code, Some(401));
    let nonce = nonce.expect("a 401 carries NONCE");
    assert_eq!(
        exchange(&bob, addr, &allocate(2, Some(("bob", &nonce)))).0,
        Some(401),
        "bob is not a user yet"
    );

    // Reload adds bob; his next Allocate succeeds.
    just_after_a_heartbeat(&workers);
    let sent = Instant::now();
    workers.send(Command::Reload(Reload {
        secrets: Vec::new(),
        users: vec![user("alice"), user("bob")],
        peer_filter: Default::default(),
    }));
    let (code, _) = exchange(&bob, addr, &allocate(3, Some(("bob", &nonce))));
    let reload_took = sent.elapsed();
    assert_eq!(code, None, "the reload is in force for the next datagram");

    // Drain with an alternate: the next Allocate is sent there (300), on a fresh 5-tuple.
    let alice = client();
    just_after_a_heartbeat(&workers);
    let sent = Instant::now();
    let alternate: SocketAddr = "192.0.2.7:3478".parse().unwrap();
    workers.send(Command::Drain(Some(alternate)));
    let (code, _) = exchange(&alice, addr, &allocate(4, Some(("alice", &nonce))));
    let drain_took = sent.elapsed();
    assert_eq!(
        code,
        Some(300),
        "the drain is in force for the next datagram"
    );

    // No bound on time, which a loaded machine could break: the order is the test. Without
    // the wake, both datagrams are answered before the worker's next turn reads the commands.
    println!("reload in force after {reload_took:?}, drain after {drain_took:?}");
    server.stop();
}
