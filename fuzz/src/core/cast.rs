//! The cast of the `core` target: the configuration bytes, the credentials clients sign
//! with and the sets the server holds, the clients' 5-tuples, and the peers.

use std::net::{IpAddr, SocketAddr};

use tern_proto::auth::{long_term_key, rest_password};
use tern_proto::{ConnId, FiveTuple, ListenerId, StaticUser, Transport, UserSecret};
use tern_wire::TransactionId;

use crate::input::{Reader, Writer};

/// The realm.
pub const REALM: &str = "example.org";
/// The wall clock when a run starts.
pub const WALL0: u64 = 1_700_000_000;
/// The TURN REST secrets; which of them the server holds depends on the reloads.
pub(crate) const SECRETS: [&[u8]; 2] = [b"north", b"south"];
/// The first port of the relay range.
pub(crate) const FIRST_PORT: u16 = 50_000;
/// The last port of the relay range.
pub(crate) const LAST_PORT: u16 = 50_009;
/// The one port of the range the I/O layer "failed to bind": not in the pool.
pub(crate) const UNBOUND_PORT: u16 = 50_004;
/// The seed every worker gets.
pub(crate) const SEED: [u8; 32] = [7; 32];
/// Clients the input controls; the victim is the next index.
pub const CLIENTS: usize = 6;
/// The victim's index among the clients.
pub(crate) const VICTIM: usize = CLIENTS;
/// Credentials the input signs with.
pub const CREDENTIALS: usize = 8;
/// The victim's credential among them.
pub(crate) const VICTIM_CRED: u8 = 4;

/// The two configuration bytes at the front of an input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    /// Bit 0 FINGERPRINT on every response; 1 RFC 5766 channels; 2 SOFTWARE; 3 a rate
    /// limit of 4,096 B/s; 4 an IPv6 relay; 5 a user quota of 2; 6 a total quota of 6;
    /// 7 nonces valid 30 s.
    pub flags: u8,
    /// Bit 0: end by letting everything expire (a long jump of the timer wheel, which costs
    /// a pass over its 4,096 slots) instead of shutting down.
    pub more: u8,
}

impl Config {
    /// Reads the two bytes.
    pub fn read(r: &mut Reader<'_>) -> Self {
        Self {
            flags: r.u8(),
            more: r.u8(),
        }
    }

    /// Writes the two bytes.
    pub fn write(&self, w: &mut Writer) {
        w.u8(self.flags).u8(self.more);
    }

    pub(crate) fn bit(&self, n: u8) -> bool {
        self.flags & (1 << n) != 0
    }
}

/// How a credential's key is made.
#[derive(Debug, Clone, Copy)]
enum Secret {
    /// A TURN REST username under `SECRETS[i]`.
    Rest(usize),
    /// A static user's password.
    Password(&'static str),
    /// A key nobody was given.
    Forged,
}

/// A username and how its key is made.
#[derive(Debug, Clone)]
pub(crate) struct Cred {
    pub username: String,
    secret: Secret,
}

impl Cred {
    pub fn key(&self) -> [u8; 16] {
        match self.secret {
            Secret::Rest(i) => {
                let password = rest_password(SECRETS[i], &self.username);
                long_term_key(&self.username, REALM, &password)
            }
            Secret::Password(p) => long_term_key(&self.username, REALM, p),
            Secret::Forged => [0x66; 16],
        }
    }
}

/// The credentials the input signs with, by index: alice's REST username under the first
/// secret (expires an hour in), bob's under the second (valid once a reload adds it), the
/// static users carol and dave, the victim's user, mallory's forged key, an expired REST
/// username, and one without an expiry.
pub(crate) fn credentials() -> Vec<Cred> {
    let cred = |username: String, secret| Cred { username, secret };
    vec![
        cred(format!("{}:alice", WALL0 + 3600), Secret::Rest(0)),
        cred(format!("{}:bob", WALL0 + 30 * 86_400), Secret::Rest(1)),
        cred("carol".into(), Secret::Password("carol-pw")),
        cred("dave".into(), Secret::Password("dave-pw")),
        cred("victim".into(), Secret::Password("victim-pw")),
        cred("mallory".into(), Secret::Forged),
        cred(format!("{}:eve", WALL0 - 10), Secret::Rest(0)),
        cred("frank".into(), Secret::Rest(0)),
    ]
}

/// The credential sets the server is started and reloaded with: REST secrets and static
/// users (dave's as a precomputed key, as coturn's `0x<hex>` form gives it).
pub(crate) fn credential_set(set: u8) -> (Vec<Vec<u8>>, Vec<StaticUser>) {
    let user = |name: &str, password: &str| StaticUser {
        name: name.into(),
        secret: UserSecret::Password(password.into()),
    };
    let dave = StaticUser {
        name: "dave".into(),
        secret: UserSecret::Key(long_term_key("dave", REALM, "dave-pw")),
    };
    let secrets = |i: &[usize]| i.iter().map(|&i| SECRETS[i].to_vec()).collect();
    match set % 4 {
        0 => (
            secrets(&[0]),
            vec![user("carol", "carol-pw"), dave, user("victim", "victim-pw")],
        ),
        1 => (
            secrets(&[1, 0]),
            vec![user("carol", "carol-pw"), user("victim", "victim-pw")],
        ),
        2 => (secrets(&[]), vec![user("victim", "victim-pw"), dave]),
        _ => (secrets(&[1]), Vec::new()),
    }
}

/// One client: its 5-tuple, the worker its traffic reaches, the nonce it holds.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub five: FiveTuple,
    pub worker: usize,
    pub nonce: Option<Vec<u8>>,
    pub tid: TransactionId,
    pub sent: u32,
}

/// The clients, each on the worker a UDP listener or connection would give it; the last is
/// the victim.
pub(crate) fn clients() -> Vec<Client> {
    let addr = |s: &str| s.parse::<SocketAddr>().expect("a socket address");
    let udp = |l, c, s| FiveTuple::udp(ListenerId(l), addr(c), addr(s));
    let stream = |conn, tls, c, s| FiveTuple {
        transport: Transport::Stream {
            conn: ConnId(conn),
            tls,
        },
        client: addr(c),
        server: addr(s),
    };
    let fives = [
        (udp(0, "198.51.100.1:1000", "192.0.2.1:3478"), 0),
        // The victim's IP, another port.
        (udp(0, "198.51.100.77:40001", "192.0.2.1:3478"), 1),
        (udp(1, "[2001:db8:1::1]:1002", "[2001:db8::100]:3478"), 0),
        (stream(1, false, "198.51.100.3:1003", "192.0.2.1:3478"), 1),
        (stream(2, true, "198.51.100.4:1004", "192.0.2.1:5349"), 0),
        // Client 0's address, through another listening socket.
        (udp(2, "198.51.100.1:1000", "192.0.2.2:3478"), 1),
        // The victim.
        (udp(0, "198.51.100.77:40000", "192.0.2.1:3478"), 0),
    ];
    fives
        .into_iter()
        .map(|(five, worker)| Client {
            five,
            worker,
            nonce: None,
            tid: TransactionId::default(),
            sent: 0,
        })
        .collect()
}

/// Addresses the default peer filter must refuse, whatever else it does.
pub(crate) const MUST_REFUSE: &[&str] = &[
    "127.0.0.1",
    "10.1.2.3",
    "192.168.1.1",
    "172.16.0.1",
    "169.254.169.254",
    "0.0.0.0",
    "255.255.255.255",
    "100.64.0.1",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:10.1.2.3",
    "fe80::1",
    "fc00::1",
    "2001:db8::5",
];
/// Public addresses it must allow.
pub(crate) const MUST_ALLOW: &[&str] = &[
    "93.184.216.34",
    "151.101.1.69",
    "2606:4700:4700::1111",
    "::ffff:93.184.216.34",
];

/// The peers: public ones (index 1 is the victim's over IPv4, 2 over IPv6), refused ones,
/// and the server's own relayed address on a relay port and on another port.
pub(crate) fn peers(relayed_ip: IpAddr) -> Vec<SocketAddr> {
    let mut peers: Vec<SocketAddr> = [
        "93.184.216.34:5000",
        "151.101.1.69:6000",
        "[2606:4700:4700::1111]:53",
        "[::ffff:93.184.216.34]:5000",
        "127.0.0.1:3478",
        "10.1.2.3:5000",
        "192.168.1.1:80",
        "169.254.169.254:80",
        "0.0.0.0:0",
        "255.255.255.255:9",
        "224.0.0.251:5353",
        "100.64.0.1:1",
        "[::1]:3478",
        "[::ffff:127.0.0.1]:3478",
        "[fe80::1]:5000",
        "[fc00::1]:5000",
        "[2001:db8::5]:5000",
        "[::]:0",
        "192.0.2.1:3478",
        "[64:ff9b::a01:203]:80",
    ]
    .iter()
    .map(|s| s.parse().expect("a socket address"))
    .collect();
    peers.push(SocketAddr::new(relayed_ip, FIRST_PORT + 1));
    peers.push(SocketAddr::new(relayed_ip, 22));
    peers
}
