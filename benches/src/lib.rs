//! Shared set-up for tern's benchmarks: a core with one authenticated allocation, a
//! permission and a channel, driven without sockets.

use std::net::SocketAddr;
use std::time::Instant;

use tern_proto::{
    auth, ClientOutput, Config, FiveTuple, ListenerId, Output, RelayEndpoint, Server,
};
use tern_wire::{attr, Class, Message, MessageType, MessageWriter, Method, TransactionId};

/// Wall-clock second the benches pretend it is.
pub const WALL: u64 = 1_700_000_000;
/// The realm.
pub const REALM: &str = "bench.example";

/// A core with one allocation whose channel 0x4000 is bound to [`Fixture::peer`].
pub struct Fixture {
    /// The core.
    pub server: Server,
    /// The client's 5-tuple.
    pub five: FiveTuple,
    /// The peer.
    pub peer: SocketAddr,
    /// The relayed endpoint of the allocation.
    pub relayed: RelayEndpoint,
    /// The monotonic time used.
    pub now: Instant,
    /// Username, key and nonce for more signed requests.
    pub username: String,
    /// The long-term key.
    pub key: [u8; 16],
    /// A valid nonce.
    pub nonce: Vec<u8>,
}

impl Fixture {
    /// Sets up the allocation, permission and channel through the public API.
    pub fn new() -> Self {
        let mut config = Config::new(REALM, "192.0.2.1".parse().unwrap(), 49152..=49252);
        config.auth_secrets = vec![b"bench-secret".to_vec()];
        config
            .peer_filter
            .allowed
            .push("198.51.100.0/24".parse().unwrap());
        let now = Instant::now();
        let mut server = Server::new(config, now, [3; 32]);
        let five = FiveTuple::udp(
            ListenerId(0),
            "203.0.113.5:40000".parse().unwrap(),
            "192.0.2.1:3478".parse().unwrap(),
        );
        let peer: SocketAddr = "198.51.100.7:50000".parse().unwrap();
        let (mut req, mut reply) = (Vec::new(), Vec::new());
        MessageWriter::new(
            &mut req,
            MessageType::new(Method::ALLOCATE, Class::Request),
            TransactionId([1; 12]),
        )
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        server.handle_client_datagram(now, WALL, five, &req);
        take_reply(&mut server, &mut reply);
        let nonce = Message::parse(&reply)
            .unwrap()
            .get(attr::NONCE)
            .unwrap()
            .value
            .to_vec();
        let username = format!("{}:bench", WALL + 86_400);
        let key = auth::long_term_key(
            &username,
            REALM,
            &auth::rest_password(b"bench-secret", &username),
        );
        let mut fx = Fixture {
            server,
            five,
            peer,
            relayed: RelayEndpoint {
                family: tern_proto::Family::V4,
                port: 0,
            },
            now,
            username,
            key,
            nonce,
        };
        fx.signed(&mut req, Method::ALLOCATE, 2, |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        });
        fx.client(&req, &mut reply);
        let msg = Message::parse(&reply).unwrap();
        let relayed = msg.get(attr::XOR_RELAYED_ADDRESS).unwrap();
        fx.relayed = RelayEndpoint::of(
            attr::decode_xor_address(relayed.value, relayed.typ, &msg.transaction_id()).unwrap(),
        );
        fx.signed(&mut req, Method::CHANNEL_BIND, 3, |w| {
            w.attr(attr::CHANNEL_NUMBER, &[0x40, 0, 0, 0]);
            w.xor_address(attr::XOR_PEER_ADDRESS, peer);
        });
        fx.client(&req, &mut reply);
        assert_eq!(Message::parse(&reply).unwrap().class(), Class::Success);
        fx
    }

    /// Writes a request signed with the allocation's credentials into `req`.
    pub fn signed(
        &self,
        req: &mut Vec<u8>,
        method: Method,
        tid: u8,
        extra: impl FnOnce(&mut MessageWriter),
    ) {
        let mut w = MessageWriter::new(
            req,
            MessageType::new(method, Class::Request),
            TransactionId([tid; 12]),
        );
        extra(&mut w);
        w.attr(attr::USERNAME, self.username.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, &self.nonce)
            .message_integrity(&self.key)
            .fingerprint();
    }

    /// Sends one datagram from the client. A reply is taken from the output queue into
    /// `reply`, as a worker would send it.
    pub fn client(&mut self, data: &[u8], reply: &mut Vec<u8>) -> ClientOutput {
        let out = self
            .server
            .handle_client_datagram(self.now, WALL, self.five, data);
        if out == ClientOutput::Reply {
            take_reply(&mut self.server, reply);
        }
        out
    }
}

/// Drains the core's output queue, keeping the last transmit's bytes in `reply`.
fn take_reply(server: &mut Server, reply: &mut Vec<u8>) {
    while let Some(out) = server.poll_output() {
        if let Output::Transmit(t) = out {
            reply.clear();
            reply.extend_from_slice(t.contents);
        }
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

pub mod load;
