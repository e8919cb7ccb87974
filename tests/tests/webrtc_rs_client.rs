//! The webrtc-rs `turn` client against the server: allocate, relay both ways through the
//! Send/Data-indication path and the ChannelBind/ChannelData path, deallocate; static users;
//! rejected credentials.
//!
//! The client's UDP socket is wrapped in a [`Tap`] that classifies every datagram the client
//! sends and receives (STUN method and class, or ChannelData), so the suite can assert which
//! path carried the data instead of assuming it. The tap can also withhold the client's
//! ChannelBind requests, which pins the client (and the server) to indications until released.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tern_e2e::{for_each_server, rest_credentials, rest_password, run_bounded, tern_bin, unix_now};
use tern_e2e::{ServerKind, ServerOptions, TestServer};
use tokio::net::UdpSocket;
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

const SECRET: &str = "e2e-rest-secret";
const REALM: &str = "tern.test";
/// Bound on a whole test's async part.
const TEST_LIMIT: Duration = Duration::from_secs(30);
/// Bound on waiting for one datagram.
const RECV_LIMIT: Duration = Duration::from_secs(2);
/// Packets each way over the channel.
const CHANNEL_PACKETS: usize = 20;

for_each_server!(
    relays_both_ways_via_indications_and_channel,
    static_user_allocates_and_relays,
    wrong_password_is_rejected,
    expired_rest_username_is_rejected,
);

fn relays_both_ways_via_indications_and_channel(kind: ServerKind) {
    let mut server = TestServer::start(kind, &ServerOptions::rest(SECRET, REALM));
    let (user, pass) = rest_credentials(SECRET, "webrtc-rs", 600);
    block_on(async {
        let tap = Tap::bind().await;
        let client = connect(&server, &tap, &user, &pass).await;
        let relay = client.allocate().await.expect("allocate");
        let relayed = relay.local_addr().expect("relayed address");
        assert_relayed_in_range(&server, relayed);
        let peer = UdpSocket::bind("127.0.0.1:0").await.expect("bind peer");
        let peer_addr = peer.local_addr().unwrap();

        // Phase 1: ChannelBind withheld. The client's first send creates the permission and
        // goes out as a Send indication; the peer's answer comes back as a Data indication.
        tap.hold_channel_bind(true);
        relay
            .send_to(b"indication c->p", peer_addr)
            .await
            .expect("relay send_to");
        assert_eq!(
            peer_recv(&peer).await,
            (b"indication c->p".to_vec(), relayed)
        );
        peer.send_to(b"indication p->c", relayed).await.unwrap();
        assert_eq!(
            relay_recv(&relay).await,
            (b"indication p->c".to_vec(), peer_addr)
        );
        assert!(tap.count(Dir::Tx, Kind::stun(METHOD_CREATE_PERMISSION, CLASS_REQUEST)) >= 1);
        assert!(tap.count(Dir::Rx, Kind::stun(METHOD_CREATE_PERMISSION, CLASS_SUCCESS)) >= 1);
        assert!(
            tap.count(Dir::Tx, Kind::stun(METHOD_SEND, CLASS_INDICATION)) >= 1,
            "{tap:?}"
        );
        assert!(
            tap.count(Dir::Rx, Kind::stun(METHOD_DATA, CLASS_INDICATION)) >= 1,
            "{tap:?}"
        );
        assert_eq!(tap.count(Dir::Rx, Kind::ChannelData), 0, "{tap:?}");

        // Phase 2: release ChannelBind (the client retransmits it), then the channel.
        tap.hold_channel_bind(false);
        let bound = Kind::stun(METHOD_CHANNEL_BIND, CLASS_SUCCESS);
        wait_until(|| tap.count(Dir::Rx, bound) >= 1, Duration::from_secs(10))
            .await
            .unwrap_or_else(|()| panic!("no ChannelBind success response: {tap:?}"));
        // Let the client's bind task mark the binding ready.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..CHANNEL_PACKETS {
            let msg = format!("channel c->p {i}");
            relay
                .send_to(msg.as_bytes(), peer_addr)
                .await
                .expect("relay send_to");
            assert_eq!(
                peer_recv(&peer).await,
                (msg.into_bytes(), relayed),
                "packet {i}"
            );
        }
        for i in 0..CHANNEL_PACKETS {
            let msg = format!("channel p->c {i}");
            peer.send_to(msg.as_bytes(), relayed).await.unwrap();
            assert_eq!(
                relay_recv(&relay).await,
                (msg.into_bytes(), peer_addr),
                "packet {i}"
            );
        }
        assert!(
            tap.count(Dir::Tx, Kind::ChannelData) >= CHANNEL_PACKETS,
            "{tap:?}"
        );
        assert!(
            tap.count(Dir::Rx, Kind::ChannelData) >= CHANNEL_PACKETS,
            "{tap:?}"
        );

        // Deallocate (Refresh with LIFETIME 0): the relayed address stops relaying.
        relay.close().await.expect("relay close");
        let refreshed = Kind::stun(METHOD_REFRESH, CLASS_SUCCESS);
        wait_until(
            || tap.count(Dir::Rx, refreshed) >= 1,
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|()| panic!("no Refresh(0) success response: {tap:?}"));
        if kind == ServerKind::Coturn {
            // coturn 4.6.1 answers Refresh(0) at once but frees the allocation on its next
            // one-second timer tick; it keeps relaying until then. tern must stop at once.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let before = tap.count(Dir::Rx, Kind::ChannelData)
            + tap.count(Dir::Rx, Kind::stun(METHOD_DATA, CLASS_INDICATION));
        peer.send_to(b"after deallocation", relayed).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = tap.count(Dir::Rx, Kind::ChannelData)
            + tap.count(Dir::Rx, Kind::stun(METHOD_DATA, CLASS_INDICATION));
        assert_eq!(before, after, "data relayed after deallocation: {tap:?}");
        client.close().await.expect("client close");
    });
    server.assert_alive();
}

fn static_user_allocates_and_relays(kind: ServerKind) {
    let mut server = TestServer::start(kind, &ServerOptions::user("alice", "secret", "r"));
    block_on(async {
        let tap = Tap::bind().await;
        let client = connect(&server, &tap, "alice", "secret").await;
        let relay = client.allocate().await.expect("allocate as alice");
        let relayed = relay.local_addr().unwrap();
        assert_relayed_in_range(&server, relayed);
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        relay
            .send_to(b"hello peer", peer_addr)
            .await
            .expect("relay send_to");
        assert_eq!(peer_recv(&peer).await, (b"hello peer".to_vec(), relayed));
        peer.send_to(b"hello client", relayed).await.unwrap();
        assert_eq!(
            relay_recv(&relay).await,
            (b"hello client".to_vec(), peer_addr)
        );
        client.close().await.unwrap();
    });
    server.assert_alive();
}

fn wrong_password_is_rejected(kind: ServerKind) {
    let mut server = TestServer::start(kind, &ServerOptions::user("alice", "secret", "r"));
    let err = allocate_error(&server, "alice", "not-the-secret");
    eprintln!("{kind:?} rejected a wrong password: {err}");
    assert!(err.contains("401"), "expected a 401 error, got: {err}");
    server.assert_alive();
}

fn expired_rest_username_is_rejected(kind: ServerKind) {
    let mut server = TestServer::start(kind, &ServerOptions::rest(SECRET, REALM));
    // Correctly signed, but expired a minute ago.
    let (user, pass) = rest_credentials(SECRET, "late", -60);
    let err = allocate_error(&server, &user, &pass);
    eprintln!("{kind:?} rejected an expired username: {err}");
    assert!(err.contains("401"), "expected a 401 error, got: {err}");
    server.assert_alive();
}

/// `tern credentials` prints REST credentials the running server accepts.
#[test]
fn tern_credentials_cli_output_allocates() {
    let mut server = TestServer::start(ServerKind::Tern, &ServerOptions::rest(SECRET, REALM));
    let out = run_bounded(
        std::process::Command::new(tern_bin()).args([
            "credentials",
            "--secret",
            SECRET,
            "--ttl",
            "600",
            "--name",
            "cli",
        ]),
        Duration::from_secs(10),
    );
    assert!(out.success(), "tern credentials failed: {out:?}");
    let field = |key: &str| {
        out.text
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no `{key}` line in:\n{}", out.text))
    };
    let (user, pass) = (field("username:"), field("credential:"));
    let (expiry, name) = user.split_once(':').expect("username is <expiry>:<name>");
    assert_eq!(name, "cli");
    let expiry: i64 = expiry.parse().expect("expiry is unix seconds");
    assert!(
        (expiry - (unix_now() + 600)).abs() <= 10,
        "expiry {expiry} is not now+600"
    );
    assert_eq!(
        pass,
        rest_password(SECRET, &user),
        "credential is not base64(HMAC-SHA1(secret, username))"
    );
    assert!(
        out.text
            .lines()
            .any(|l| l.trim_start().starts_with('{') && l.contains(&user) && l.contains(&pass)),
        "no JSON line with username and credential in:\n{}",
        out.text
    );
    block_on(async {
        let tap = Tap::bind().await;
        let client = connect(&server, &tap, &user, &pass).await;
        let relay = client
            .allocate()
            .await
            .expect("allocate with `tern credentials` output");
        assert_relayed_in_range(&server, relay.local_addr().unwrap());
        client.close().await.unwrap();
    });
    server.assert_alive();
}

// ---- helpers ----

fn block_on<F: std::future::Future<Output = ()>>(test: F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(TEST_LIMIT, test)
            .await
            .expect("test exceeded its time limit");
    });
}

async fn connect(server: &TestServer, tap: &Arc<Tap>, user: &str, pass: &str) -> Client {
    let addr = server.addr().to_string();
    let client = Client::new(ClientConfig {
        stun_serv_addr: addr.clone(),
        turn_serv_addr: addr,
        username: user.to_owned(),
        password: pass.to_owned(),
        realm: String::new(), // taken from the server's 401
        software: String::new(),
        rto_in_ms: 0, // the client's default, 200 ms
        conn: Arc::clone(tap) as Arc<dyn Conn + Send + Sync>,
        vnet: None,
    })
    .await
    .expect("client");
    client.listen().await.expect("listen");
    client
}

/// Allocates with the given credentials, expecting failure; returns the error text.
fn allocate_error(server: &TestServer, user: &str, pass: &str) -> String {
    let mut err = String::new();
    block_on(async {
        let tap = Tap::bind().await;
        let client = connect(server, &tap, user, pass).await;
        match client.allocate().await {
            Ok(relay) => panic!(
                "allocate succeeded with bad credentials: {:?}",
                relay.local_addr()
            ),
            Err(e) => err = e.to_string(),
        }
        client.close().await.unwrap();
    });
    err
}

fn assert_relayed_in_range(server: &TestServer, relayed: SocketAddr) {
    assert_eq!(
        relayed.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "relayed address {relayed}"
    );
    assert!(
        server.relay_range().contains(&relayed.port()),
        "relayed port {relayed} outside {:?}",
        server.relay_range()
    );
}

async fn peer_recv(peer: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(RECV_LIMIT, peer.recv_from(&mut buf))
        .await
        .expect("peer received nothing")
        .expect("peer recv_from");
    buf.truncate(n);
    (buf, from)
}

async fn relay_recv(relay: &impl Conn) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(RECV_LIMIT, relay.recv_from(&mut buf))
        .await
        .expect("client received nothing through the relay")
        .expect("relay recv_from");
    buf.truncate(n);
    (buf, from)
}

async fn wait_until(cond: impl Fn() -> bool, limit: Duration) -> Result<(), ()> {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

// ---- the tap ----

const METHOD_REFRESH: u16 = 0x004;
const METHOD_SEND: u16 = 0x006;
const METHOD_DATA: u16 = 0x007;
const METHOD_CREATE_PERMISSION: u16 = 0x008;
const METHOD_CHANNEL_BIND: u16 = 0x009;
const CLASS_REQUEST: u8 = 0;
const CLASS_INDICATION: u8 = 1;
const CLASS_SUCCESS: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Dir {
    Tx,
    Rx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Stun { method: u16, class: u8 },
    ChannelData,
    Other,
}

impl Kind {
    fn stun(method: u16, class: u8) -> Kind {
        Kind::Stun { method, class }
    }

    /// RFC 5389 §6 message type layout; RFC 8656 §12 ChannelData (first two bits 01).
    fn of(datagram: &[u8]) -> Kind {
        match datagram.first() {
            Some(b) if b >> 6 == 0b01 => Kind::ChannelData,
            Some(b)
                if b >> 6 == 0
                    && datagram.len() >= 20
                    && datagram[4..8] == [0x21, 0x12, 0xa4, 0x42] =>
            {
                let t = u16::from_be_bytes([datagram[0], datagram[1]]);
                let method = (t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2);
                let class = (((t & 0x0010) >> 4) | ((t & 0x0100) >> 7)) as u8;
                Kind::Stun { method, class }
            }
            _ => Kind::Other,
        }
    }
}

/// The client's UDP socket, counting datagrams by kind and direction.
struct Tap {
    sock: UdpSocket,
    counts: Mutex<HashMap<(Dir, Kind), usize>>,
    hold_channel_bind: AtomicBool,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts = self.counts.lock().unwrap();
        let mut list: Vec<_> = counts.iter().map(|(k, v)| format!("{k:?}={v}")).collect();
        list.sort();
        write!(f, "Tap[{}]", list.join(", "))
    }
}

impl Tap {
    async fn bind() -> Arc<Tap> {
        let sock = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind client socket");
        Arc::new(Tap {
            sock,
            counts: Mutex::default(),
            hold_channel_bind: AtomicBool::new(false),
        })
    }

    fn hold_channel_bind(&self, hold: bool) {
        self.hold_channel_bind.store(hold, Ordering::SeqCst);
    }

    fn count(&self, dir: Dir, kind: Kind) -> usize {
        self.counts
            .lock()
            .unwrap()
            .get(&(dir, kind))
            .copied()
            .unwrap_or(0)
    }

    fn note(&self, dir: Dir, datagram: &[u8]) -> Kind {
        let kind = Kind::of(datagram);
        *self.counts.lock().unwrap().entry((dir, kind)).or_default() += 1;
        kind
    }
}

#[async_trait]
impl Conn for Tap {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(self.sock.connect(addr).await?)
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        let n = self.sock.recv(buf).await?;
        self.note(Dir::Rx, &buf[..n]);
        Ok(n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let (n, from) = self.sock.recv_from(buf).await?;
        self.note(Dir::Rx, &buf[..n]);
        Ok((n, from))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.note(Dir::Tx, buf);
        Ok(self.sock.send(buf).await?)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let kind = self.note(Dir::Tx, buf);
        if kind == Kind::stun(METHOD_CHANNEL_BIND, CLASS_REQUEST)
            && self.hold_channel_bind.load(Ordering::SeqCst)
        {
            return Ok(buf.len()); // "sent": lost on the way, the client will retransmit
        }
        Ok(self.sock.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.sock.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.sock.peer_addr().ok()
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}
