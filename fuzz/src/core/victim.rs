//! The victim of the `core` target: a client with an allocation and a channel that the
//! input cannot send as, kept alive as a client would and checked to relay after every step.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_proto::{ClientOutput, PeerOutput, RelayEndpoint, PEER_HEADROOM, PEER_TAILROOM};
use tern_wire::{attr, Class, Message, Method};

use super::cast::{VICTIM, VICTIM_CRED};
use super::ops::{Attr, Request};
use super::world::World;

/// The victim's channel.
pub(crate) const VICTIM_CHANNEL: u16 = 0x4000;
/// The victim binds its channel again once this old, which keeps its permission (300 s) and
/// the channel (600 s) alive whatever the time steps.
pub(crate) const VICTIM_REBIND: Duration = Duration::from_secs(150);
/// The victim refreshes its allocation (3,600 s) once this old.
pub(crate) const VICTIM_REFRESH: Duration = Duration::from_secs(1800);

/// The victim's allocation, as set up before the input runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Victim {
    pub relayed: RelayEndpoint,
    pub peer: SocketAddr,
    pub bound: Instant,
    pub refreshed: Instant,
    /// Cleared for the ending (shutdown or expiry).
    pub alive: bool,
}

impl World {
    /// The victim allocates (3,600 s) and binds its channel, as a client would.
    pub(crate) fn victim_setup(&mut self) {
        let allocate = vec![Attr::Transport(attr::TRANSPORT_UDP), Attr::Lifetime(3600)];
        self.victim_request(Method::ALLOCATE, allocate);
        let held = self
            .model
            .held_by(&self.clients[VICTIM].five)
            .expect("the victim allocated");
        self.victim.relayed.port = held.0;
        self.victim_request(Method::CHANNEL_BIND, self.victim_binding());
    }

    /// After a time step: the victim binds its channel again and refreshes its allocation
    /// when they are due.
    pub(crate) fn victim_upkeep(&mut self) {
        if !self.victim.alive {
            return;
        }
        if self.now - self.victim.refreshed >= VICTIM_REFRESH {
            self.victim_request(Method::REFRESH, vec![Attr::Lifetime(3600)]);
            self.victim.refreshed = self.now;
        }
        if self.now - self.victim.bound >= VICTIM_REBIND {
            self.victim_request(Method::CHANNEL_BIND, self.victim_binding());
            self.victim.bound = self.now;
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
        let t = &mut self
            .model
            .claimed
            .get_mut(&v.relayed.port)
            .expect("the victim's port")
            .traffic;
        t.packets_to_peers += 1;
        t.bytes_to_peers += 1;
        t.packets_to_client += 1;
        t.bytes_to_client += 1;
        self.expect_quiet(w);
    }
}
