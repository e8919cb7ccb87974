//! What the `core` target knows independently of the core, from the outputs it saw, and the
//! checks of every output against it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tern_proto::auth::{long_term_key, rest_expiry, rest_password, MAX_SECRETS};
use tern_proto::{
    AllocationId, BoundChannel, ClientOutput, Destination, EndReason, Event, Family, FiveTuple,
    Output, PeerOutput, RelayEndpoint, Server, Traffic, UserSecret,
};
use tern_wire::{attr, classify, Class, Integrity, Message, Method, PacketKind};

use super::cast::REALM;
use super::world::World;

/// Where a batch of outputs came from.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// A datagram from client `index`.
    Client { index: usize, data: &'a [u8] },
    /// Timers.
    Timer,
    /// A stream connection closed.
    Close(FiveTuple),
    /// The worker shut down.
    Shutdown,
    /// An operator revoked allocations.
    Revoke,
}

/// An allocation, as the outputs told of it.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub five: FiveTuple,
    pub allocation: AllocationId,
    pub worker: usize,
    /// The key and username that authenticated its Allocate (known once the reply is read).
    pub key: Option<[u8; 16]>,
    pub username: String,
    /// What it relayed, counted from the decisions the core returned.
    pub traffic: Traffic,
    /// The peer IPs its successful CreatePermissions and ChannelBinds named.
    pub peers: Vec<IpAddr>,
}

/// The state the outputs describe.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// Relay ports claimed and not released, with their allocations.
    pub claimed: BTreeMap<u16, Held>,
    /// Channels bound and not unbound, with their workers (allocation handles are each
    /// worker's own).
    pub channels: Vec<(usize, BoundChannel)>,
    /// RESERVATION-TOKENs handed out.
    pub tokens: Vec<[u8; 8]>,
    /// The last allocations that ended, by worker (handles that reach nothing now).
    pub ended: Vec<(usize, AllocationId)>,
    /// User names refused on Allocate, until when (the revocations' periods).
    pub refused: Vec<(String, Instant)>,
    /// The allocations released by the step being checked: a Refresh to 0 is answered after
    /// its release, under the allocation's key.
    pub released_now: Vec<Held>,
}

impl Model {
    /// The allocation of `five`, with its port.
    pub fn held_by(&self, five: &FiveTuple) -> Option<(u16, &Held)> {
        let mut found = self.claimed.iter().filter(|(_, h)| h.five == *five);
        let first = found.next().map(|(p, h)| (*p, h));
        assert!(found.next().is_none(), "two allocations for one 5-tuple");
        first
    }
}

/// An output, owned.
#[derive(Debug)]
enum Seen {
    Transmit(Destination, Vec<u8>),
    Claim(RelayEndpoint, AllocationId),
    Release(RelayEndpoint, AllocationId),
    Bound(BoundChannel),
    Unbound(BoundChannel),
    Event(Event),
}

fn take_outputs(server: &mut Server) -> Vec<Seen> {
    let mut seen = Vec::new();
    while let Some(out) = server.poll_output() {
        seen.push(match out {
            Output::Transmit(t) => Seen::Transmit(t.destination, t.contents.to_vec()),
            Output::Claim {
                relayed,
                allocation,
            } => Seen::Claim(relayed, allocation),
            Output::Release {
                relayed,
                allocation,
            } => Seen::Release(relayed, allocation),
            Output::ChannelBound(b) => Seen::Bound(b),
            Output::ChannelUnbound(b) => Seen::Unbound(b),
            Output::Event(e) => Seen::Event(e),
            other => panic!("an output this target does not know: {other:?}"),
        });
    }
    seen
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

impl World {
    /// The server's own address (its relayed IP; no other is configured).
    fn is_own(&self, ip: IpAddr) -> bool {
        ip == self.relayed_ip
    }

    /// Whether data may go to `peer`: the filter allows it, or it is the server's own
    /// address on a relay port.
    fn relay_ok(&self, peer: SocketAddr) -> bool {
        let relay_port = self.workers[0]
            .config()
            .relay_port_range
            .contains(&peer.port());
        self.filter.allows(peer.ip()) || (self.is_own(peer.ip()) && relay_port)
    }

    /// Nothing is queued on worker `w`.
    pub(crate) fn expect_quiet(&mut self, w: usize) {
        if let Some(out) = self.workers[w].poll_output() {
            panic!("worker {w} queued {out:?} with nothing to answer");
        }
    }

    /// Drains worker `w` after `step`, checking each output in order against the model and
    /// updating it. Returns the reply to a client's request.
    pub(crate) fn drain(&mut self, w: usize, step: &Step<'_>) -> Option<Vec<u8>> {
        let five = match step {
            Step::Client { index, .. } => Some(self.clients[*index].five),
            Step::Close(five) => Some(*five),
            Step::Timer | Step::Shutdown | Step::Revoke => None,
        };
        let request = matches!(step, Step::Client { .. });
        let mut reply: Option<(usize, Vec<u8>)> = None;
        let (mut claims, mut bound, mut released) = (Vec::new(), Vec::new(), Vec::new());
        self.model.released_now.clear();
        for (k, seen) in take_outputs(&mut self.workers[w]).into_iter().enumerate() {
            match seen {
                Seen::Transmit(to, bytes) => {
                    assert!(request, "a transmit after {step:?}: {to:?}");
                    assert_eq!(
                        to,
                        Destination::Client(five.unwrap()),
                        "a reply goes to the requester"
                    );
                    assert!(reply.is_none(), "one reply per request");
                    reply = Some((k, bytes));
                }
                Seen::Claim(relayed, allocation) => {
                    assert!(request, "a claim after {step:?}");
                    let five = five.unwrap();
                    let port = relayed.port;
                    assert_eq!(relayed.family, Family::of(self.relayed_ip));
                    let pool = self.workers[w].config();
                    assert!(
                        pool.relay_ports[relayed.family.index()].contains(&port),
                        "port {port} is not in the pool"
                    );
                    assert!(
                        !self.model.claimed.contains_key(&port),
                        "port {port} claimed twice"
                    );
                    assert!(
                        self.model.held_by(&five).is_none(),
                        "a second allocation for {five:?}"
                    );
                    let held = Held {
                        five,
                        allocation,
                        worker: w,
                        key: None,
                        username: String::new(),
                        traffic: Traffic::default(),
                        peers: Vec::new(),
                    };
                    self.model.claimed.insert(port, held);
                    claims.push((k, port));
                }
                Seen::Release(relayed, allocation) => {
                    let held =
                        self.model.claimed.remove(&relayed.port).unwrap_or_else(|| {
                            panic!("release of port {} nobody holds", relayed.port)
                        });
                    assert_eq!((held.allocation, held.worker), (allocation, w));
                    if let Some(five) = five {
                        assert_eq!(held.five, five, "{step:?} ends another client's allocation");
                    }
                    assert!(
                        !self
                            .model
                            .channels
                            .iter()
                            .any(|(cw, c)| *cw == w && c.allocation == allocation),
                        "released before its channels were unbound"
                    );
                    released.push(k);
                    self.model.ended(w, allocation);
                    self.model.released_now.push(held);
                    self.tally.released += 1;
                }
                Seen::Bound(b) => {
                    assert!(request, "a channel bound after {step:?}");
                    assert_eq!(Some(b.five_tuple), five);
                    let held = self
                        .model
                        .claimed
                        .get(&b.relayed.port)
                        .expect("a held port");
                    assert_eq!((held.allocation, held.five), (b.allocation, b.five_tuple));
                    assert!(
                        self.relay_ok(b.peer),
                        "a channel to refused peer {}",
                        b.peer
                    );
                    let top = if self.config.flags & 2 != 0 {
                        0x7FFF
                    } else {
                        0x4FFF
                    };
                    assert!((0x4000..=top).contains(&b.number.get()));
                    assert!(
                        !self.model.channels.iter().any(|(cw, c)| *cw == w
                            && c.allocation == b.allocation
                            && (c.number == b.number || c.peer == b.peer)),
                        "a channel number or peer bound twice: {b:?}"
                    );
                    self.model.channels.push((w, b));
                    bound.push(k);
                }
                Seen::Unbound(b) => {
                    let i = self
                        .model
                        .channels
                        .iter()
                        .position(|(cw, c)| *cw == w && *c == b);
                    let i = i.unwrap_or_else(|| panic!("unbinding a channel never bound: {b:?}"));
                    self.model.channels.swap_remove(i);
                    self.tally.unbound += 1;
                    if let Some(five) = five {
                        assert_eq!(
                            b.five_tuple, five,
                            "{step:?} unbinds another client's channel"
                        );
                    }
                }
                Seen::Event(Event::AllocationCreated {
                    five_tuple,
                    relayed,
                    additional,
                    username,
                }) => {
                    assert_eq!(Some(five_tuple), five);
                    // The world has one relayed family and never asks for a dual allocation.
                    assert_eq!(additional, None);
                    assert_eq!(relayed.ip(), self.relayed_ip);
                    let held = self
                        .model
                        .claimed
                        .get_mut(&relayed.port())
                        .expect("claimed");
                    held.username = username;
                }
                Seen::Event(Event::AllocationEnded { reason, .. }) => {
                    let revoked = matches!(step, Step::Revoke);
                    assert_eq!(
                        reason == EndReason::Revoked,
                        revoked,
                        "{step:?} ended an allocation for {reason:?}"
                    );
                }
                Seen::Event(_) => {}
            }
        }
        let Step::Client { index, data } = step else {
            return None;
        };
        let reply_at = reply.as_ref().map(|r| r.0);
        for k in claims.iter().map(|c| &c.0).chain(&bound) {
            assert!(
                reply_at.is_some_and(|r| *k < r),
                "a claim or binding comes before the reply"
            );
        }
        for k in &released {
            assert!(
                reply_at.is_some_and(|r| *k > r),
                "a release comes after the reply"
            );
        }
        let (_, bytes) = reply?;
        self.check_reply(*index, data, &bytes, &claims);
        Some(bytes)
    }

    /// A reply answers its request; a success of an authenticated method is earned.
    fn check_reply(&mut self, i: usize, data: &[u8], reply: &[u8], claims: &[(usize, u16)]) {
        let five = self.clients[i].five;
        let req = Message::parse(data).expect("only a STUN message gets a reply");
        assert_eq!(req.class(), Class::Request, "only requests get replies");
        let msg = Message::parse(reply).expect("a reply parses");
        assert_eq!(msg.transaction_id(), req.transaction_id());
        assert_eq!(msg.method(), req.method());
        if self.config.flags & 1 != 0 || req.check_fingerprint().is_some() {
            assert_eq!(
                msg.check_fingerprint(),
                Some(true),
                "a reply with FINGERPRINT"
            );
        } else {
            assert_eq!(msg.check_fingerprint(), None);
        }
        match msg.class() {
            Class::Error => {
                let a = msg
                    .get(attr::ERROR_CODE)
                    .expect("an error carries ERROR-CODE");
                let (code, _) = attr::decode_error_code(a.value).expect("a valid ERROR-CODE");
                self.tally.error(code);
                if req.method() == Method::ALLOCATE {
                    self.check_refusal(&req, Some(code), claims);
                }
                if matches!(code, 401 | 438) {
                    if let Some(nonce) = msg.get(attr::NONCE) {
                        self.clients[i].nonce = Some(nonce.value.to_vec());
                    }
                }
                assert!(
                    claims.is_empty(),
                    "a relay port claimed for a failed Allocate"
                );
            }
            Class::Success => {
                if req.method() == Method::ALLOCATE {
                    self.check_refusal(&req, None, claims);
                }
                self.tally.success(msg.method());
                self.check_success(&five, &req, &msg, claims);
            }
            class => panic!("a reply of class {class:?}"),
        }
    }

    fn check_success(
        &mut self,
        five: &FiveTuple,
        req: &Message<'_>,
        msg: &Message<'_>,
        claims: &[(usize, u16)],
    ) {
        let tid = req.transaction_id();
        let method = req.method();
        if method == Method::BINDING {
            let a = msg
                .get(attr::XOR_MAPPED_ADDRESS)
                .expect("XOR-MAPPED-ADDRESS");
            assert_eq!(
                attr::decode_xor_address(a.value, a.typ, &tid),
                Ok(five.client)
            );
            assert!(claims.is_empty());
            return;
        }
        let key = self.authenticated(req, five).unwrap_or_else(|| {
            panic!(
                "{} succeeded without MESSAGE-INTEGRITY under a key the credentials give",
                method.name()
            )
        });
        assert_eq!(
            msg.check_integrity(&key),
            Integrity::Valid,
            "signed with the request's key"
        );
        let username = req.get(attr::USERNAME).expect("authenticated").value;
        let username = std::str::from_utf8(username).expect("authenticated");
        if method != Method::ALLOCATE {
            assert!(claims.is_empty());
        }
        match method {
            Method::ALLOCATE => {
                let a = msg
                    .get(attr::XOR_RELAYED_ADDRESS)
                    .expect("XOR-RELAYED-ADDRESS");
                let relayed = attr::decode_xor_address(a.value, a.typ, &tid).expect("valid");
                assert_eq!(relayed.ip(), self.relayed_ip);
                let (port, held) = self
                    .model
                    .held_by(five)
                    .expect("an allocation after success");
                assert_eq!(port, relayed.port());
                match claims {
                    [(_, claimed)] => {
                        assert_eq!(*claimed, port);
                        assert_eq!(held.username, username, "AllocationCreated names the user");
                        self.model.claimed.get_mut(&port).expect("held").key = Some(key);
                    }
                    [] => assert_eq!(held.key, Some(key), "a retransmission of the same Allocate"),
                    _ => panic!("one Allocate claimed {} ports", claims.len()),
                }
                if let Some(t) = msg.get(attr::RESERVATION_TOKEN) {
                    let token: [u8; 8] = t.value.try_into().expect("an 8-byte token");
                    self.model.tokens.push(token);
                }
            }
            Method::REFRESH => {
                let a = msg.get(attr::LIFETIME).expect("LIFETIME");
                let lifetime = attr::decode_u32(a.value, a.typ).expect("valid");
                let held = self.model.held_by(five).is_some();
                assert_eq!(
                    held,
                    lifetime != 0,
                    "a Refresh to 0 ends the allocation, others keep it"
                );
            }
            Method::CREATE_PERMISSION | Method::CHANNEL_BIND => {
                let (port, _) = self
                    .model
                    .held_by(five)
                    .expect("a permission on an allocation");
                // CreatePermission grants every XOR-PEER-ADDRESS; ChannelBind names one peer,
                // the first (a repeat is ignored, RFC 8489 §14), as the core reads it.
                let peers = req.attributes().filter(|a| a.typ == attr::XOR_PEER_ADDRESS);
                let named = if method == Method::CHANNEL_BIND {
                    1
                } else {
                    usize::MAX
                };
                for a in peers.take(named) {
                    let peer = attr::decode_xor_address(a.value, a.typ, &tid).expect("valid");
                    let peer = canonical(peer);
                    let ok = if method == Method::CHANNEL_BIND {
                        self.relay_ok(peer)
                    } else {
                        self.filter.allows(peer.ip()) || self.is_own(peer.ip())
                    };
                    assert!(ok, "a permission for refused peer {peer}");
                    let held = self.model.claimed.get_mut(&port).expect("held");
                    if !held.peers.contains(&peer.ip()) {
                        held.peers.push(peer.ip());
                    }
                }
            }
            other => panic!("a success for method {other:?}"),
        }
    }

    /// An Allocate's answer against the revocations: 403 only for a user refused now, and a
    /// refused user gets no new allocation, nor an answer from the checks after the refusal.
    fn check_refusal(&self, req: &Message<'_>, code: Option<u16>, claims: &[(usize, u16)]) {
        let username = req
            .get(attr::USERNAME)
            .and_then(|u| attr::decode_str(u.value, attr::USERNAME).ok());
        let refused = username.is_some_and(|u| self.refused(u));
        match code {
            Some(403) => assert!(refused, "403 on Allocate for {username:?}, not refused"),
            Some(486 | 442) => assert!(!refused, "refused {username:?} got past the refusal"),
            None if !claims.is_empty() => {
                assert!(!refused, "refused {username:?} allocated")
            }
            _ => {}
        }
    }

    /// The key under which `req`'s integrity is valid, among those the credentials held now
    /// give its USERNAME (and its own allocation's, unless a REST username expired).
    fn authenticated(&self, req: &Message<'_>, five: &FiveTuple) -> Option<[u8; 16]> {
        let username = req.get(attr::USERNAME)?;
        let username = attr::decode_str(username.value, attr::USERNAME).ok()?;
        let expired = rest_expiry(username).is_some_and(|e| e < self.wall);
        let mut keys = Vec::new();
        // Its own allocation's key, held still or released by this very request (a Refresh
        // to 0 by a user a reload removed).
        let own = self.model.held_by(five).map(|(_, h)| h);
        let released = self.model.released_now.iter().filter(|h| h.five == *five);
        for held in own.into_iter().chain(released) {
            if held.username == username && (!expired || self.secrets.is_empty()) {
                keys.extend(held.key);
            }
        }
        let statics: Vec<[u8; 16]> = self
            .users
            .iter()
            .filter(|u| u.name == username)
            .map(|u| match &u.secret {
                UserSecret::Password(p) => long_term_key(username, REALM, p),
                UserSecret::Key(k) => *k,
            })
            .collect();
        if !statics.is_empty() {
            keys.extend(statics);
        } else if rest_expiry(username).is_some() && !expired {
            for s in self.secrets.iter().take(MAX_SECRETS) {
                keys.push(long_term_key(username, REALM, &rest_password(s, username)));
            }
        }
        keys.into_iter()
            .find(|k| req.check_integrity(k) == Integrity::Valid)
    }

    /// A client datagram's decision: relayed only from the client's own allocation, to a
    /// peer it may reach, with the payload where the message has it.
    pub(crate) fn check_client_output(
        &mut self,
        i: usize,
        data: &[u8],
        out: &ClientOutput,
        reply: Option<&[u8]>,
    ) {
        assert_eq!(*out == ClientOutput::Reply, reply.is_some(), "{out:?}");
        let ClientOutput::Relay {
            relayed,
            peer,
            payload,
        } = out
        else {
            return;
        };
        self.tally.relayed += 1;
        let five = self.clients[i].five;
        let (port, held) = self
            .model
            .held_by(&five)
            .expect("relayed without an allocation");
        assert_eq!(
            *relayed,
            RelayEndpoint {
                family: Family::of(self.relayed_ip),
                port
            }
        );
        assert!(self.relay_ok(*peer), "relayed to refused peer {peer}");
        assert!(payload.start <= payload.end && payload.end <= data.len());
        match classify(data) {
            PacketKind::ChannelData => {
                let number = u16::from_be_bytes([data[0], data[1]]);
                let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
                let bound = self.model.channels.iter().find(|(w, c)| {
                    *w == held.worker && c.allocation == held.allocation && c.number.get() == number
                });
                assert_eq!(
                    bound.map(|c| c.1.peer),
                    Some(*peer),
                    "ChannelData to its channel's peer"
                );
                assert_eq!(*payload, 4..4 + len);
            }
            PacketKind::Stun => {
                let msg = Message::parse(data).expect("relayed from a valid message");
                assert_eq!(
                    (msg.method(), msg.class()),
                    (Method::SEND, Class::Indication)
                );
                let d = msg.get(attr::DATA).expect("DATA");
                assert_eq!(*payload, d.offset + 4..d.offset + 4 + d.value.len());
                let a = msg.get(attr::XOR_PEER_ADDRESS).expect("XOR-PEER-ADDRESS");
                let to = attr::decode_xor_address(a.value, a.typ, &msg.transaction_id());
                assert_eq!(to.map(canonical), Ok(*peer));
            }
            PacketKind::Other => panic!("relayed a datagram that is neither STUN nor ChannelData"),
        }
        let t = &mut self.model.claimed.get_mut(&port).expect("held").traffic;
        t.packets_to_peers += 1;
        t.bytes_to_peers += (payload.end - payload.start) as u64;
    }

    /// A peer datagram's decision: forwarded only to the client holding the port, from a
    /// peer it may hear from, framed as its channel or as a Data indication.
    pub(crate) fn check_peer_output(
        &mut self,
        relayed: RelayEndpoint,
        peer: SocketAddr,
        payload: &[u8],
        buf: &[u8],
        out: &PeerOutput,
    ) {
        let PeerOutput::Forward { five_tuple, range } = out else {
            return;
        };
        self.tally.forwarded += 1;
        assert_eq!(relayed.family, Family::of(self.relayed_ip));
        let t = &mut self
            .model
            .claimed
            .get_mut(&relayed.port)
            .expect("forwarded from a port nobody holds")
            .traffic;
        t.packets_to_client += 1;
        t.bytes_to_client += payload.len() as u64;
        let held = &self.model.claimed[&relayed.port];
        assert_eq!(held.five, *five_tuple, "forwarded to another client");
        let peer = canonical(peer);
        assert!(
            self.filter.allows(peer.ip()) || self.is_own(peer.ip()),
            "forwarded from refused peer {peer}"
        );
        let framed = &buf[range.clone()];
        let channel = self
            .model
            .channels
            .iter()
            .find(|(w, c)| *w == held.worker && c.allocation == held.allocation && c.peer == peer)
            .map(|(_, c)| c);
        match channel {
            Some(c) => {
                let [hi, lo] = c.number.get().to_be_bytes();
                let [a, b] = (payload.len() as u16).to_be_bytes();
                assert_eq!(framed[..4], [hi, lo, a, b]);
                assert_eq!(&framed[4..], payload);
            }
            None => {
                let msg = Message::parse(framed).expect("a Data indication parses");
                assert_eq!(
                    (msg.method(), msg.class()),
                    (Method::DATA, Class::Indication)
                );
                let a = msg.get(attr::XOR_PEER_ADDRESS).expect("XOR-PEER-ADDRESS");
                let from = attr::decode_xor_address(a.value, a.typ, &msg.transaction_id());
                assert_eq!(from, Ok(peer));
                assert_eq!(msg.get(attr::DATA).map(|d| d.value), Some(payload));
                let fingerprint = self.config.flags & 1 != 0;
                assert_eq!(msg.check_fingerprint(), fingerprint.then_some(true));
            }
        }
    }

    /// The invariants that hold between steps: ports conserved, counts agree, the victim
    /// relays.
    pub(crate) fn check(&mut self) {
        let held = self.model.claimed.len();
        let (free, reserved) = (self.shared.free_ports(), self.shared.reserved_ports());
        assert_eq!(
            free + reserved + held,
            self.shared.pool_size(),
            "ports lost or found: {free} free, {reserved} reserved, {held} held"
        );
        assert_eq!(self.shared.allocations(), held);
        let (mut allocations, mut channels) = (0, 0);
        for server in &self.workers {
            let s = server.stats_local();
            allocations += s.allocations;
            channels += s.channels;
        }
        assert_eq!(allocations, held);
        // The model holds the channels the core reported bound and not unbound: those a fast
        // path may relay. The core's gauge also counts bindings whose peer's permission lapsed
        // (reported unbound until a new permission binds them again), so it is at least that.
        assert!(
            channels >= self.model.channels.len(),
            "{channels} channel bindings, {} reported bound",
            self.model.channels.len()
        );
        if self.victim.alive {
            self.victim_relays();
        }
    }
}
