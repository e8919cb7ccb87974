//! The world of the `core` target: two workers, the clients, the peers, the clocks, and how
//! each operation becomes an input to the core.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tern_proto::auth::{long_term_key, rest_password};
use tern_proto::{
    ClientOutput, ConnId, Family, FiveTuple, ListenerId, PeerFilter, PeerOutput, RelayEndpoint,
    Server, SharedState, StaticUser, Transport, UserSecret, PEER_HEADROOM, PEER_TAILROOM,
};
use tern_wire::{attr, Class, Message, MessageType, MessageWriter, Method, TransactionId};

use super::model::{Model, Step};
use super::ops::{Attr, Op, Request};
use crate::input::{Reader, Writer};

/// The realm.
pub const REALM: &str = "example.org";
/// The wall clock when a run starts.
pub const WALL0: u64 = 1_700_000_000;
/// The TURN REST secrets; which of them the server holds depends on the reloads.
const SECRETS: [&[u8]; 2] = [b"north", b"south"];
/// The relay port range, and the one port in it the I/O layer "failed to bind".
const FIRST_PORT: u16 = 50_000;
const LAST_PORT: u16 = 50_009;
const UNBOUND_PORT: u16 = 50_004;
/// The seed every worker gets.
const SEED: [u8; 32] = [7; 32];
/// Clients the input controls; the victim is the next index.
pub const CLIENTS: usize = 6;
pub(crate) const VICTIM: usize = CLIENTS;
/// Credentials the input signs with.
pub const CREDENTIALS: usize = 8;
const VICTIM_CRED: u8 = 4;
/// The victim's channel. It binds it again once this old, which keeps its permission (300 s)
/// and the channel (600 s) alive whatever the time steps, and refreshes its allocation
/// (3,600 s) once this old.
const VICTIM_CHANNEL: u16 = 0x4000;
const VICTIM_REBIND: Duration = Duration::from_secs(150);
const VICTIM_REFRESH: Duration = Duration::from_secs(1800);
/// Time moves in steps of at most this while the victim keeps up: with [`VICTIM_REBIND`],
/// under the permission lifetime.
const TIME_STEP: u64 = 120;
const _: () = assert!(TIME_STEP + VICTIM_REBIND.as_secs() < 300);

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

    fn bit(&self, n: u8) -> bool {
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

fn credentials() -> Vec<Cred> {
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
fn credential_set(set: u8) -> (Vec<Vec<u8>>, Vec<StaticUser>) {
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
    tid: TransactionId,
    sent: u32,
}

fn clients() -> Vec<Client> {
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
const MUST_REFUSE: &[&str] = &[
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
const MUST_ALLOW: &[&str] = &[
    "93.184.216.34",
    "151.101.1.69",
    "2606:4700:4700::1111",
    "::ffff:93.184.216.34",
];

/// The peers: public ones (index 1 is the victim's over IPv4, 2 over IPv6), refused ones,
/// and the server's own relayed address on a relay port and on another port.
fn peers(relayed_ip: IpAddr) -> Vec<SocketAddr> {
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

/// What happened in a run, besides the victim's traffic: what the scripts in the seed
/// corpus are checked to reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Success responses, by method.
    pub successes: Vec<(Method, u32)>,
    /// Error responses, by code.
    pub errors: Vec<(u16, u32)>,
    /// Client datagrams relayed to a peer.
    pub relayed: u32,
    /// Peer datagrams forwarded to a client.
    pub forwarded: u32,
    /// Allocations that ended, and channels unbound.
    pub released: u32,
    /// Channels unbound.
    pub unbound: u32,
}

fn bump<K: PartialEq>(counts: &mut Vec<(K, u32)>, key: K) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => counts.push((key, 1)),
    }
}

impl Tally {
    pub(crate) fn success(&mut self, method: Method) {
        bump(&mut self.successes, method);
    }

    pub(crate) fn error(&mut self, code: u16) {
        bump(&mut self.errors, code);
    }

    /// Successes of `method`.
    pub fn successes(&self, method: Method) -> u32 {
        self.successes
            .iter()
            .find(|(m, _)| *m == method)
            .map_or(0, |c| c.1)
    }

    /// Errors with `code`.
    pub fn errors(&self, code: u16) -> u32 {
        self.errors
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(0, |c| c.1)
    }
}

/// The victim's allocation, as set up before the input runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Victim {
    pub relayed: RelayEndpoint,
    pub peer: SocketAddr,
    bound: Instant,
    refreshed: Instant,
    /// Cleared for the ending, when everything is let expire.
    pub alive: bool,
}

/// Everything a run holds.
pub struct World {
    pub(crate) config: Config,
    pub(crate) now: Instant,
    pub(crate) wall: u64,
    pub(crate) workers: Vec<Server>,
    pub(crate) shared: SharedState,
    pub(crate) relayed_ip: IpAddr,
    pub(crate) filter: PeerFilter,
    /// The credentials the server holds now.
    pub(crate) secrets: Vec<Vec<u8>>,
    pub(crate) users: Vec<StaticUser>,
    pub(crate) creds: Vec<Cred>,
    pub(crate) clients: Vec<Client>,
    pub(crate) peers: Vec<SocketAddr>,
    pub(crate) model: Model,
    pub(crate) victim: Victim,
    /// What the input did (the victim's setup and upkeep not counted).
    pub tally: Tally,
}

impl World {
    /// Two workers configured by `config`, and the victim's allocation with its channel.
    pub fn new(config: Config) -> Self {
        let relayed_ip: IpAddr = if config.bit(4) {
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into()
        } else {
            Ipv4Addr::new(203, 0, 113, 1).into()
        };
        let (secrets, users) = credential_set(0);
        let mut core = tern_proto::Config::new(REALM, relayed_ip, FIRST_PORT..=LAST_PORT);
        core.relay_ports.retain(|&p| p != UNBOUND_PORT);
        core.auth_secrets = secrets.clone();
        core.users = users.clone();
        core.always_fingerprint = config.bit(0);
        core.rfc5766_channels = config.bit(1);
        core.software = config.bit(2).then(|| "tern-fuzz".to_owned());
        core.max_bps = if config.bit(3) { 4096 } else { 0 };
        core.user_quota = if config.bit(5) { 2 } else { 0 };
        core.total_quota = if config.bit(6) { 6 } else { 0 };
        if config.bit(7) {
            core.nonce_lifetime = Duration::from_secs(30);
        }
        core.max_permissions_per_allocation = 4;
        core.max_channels_per_allocation = 4;
        let filter = PeerFilter::new(core.peer_filter.clone());
        for ip in MUST_REFUSE {
            assert!(
                !filter.allows(ip.parse().unwrap()),
                "the filter lets {ip} through"
            );
        }
        for ip in MUST_ALLOW {
            assert!(
                filter.allows(ip.parse().unwrap()),
                "the filter refuses {ip}"
            );
        }
        let shared = SharedState::new(core.relay_ports.clone(), 0x5eed);
        #[allow(clippy::disallowed_methods)] // The one real clock reading: the origin.
        let t0 = Instant::now();
        let workers = (0..2)
            .map(|i| Server::with_shared(core.clone(), t0, SEED, shared.clone(), i))
            .collect();
        let peers = peers(relayed_ip);
        let victim_peer = peers[if relayed_ip.is_ipv4() { 1 } else { 2 }];
        let mut world = World {
            config,
            now: t0,
            wall: WALL0,
            workers,
            shared,
            relayed_ip,
            filter,
            secrets,
            users,
            creds: credentials(),
            clients: clients(),
            peers,
            model: Model::default(),
            victim: Victim {
                relayed: RelayEndpoint {
                    family: Family::of(relayed_ip),
                    port: 0,
                },
                peer: victim_peer,
                bound: t0,
                refreshed: t0,
                alive: false,
            },
            tally: Tally::default(),
        };
        let allocate = vec![Attr::Transport(attr::TRANSPORT_UDP), Attr::Lifetime(3600)];
        world.victim_request(Method::ALLOCATE, allocate);
        let held = world
            .model
            .held_by(&world.clients[VICTIM].five)
            .expect("the victim allocated");
        world.victim.relayed.port = held.0;
        world.victim_request(Method::CHANNEL_BIND, world.victim_binding());
        world.victim.alive = true;
        world.check();
        world.tally = Tally::default();
        world
    }

    /// Runs one operation, then checks the invariants.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Raw { client, data } => {
                self.client_datagram(self.client(*client), data);
            }
            Op::Request(req) => {
                let i = self.client(req.client);
                let data = self.build(i, req);
                self.client_datagram(i, &data);
            }
            Op::ChannelData {
                client,
                channel,
                declared,
                payload,
                padding,
            } => {
                let mut data = channel.to_be_bytes().to_vec();
                let len = declared.unwrap_or(payload.len() as u16);
                data.extend_from_slice(&len.to_be_bytes());
                data.extend_from_slice(payload);
                data.extend_from_slice(&[0; 3][..usize::from(*padding % 4)]);
                self.client_datagram(self.client(*client), &data);
            }
            Op::Peer {
                port,
                peer,
                flags,
                payload,
            } => self.peer_datagram(*port, *peer, *flags, payload),
            Op::Advance { secs } => self.advance(u64::from(secs % 2048), true),
            Op::Wall { delta } => self.wall = self.wall.saturating_add_signed(i64::from(*delta)),
            Op::Close { client } => {
                let c = &self.clients[self.client(*client)];
                let (five, w) = (c.five, c.worker);
                if matches!(five.transport, Transport::Stream { .. }) {
                    self.workers[w].handle_connection_closed(self.now, five);
                    self.drain(w, &Step::Close(five));
                }
            }
            Op::Drain { alternate } => {
                let alternate = alternate.then(|| "192.0.2.99:3478".parse().unwrap());
                for server in &mut self.workers {
                    server.drain(alternate);
                    assert!(server.is_draining());
                }
            }
            Op::Reload { set } => {
                let (secrets, users) = credential_set(*set);
                for server in &mut self.workers {
                    let filter = server.config().peer_filter.clone();
                    server.reload(secrets.clone(), users.clone(), filter);
                }
                (self.secrets, self.users) = (secrets, users);
            }
        }
        for w in 0..self.workers.len() {
            self.expect_quiet(w);
        }
        self.check();
    }

    /// The end of a run: the workers shut down (or everything expires), and the pool is
    /// whole again.
    pub fn finish(&mut self) {
        self.victim.alive = false;
        if self.config.more & 1 != 0 {
            // Longer than any lifetime the server grants (max-allocate-lifetime, 3,600 s).
            self.advance(2 * 3600 + 2 * TIME_STEP, false);
        } else {
            for w in 0..self.workers.len() {
                self.workers[w].shutdown(self.now);
                self.drain(w, &Step::Shutdown);
            }
        }
        self.check();
        assert!(
            self.model.claimed.is_empty(),
            "allocations outlived their lifetime"
        );
        assert!(self.model.channels.is_empty());
        assert_eq!(self.shared.reserved_ports(), 0);
        assert_eq!(self.shared.free_ports(), self.shared.pool_size());
        for server in &self.workers {
            let s = server.stats_local();
            assert_eq!((s.allocations, s.permissions, s.channels), (0, 0, 0));
        }
    }

    fn client(&self, selector: u8) -> usize {
        usize::from(selector) % CLIENTS
    }

    /// A datagram from client `i`: the decision, the outputs it queued, and their checks.
    /// Returns the reply, if any.
    pub(crate) fn client_datagram(&mut self, i: usize, data: &[u8]) -> Option<Vec<u8>> {
        let (five, w) = (self.clients[i].five, self.clients[i].worker);
        let out = self.workers[w].handle_client_datagram(self.now, self.wall, five, data);
        let reply = self.drain(w, &Step::Client { index: i, data });
        self.check_client_output(i, data, &out, reply.as_deref());
        reply
    }

    fn peer_datagram(&mut self, port: u8, peer: u8, flags: u8, payload: &[u8]) {
        let client = self.clients[usize::from(port) % self.clients.len()].five;
        let held = self.model.held_by(&client).map(|(p, _)| p);
        let port = match held {
            Some(p) if port < 0x80 => p,
            _ => FIRST_PORT + u16::from(port & 0x7F),
        };
        let worker = self
            .model
            .claimed
            .get(&port)
            .map_or(usize::from(flags & 1), |h| h.worker);
        let family = match (Family::of(self.relayed_ip), flags & 2 != 0) {
            (f, false) => f,
            (Family::V4, true) => Family::V6,
            (_, true) => Family::V4,
        };
        let relayed = RelayEndpoint { family, port };
        let peer = self.peers[usize::from(peer) % self.peers.len()];
        // Bit 2: a buffer without the room after the payload the core asks for.
        let tailroom = if flags & 4 != 0 { 0 } else { PEER_TAILROOM };
        let mut buf = vec![0xEE; PEER_HEADROOM + payload.len() + tailroom];
        buf[PEER_HEADROOM..PEER_HEADROOM + payload.len()].copy_from_slice(payload);
        let out = self.workers[worker].handle_peer_datagram(
            self.now,
            relayed,
            peer,
            &mut buf,
            payload.len(),
        );
        if tailroom == 0 {
            assert!(
                matches!(out, PeerOutput::Drop(_)),
                "framed without room: {out:?}"
            );
        }
        self.check_peer_output(relayed, peer, payload, &buf, &out);
    }

    /// Moves both clocks `secs` forward, running the timers and checking after each step;
    /// with `maintain`, in steps of [`TIME_STEP`] after each of which the victim binds its
    /// channel again and refreshes its allocation as a client would when they are due.
    fn advance(&mut self, secs: u64, maintain: bool) {
        let mut left = secs;
        // Without the victim's upkeep, one step: the timer wheel takes a long jump at once.
        let most = if maintain { TIME_STEP } else { secs };
        loop {
            let step = left.min(most);
            left -= step;
            self.now += Duration::from_secs(step);
            self.wall += step;
            for w in 0..self.workers.len() {
                self.workers[w].handle_timeout(self.now);
                self.drain(w, &Step::Timer);
            }
            self.check();
            if maintain && self.now - self.victim.refreshed >= VICTIM_REFRESH {
                self.victim_request(Method::REFRESH, vec![Attr::Lifetime(3600)]);
                self.victim.refreshed = self.now;
            }
            if maintain && self.now - self.victim.bound >= VICTIM_REBIND {
                self.victim_request(Method::CHANNEL_BIND, self.victim_binding());
                self.victim.bound = self.now;
            }
            if left == 0 {
                break;
            }
        }
    }

    fn victim_binding(&self) -> Vec<Attr> {
        let peer = self
            .peers
            .iter()
            .position(|p| *p == self.victim.peer)
            .expect("a peer");
        vec![Attr::Channel(VICTIM_CHANNEL), Attr::Peer(peer as u8)]
    }

    /// A request of the victim's, as a client sends it: challenged first while it holds no
    /// nonce, retried once after a 401 or 438 with the nonce that came back. It must succeed.
    fn victim_request(&mut self, method: Method, attrs: Vec<Attr>) {
        let req = Request {
            client: VICTIM as u8,
            method: method.0,
            class: 0,
            same_tid: false,
            attrs,
            auth: 1,
            cred: VICTIM_CRED,
            key: 0,
            nonce: 0,
            raw_nonce: Vec::new(),
        };
        let tally = self.tally.clone();
        self.victim_exchange(method, req);
        self.tally = tally;
    }

    fn victim_exchange(&mut self, method: Method, req: Request) {
        if self.clients[VICTIM].nonce.is_none() {
            // The first request goes unsigned: its 401 brings the nonce.
            let challenge = Request {
                auth: 0,
                ..req.clone()
            };
            let data = self.build(VICTIM, &challenge);
            self.client_datagram(VICTIM, &data).expect("a 401");
        }
        let mut code = None;
        for _ in 0..2 {
            let data = self.build(VICTIM, &req);
            let reply = self.client_datagram(VICTIM, &data).expect("a reply");
            let msg = Message::parse(&reply).expect("checked");
            if msg.class() == Class::Success {
                return;
            }
            let error = msg.get(attr::ERROR_CODE).expect("checked").value;
            code = attr::decode_error_code(error).ok().map(|(c, _)| c);
            if !matches!(code, Some(401 | 438)) {
                break;
            }
        }
        panic!("the victim's {} failed: {code:?}", method.name());
    }

    /// The bytes of a request built by client `i`.
    fn build(&mut self, i: usize, req: &Request) -> Vec<u8> {
        let class = [
            Class::Request,
            Class::Indication,
            Class::Success,
            Class::Error,
        ][usize::from(req.class & 3)];
        let client = &mut self.clients[i];
        if !req.same_tid {
            client.sent += 1;
            let mut t = [0u8; 12];
            t[0] = i as u8;
            t[1] = 0x7E;
            t[8..].copy_from_slice(&client.sent.to_be_bytes());
            client.tid = TransactionId(t);
        }
        let tid = client.tid;
        let cred = &self.creds[usize::from(req.cred) % CREDENTIALS];
        let key = match req.key {
            0 => cred.key(),
            k => self.creds[usize::from(k - 1) % CREDENTIALS].key(),
        };
        let nonce = match req.nonce {
            0 => self.clients[i].nonce.clone(),
            1 => None,
            2 => self.clients[(i + 1) % self.clients.len()].nonce.clone(),
            _ => Some(req.raw_nonce.clone()),
        };
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::new(Method(req.method), class), tid);
        for a in &req.attrs {
            self.write_attr(&mut w, a);
        }
        let mac = req.auth & 3;
        if mac != 0 || req.auth & 0x80 != 0 {
            if req.auth & 4 == 0 {
                w.attr(attr::USERNAME, cred.username.as_bytes());
            }
            if req.auth & 8 == 0 {
                w.attr(attr::REALM, REALM.as_bytes());
            }
            if let Some(n) = &nonce {
                w.attr(attr::NONCE, n);
            }
        }
        if mac & 1 != 0 {
            w.message_integrity(&key);
        }
        if mac & 2 != 0 {
            w.message_integrity_sha256(&key);
        }
        if req.auth & 0x10 != 0 {
            w.attr(attr::SOFTWARE, b"after the integrity");
        }
        let fingerprint = (req.auth >> 5) & 3;
        if fingerprint != 0 {
            w.fingerprint();
        }
        w.finish();
        if fingerprint == 2 {
            let last = buf.len() - 1;
            buf[last] ^= 0x01;
        }
        buf
    }

    fn write_attr(&self, w: &mut MessageWriter<'_>, a: &Attr) {
        match a {
            Attr::Peer(p) => {
                w.xor_address(
                    attr::XOR_PEER_ADDRESS,
                    self.peers[usize::from(*p) % self.peers.len()],
                );
            }
            Attr::Address { v6, port, ip } => {
                let ip: IpAddr = if *v6 {
                    Ipv6Addr::from(*ip).into()
                } else {
                    Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).into()
                };
                w.xor_address(attr::XOR_PEER_ADDRESS, SocketAddr::new(ip, *port));
            }
            Attr::Lifetime(l) => {
                w.u32(attr::LIFETIME, *l);
            }
            Attr::Transport(t) => {
                w.attr(attr::REQUESTED_TRANSPORT, &[*t, 0, 0, 0]);
            }
            Attr::Channel(c) => {
                let [hi, lo] = c.to_be_bytes();
                w.attr(attr::CHANNEL_NUMBER, &[hi, lo, 0, 0]);
            }
            Attr::EvenPort(f) => {
                w.attr(attr::EVEN_PORT, &[*f]);
            }
            Attr::Token(t) => {
                let tokens = &self.model.tokens;
                let token = match tokens.len() {
                    0 => [*t; 8],
                    n => tokens[usize::from(*t) % n],
                };
                w.attr(attr::RESERVATION_TOKEN, &token);
            }
            Attr::Family(f) => {
                w.attr(attr::REQUESTED_ADDRESS_FAMILY, &[*f, 0, 0, 0]);
            }
            Attr::AdditionalFamily(f) => {
                w.attr(attr::ADDITIONAL_ADDRESS_FAMILY, &[*f, 0, 0, 0]);
            }
            Attr::DontFragment => {
                w.attr(attr::DONT_FRAGMENT, &[]);
            }
            Attr::Data(d) => {
                w.attr(attr::DATA, d);
            }
            Attr::Raw(t, v) => {
                w.attr(*t, v);
            }
        }
    }

    /// The victim's ChannelData reaches its peer, and its peer's datagrams reach it.
    pub(crate) fn victim_relays(&mut self) {
        let v = self.victim;
        let (five, w) = (self.clients[VICTIM].five, self.clients[VICTIM].worker);
        let [hi, lo] = VICTIM_CHANNEL.to_be_bytes();
        let data = [hi, lo, 0, 1, b'v'];
        let out = self.workers[w].handle_client_datagram(self.now, self.wall, five, &data);
        assert_eq!(
            out,
            ClientOutput::Relay {
                relayed: v.relayed,
                peer: v.peer,
                payload: 4..5
            },
            "the victim's ChannelData is relayed"
        );
        let mut buf = [0xEE; PEER_HEADROOM + 1 + PEER_TAILROOM];
        buf[PEER_HEADROOM] = b'p';
        let out = self.workers[w].handle_peer_datagram(self.now, v.relayed, v.peer, &mut buf, 1);
        let PeerOutput::Forward { five_tuple, range } = out else {
            panic!("the victim's peer is not forwarded: {out:?}");
        };
        assert_eq!(five_tuple, five);
        assert_eq!(buf[range], [hi, lo, 0, 1, b'p']);
        self.expect_quiet(w);
    }
}
