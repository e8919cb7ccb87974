//! A client-side harness for driving the sans-IO core in virtual time.
//!
//! [`Harness`] owns a [`Server`], a monotonic clock that starts at one real `Instant` and only
//! moves when a test says so, and a wall clock in Unix seconds. [`Client`] builds requests
//! the way a TURN client does (a REST or static long-term credential, the 401 → NONCE →
//! signed retry dance) and hands back parsed [`Response`]s. The harness drains the core's
//! output queue after every input and keeps what it saw, in order ([`Harness::outputs`]),
//! and the events apart ([`Harness::events`]).
#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_proto::{
    AllocationId, BoundChannel, ClientOutput, Config, Destination, Event, FiveTuple, ListenerId,
    Output, PeerOutput, RelayEndpoint, Server, Stats, PEER_HEADROOM, PEER_TAILROOM,
};
use tern_wire::{
    attr, Class, Integrity, Message, MessageType, MessageWriter, Method, TransactionId,
};

pub const REALM: &str = "example.org";
pub const SECRET: &[u8] = b"north";
/// The wall clock at the start of every test.
pub const WALL: u64 = 1_700_000_000;
/// The relay port range of [`config`].
pub const PORTS: std::ops::RangeInclusive<u16> = 49152..=49251;
/// The listening address clients talk to.
pub const LISTEN: &str = "192.0.2.1:3478";

/// Public addresses the default peer filter allows.
pub fn peer_a() -> SocketAddr {
    "93.184.216.34:5000".parse().unwrap()
}
pub fn peer_b() -> SocketAddr {
    "151.101.1.69:6000".parse().unwrap()
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A config with the REST secret [`SECRET`], relayed IP 203.0.113.1, ports [`PORTS`] and the
/// default peer filter.
pub fn config() -> Config {
    let mut c = Config::new(REALM, "203.0.113.1".parse().unwrap(), PORTS);
    c.auth_secrets = vec![SECRET.to_vec()];
    c
}

/// An output of the core, owned, as the harness saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Transmit {
        destination: Destination,
        bytes: Vec<u8>,
    },
    Claim {
        relayed: RelayEndpoint,
        allocation: AllocationId,
    },
    Release {
        relayed: RelayEndpoint,
        allocation: AllocationId,
    },
    ChannelBound(BoundChannel),
    ChannelUnbound(BoundChannel),
    Event(Event),
}

/// The server and its two clocks.
pub struct Harness {
    pub server: Server,
    pub t0: Instant,
    pub now: Instant,
    pub wall: u64,
    /// Every output drained so far, in order, until [`Harness::outputs`] takes them.
    seen: Vec<Seen>,
    /// The events among them, until [`Harness::events`] takes them.
    events: Vec<Event>,
}

impl Harness {
    pub fn new(config: Config) -> Self {
        #[allow(clippy::disallowed_methods)] // The only real clock reading: the origin.
        let t0 = Instant::now();
        Self {
            server: Server::new(config, t0, [7; 32]),
            t0,
            now: t0,
            wall: WALL,
            seen: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Worker `worker` of several sharing `shared` (same seed, same clocks' origin).
    pub fn worker(
        config: Config,
        t0: Instant,
        shared: tern_proto::SharedState,
        worker: u32,
    ) -> Self {
        Self {
            server: Server::with_shared(config, t0, [7; 32], shared, worker),
            t0,
            now: t0,
            wall: WALL,
            seen: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> u64 {
        (self.now - self.t0).as_secs()
    }

    /// Moves both clocks forward and runs the timers.
    pub fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
        self.wall += secs;
        self.server.handle_timeout(self.now);
        self.drain();
    }

    /// Moves both clocks to `secs` after the start and runs the timers.
    pub fn advance_to(&mut self, secs: u64) {
        let elapsed = self.elapsed();
        assert!(secs >= elapsed, "time only moves forward");
        self.advance(secs - elapsed);
    }

    pub fn stats(&self) -> Stats {
        self.server.stats()
    }

    /// Drains the core's output queue into the harness's records; returns how many
    /// outputs there were.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Some(out) = self.server.poll_output() {
            n += 1;
            let seen = match out {
                Output::Transmit(t) => Seen::Transmit {
                    destination: t.destination,
                    bytes: t.contents.to_vec(),
                },
                Output::Claim {
                    relayed,
                    allocation,
                } => Seen::Claim {
                    relayed,
                    allocation,
                },
                Output::Release {
                    relayed,
                    allocation,
                } => Seen::Release {
                    relayed,
                    allocation,
                },
                Output::ChannelBound(c) => Seen::ChannelBound(c),
                Output::ChannelUnbound(c) => Seen::ChannelUnbound(c),
                Output::Event(e) => {
                    self.events.push(e.clone());
                    Seen::Event(e)
                }
                other => panic!("an output the harness does not know: {other:?}"),
            };
            self.seen.push(seen);
        }
        n
    }

    /// Every output since the last call, in the order the core queued them.
    pub fn outputs(&mut self) -> Vec<Seen> {
        self.drain();
        std::mem::take(&mut self.seen)
    }

    /// The events since the last call.
    pub fn events(&mut self) -> Vec<Event> {
        self.drain();
        std::mem::take(&mut self.events)
    }

    /// Feeds a raw datagram from `five`; returns the decision and the reply (the bytes of
    /// the transmit to `five` it queued, empty if none).
    pub fn datagram(&mut self, five: FiveTuple, data: &[u8]) -> (ClientOutput, Vec<u8>) {
        let out = self
            .server
            .handle_client_datagram(self.now, self.wall, five, data);
        let before = self.seen.len();
        self.drain();
        let replies: Vec<&Vec<u8>> = self.seen[before..]
            .iter()
            .filter_map(|s| match s {
                Seen::Transmit {
                    destination: Destination::Client(to),
                    bytes,
                } if *to == five => Some(bytes),
                _ => None,
            })
            .collect();
        assert!(replies.len() <= 1, "one reply per datagram at most");
        let reply = replies.first().map_or_else(Vec::new, |r| r.to_vec());
        assert_eq!(
            out == ClientOutput::Reply,
            !reply.is_empty(),
            "a reply is queued exactly when the decision says so"
        );
        (out, reply)
    }

    /// The relayed endpoint of `port` in the first family the server relays in.
    pub fn relayed(&self, port: u16) -> RelayEndpoint {
        RelayEndpoint {
            family: self
                .server
                .config()
                .relay_families()
                .next()
                .expect("a relay family"),
            port,
        }
    }

    /// A datagram from `peer` to relay port `relay_port`: the decision and, when forwarded,
    /// the bytes to send to the client. The buffer around the payload is filled with junk so
    /// that padding the core forgets to write shows.
    pub fn peer_datagram(
        &mut self,
        relay_port: u16,
        peer: SocketAddr,
        payload: &[u8],
    ) -> (PeerOutput, Vec<u8>) {
        let relayed = self.relayed(relay_port);
        self.peer_datagram_to(relayed, peer, payload)
    }

    /// A datagram from `peer` to the relayed endpoint `relayed` (of either family), as
    /// [`Harness::peer_datagram`].
    pub fn peer_datagram_to(
        &mut self,
        relayed: RelayEndpoint,
        peer: SocketAddr,
        payload: &[u8],
    ) -> (PeerOutput, Vec<u8>) {
        let mut buf = vec![0xEE; PEER_HEADROOM + payload.len() + PEER_TAILROOM];
        buf[PEER_HEADROOM..PEER_HEADROOM + payload.len()].copy_from_slice(payload);
        let out =
            self.server
                .handle_peer_datagram(self.now, relayed, peer, &mut buf, payload.len());
        let framed = match &out {
            PeerOutput::Forward { range, .. } => buf[range.clone()].to_vec(),
            _ => Vec::new(),
        };
        assert_eq!(self.drain(), 0, "the data paths queue nothing");
        (out, framed)
    }
}

/// A parsed server response.
#[derive(Clone)]
pub struct Response {
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.msg();
        write!(f, "{:?} {:?}", m.method(), m.class())?;
        if let Some((code, reason)) = self.error() {
            write!(f, " {code} {reason}")?;
        }
        Ok(())
    }
}

impl Response {
    pub fn msg(&self) -> Message<'_> {
        Message::parse(&self.bytes).expect("the server's replies are valid STUN")
    }
    pub fn class(&self) -> Class {
        self.msg().class()
    }
    pub fn method(&self) -> Method {
        self.msg().method()
    }
    pub fn is_success(&self) -> bool {
        self.class() == Class::Success
    }
    pub fn error(&self) -> Option<(u16, String)> {
        let a = self.msg().get(attr::ERROR_CODE)?;
        let (code, reason) = attr::decode_error_code(a.value).expect("valid ERROR-CODE");
        Some((code, reason.to_owned()))
    }
    /// The error code; panics on a success.
    pub fn code(&self) -> u16 {
        assert_eq!(self.class(), Class::Error, "expected an error response");
        self.error().expect("error responses carry ERROR-CODE").0
    }
    pub fn has(&self, typ: u16) -> bool {
        self.msg().get(typ).is_some()
    }
    pub fn value(&self, typ: u16) -> Option<Vec<u8>> {
        self.msg().get(typ).map(|a| a.value.to_vec())
    }
    pub fn xor_address(&self, typ: u16) -> Option<SocketAddr> {
        let m = self.msg();
        let a = m.get(typ)?;
        Some(attr::decode_xor_address(a.value, typ, &m.transaction_id()).expect("valid address"))
    }
    pub fn address(&self, typ: u16) -> Option<SocketAddr> {
        let a = self.msg().get(typ)?;
        Some(attr::decode_address(a.value, typ).expect("valid address"))
    }
    /// Every XOR-RELAYED-ADDRESS, in order.
    pub fn relayed_addresses(&self) -> Vec<SocketAddr> {
        let m = self.msg();
        m.attributes()
            .filter(|a| a.typ == attr::XOR_RELAYED_ADDRESS)
            .map(|a| attr::decode_xor_address(a.value, a.typ, &m.transaction_id()).expect("valid"))
            .collect()
    }
    /// ADDRESS-ERROR-CODE as (family byte, code).
    pub fn address_error(&self) -> Option<(u8, u16)> {
        let a = self.msg().get(attr::ADDRESS_ERROR_CODE)?;
        let (family, code, _) = attr::decode_address_error_code(a.value).expect("valid");
        Some((family, code))
    }
    pub fn lifetime(&self) -> Option<u32> {
        let a = self.msg().get(attr::LIFETIME)?;
        Some(attr::decode_u32(a.value, attr::LIFETIME).expect("valid LIFETIME"))
    }
    pub fn integrity(&self, key: &[u8; 16]) -> Integrity {
        self.msg().check_integrity(key)
    }
    pub fn unknown_attributes(&self) -> Vec<u16> {
        self.value(attr::UNKNOWN_ATTRIBUTES)
            .map(|v| attr::decode_unknown_attributes(&v).collect())
            .unwrap_or_default()
    }
}

/// One TURN client: a 5-tuple, a long-term credential and the nonce it holds.
pub struct Client {
    pub five: FiveTuple,
    pub username: String,
    pub key: [u8; 16],
    pub nonce: Option<Vec<u8>>,
    /// Add FINGERPRINT to requests.
    pub fingerprint: bool,
    next_tid: u64,
}

/// The REST username `<expiry>:<name>` and its long-term key under `secret`.
pub fn rest_credential(secret: &[u8], expiry: u64, name: &str) -> (String, [u8; 16]) {
    let username = format!("{expiry}:{name}");
    let password = tern_proto::auth::rest_password(secret, &username);
    let key = tern_proto::auth::long_term_key(&username, REALM, &password);
    (username, key)
}

impl Client {
    /// A client at `client` (an `ip:port`) with a REST credential under [`SECRET`] valid for
    /// an hour from [`WALL`].
    pub fn rest(client: &str, name: &str) -> Self {
        let (username, key) = rest_credential(SECRET, WALL + 3600, name);
        Self::with_key(client, &username, key)
    }

    /// A client with a static user's password.
    pub fn password(client: &str, username: &str, password: &str) -> Self {
        let key = tern_proto::auth::long_term_key(username, REALM, password);
        Self::with_key(client, username, key)
    }

    pub fn with_key(client: &str, username: &str, key: [u8; 16]) -> Self {
        let client = addr(client);
        Self {
            five: FiveTuple::udp(ListenerId(0), client, addr(LISTEN)),
            username: username.to_owned(),
            key,
            nonce: None,
            fingerprint: false,
            next_tid: 0,
        }
    }

    /// The same client under another credential (same 5-tuple, no nonce yet).
    pub fn as_user(&self, username: &str, key: [u8; 16]) -> Self {
        Self {
            five: self.five,
            username: username.to_owned(),
            key,
            nonce: None,
            fingerprint: self.fingerprint,
            next_tid: self.next_tid + 1000,
        }
    }

    pub fn fresh_tid(&mut self) -> TransactionId {
        self.next_tid += 1;
        self.tid(self.next_tid)
    }

    /// The transaction id of the last request built with [`Client::fresh_tid`] (to
    /// retransmit it).
    pub fn last_tid(&self) -> TransactionId {
        self.tid(self.next_tid)
    }

    fn tid(&self, n: u64) -> TransactionId {
        let next_tid = n;
        let mut t = [0u8; 12];
        t[..8].copy_from_slice(&next_tid.to_be_bytes());
        let port = self.five.client.port().to_be_bytes();
        t[8..10].copy_from_slice(&port);
        t[10] = 0x7e;
        t[11] = self.username.len() as u8;
        TransactionId(t)
    }

    /// Writes a request. With `signed`, USERNAME, REALM and NONCE (those not in `omit`) and
    /// MESSAGE-INTEGRITY follow the attributes `extra` writes.
    pub fn build(
        &self,
        method: Method,
        class: Class,
        tid: TransactionId,
        signed: bool,
        omit: &[u16],
        extra: &dyn Fn(&mut MessageWriter),
    ) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::new(method, class), tid);
        extra(&mut w);
        if signed {
            if !omit.contains(&attr::USERNAME) {
                w.attr(attr::USERNAME, self.username.as_bytes());
            }
            if !omit.contains(&attr::REALM) {
                w.attr(attr::REALM, REALM.as_bytes());
            }
            if !omit.contains(&attr::NONCE) {
                if let Some(n) = &self.nonce {
                    w.attr(attr::NONCE, n);
                }
            }
            w.message_integrity(&self.key);
        }
        if self.fingerprint {
            w.fingerprint();
        }
        w.finish();
        buf
    }

    /// Sends `data`; panics unless the server replies.
    pub fn exchange(&mut self, h: &mut Harness, data: &[u8]) -> Response {
        let (out, reply) = h.datagram(self.five, data);
        assert_eq!(out, ClientOutput::Reply, "expected a reply");
        let r = Response { bytes: reply };
        assert_eq!(
            r.msg().transaction_id().0,
            data[8..20],
            "the reply answers the request's transaction"
        );
        r
    }

    /// One signed request with the nonce held now and transaction `tid`; no retries.
    pub fn request_once(
        &mut self,
        h: &mut Harness,
        method: Method,
        tid: TransactionId,
        extra: &dyn Fn(&mut MessageWriter),
    ) -> Response {
        let req = self.build(method, Class::Request, tid, true, &[], extra);
        self.exchange(h, &req)
    }

    /// An unsigned request: the first round trip, which the server answers with 401, REALM
    /// and NONCE. Stores the nonce.
    pub fn challenge(&mut self, h: &mut Harness, method: Method) -> Response {
        let tid = self.fresh_tid();
        let req = self.build(method, Class::Request, tid, false, &[], &|w| {
            if method == Method::ALLOCATE {
                w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
            }
        });
        let r = self.exchange(h, &req);
        assert_eq!(r.code(), 401, "an unsigned request is challenged");
        self.nonce = Some(r.value(attr::NONCE).expect("401 carries NONCE"));
        r
    }

    /// A signed request as a real client sends it: challenged first if no nonce is held,
    /// retried once with the fresh nonce of a 438.
    pub fn request(
        &mut self,
        h: &mut Harness,
        method: Method,
        extra: &dyn Fn(&mut MessageWriter),
    ) -> Response {
        if self.nonce.is_none() {
            self.challenge(h, method);
        }
        let tid = self.fresh_tid();
        let r = self.request_once(h, method, tid, extra);
        if r.error().is_some_and(|(c, _)| c == 438) {
            self.nonce = Some(r.value(attr::NONCE).expect("438 carries NONCE"));
            let tid = self.fresh_tid();
            return self.request_once(h, method, tid, extra);
        }
        r
    }

    /// Allocate with REQUESTED-TRANSPORT UDP and optionally LIFETIME.
    pub fn allocate_with(&mut self, h: &mut Harness, lifetime: Option<u32>) -> Response {
        self.request(h, Method::ALLOCATE, &|w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
            if let Some(l) = lifetime {
                w.u32(attr::LIFETIME, l);
            }
        })
    }

    /// Allocate with REQUESTED-TRANSPORT UDP and, when given, REQUESTED-ADDRESS-FAMILY and
    /// ADDITIONAL-ADDRESS-FAMILY with these family bytes.
    pub fn allocate_families(
        &mut self,
        h: &mut Harness,
        requested: Option<u8>,
        additional: Option<u8>,
    ) -> Response {
        self.request(h, Method::ALLOCATE, &|w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
            if let Some(f) = requested {
                w.attr(
                    attr::REQUESTED_ADDRESS_FAMILY,
                    &attr::encode_address_family(f),
                );
            }
            if let Some(f) = additional {
                w.attr(
                    attr::ADDITIONAL_ADDRESS_FAMILY,
                    &attr::encode_address_family(f),
                );
            }
        })
    }

    /// A dual allocation (ADDITIONAL-ADDRESS-FAMILY IPv6) that must succeed in both
    /// families: its IPv4 and IPv6 relayed addresses.
    pub fn allocate_dual(&mut self, h: &mut Harness) -> (SocketAddr, SocketAddr) {
        let r = self.allocate_families(h, None, Some(attr::FAMILY_IPV6));
        assert!(r.is_success(), "dual Allocate failed: {r:?}");
        assert!(!r.has(attr::ADDRESS_ERROR_CODE), "{:?}", r.address_error());
        match r.relayed_addresses()[..] {
            [v4, v6] => (v4, v6),
            ref other => panic!("two XOR-RELAYED-ADDRESS expected: {other:?}"),
        }
    }

    /// Allocates and returns the relayed address; panics on failure.
    pub fn allocate(&mut self, h: &mut Harness) -> SocketAddr {
        let r = self.allocate_with(h, None);
        assert!(r.is_success(), "Allocate failed: {r:?}");
        r.xor_address(attr::XOR_RELAYED_ADDRESS)
            .expect("XOR-RELAYED-ADDRESS")
    }

    pub fn refresh(&mut self, h: &mut Harness, lifetime: Option<u32>) -> Response {
        self.request(h, Method::REFRESH, &|w| {
            if let Some(l) = lifetime {
                w.u32(attr::LIFETIME, l);
            }
        })
    }

    pub fn create_permission(&mut self, h: &mut Harness, peers: &[SocketAddr]) -> Response {
        self.request(h, Method::CREATE_PERMISSION, &|w| {
            for p in peers {
                w.xor_address(attr::XOR_PEER_ADDRESS, *p);
            }
        })
    }

    pub fn channel_bind(&mut self, h: &mut Harness, number: u16, peer: SocketAddr) -> Response {
        self.request(h, Method::CHANNEL_BIND, &|w| {
            let n = number.to_be_bytes();
            w.attr(attr::CHANNEL_NUMBER, &[n[0], n[1], 0, 0]);
            w.xor_address(attr::XOR_PEER_ADDRESS, peer);
        })
    }

    /// A Send indication: returns the decision and the datagram (for payload ranges).
    pub fn send(
        &mut self,
        h: &mut Harness,
        peer: SocketAddr,
        data: &[u8],
    ) -> (ClientOutput, Vec<u8>) {
        let tid = self.fresh_tid();
        let ind = self.build(Method::SEND, Class::Indication, tid, false, &[], &|w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, peer);
            w.attr(attr::DATA, data);
        });
        let (out, _) = h.datagram(self.five, &ind);
        (out, ind)
    }

    /// A ChannelData message (no padding).
    pub fn channel_data(&mut self, h: &mut Harness, number: u16, data: &[u8]) -> ClientOutput {
        h.datagram(self.five, &channel_data(number, data)).0
    }
}

/// The bytes of a ChannelData message without padding.
pub fn channel_data(number: u16, data: &[u8]) -> Vec<u8> {
    let mut v = number.to_be_bytes().to_vec();
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// A deterministic xorshift64* generator for fuzz-style loops.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Parses a Data indication and returns its XOR-PEER-ADDRESS and DATA.
pub fn data_indication(framed: &[u8]) -> (SocketAddr, Vec<u8>) {
    assert_eq!(framed.len() % 4, 0, "STUN messages are padded to 4 bytes");
    let msg = Message::parse(framed).expect("a valid Data indication");
    assert_eq!(
        (msg.method(), msg.class()),
        (Method::DATA, Class::Indication)
    );
    let tid = msg.transaction_id();
    let peer = msg.get(attr::XOR_PEER_ADDRESS).expect("XOR-PEER-ADDRESS");
    let peer = attr::decode_xor_address(peer.value, attr::XOR_PEER_ADDRESS, &tid).unwrap();
    let data = msg.get(attr::DATA).expect("DATA");
    let end = data.offset + 4 + data.value.len();
    let pad = (4 - data.value.len() % 4) % 4;
    assert!(
        framed[end..end + pad].iter().all(|&b| b == 0),
        "zero padding"
    );
    (peer, data.value.to_vec())
}
