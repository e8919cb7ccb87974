//! The sans-IO TURN server core of tern (RFC 8656 over RFC 8489).
//!
//! [`Server`] owns allocations, permissions, channel bindings, the relay port pool's
//! bookkeeping, authentication and nonces, and a timer wheel. It never touches a socket, a
//! clock or an entropy source: datagrams, monotonic time (`Instant`), wall-clock seconds and a
//! seed are passed in, and decisions come back.
//!
//! # The drive loop
//!
//! The I/O layer binds a listening socket and one socket per relay port, then:
//! - a datagram from a client → [`Server::handle_client_datagram`]: send the reply, or send
//!   the payload range from the named relay port to the peer, or drop;
//! - a datagram from a peer on a relay port → [`Server::handle_peer_datagram`], with the
//!   payload placed after [`PEER_HEADROOM`] bytes: send the framed range to the client;
//! - after either, and when the time from [`Server::poll_timeout`] comes,
//!   [`Server::handle_timeout`]; then drain [`Server::poll_event`] for logs and metrics.
//!
//! # Allocate → ChannelBind, worked through
//!
//! ```
//! use std::time::Instant;
//! use tern_proto::{ClientOutput, Config, FiveTuple, PeerOutput, Server, PEER_HEADROOM};
//! use tern_wire::{attr, Class, Message, MessageType, MessageWriter, Method, TransactionId};
//!
//! let mut config = Config::new("example.org", "203.0.113.1".parse().unwrap(), 49152..=49252);
//! config.auth_secrets = vec![b"north".to_vec()];
//! // Documentation addresses are refused as peers unless allowed, like private ones.
//! config.peer_filter.allowed.push("198.51.100.0/24".parse().unwrap());
//! let now = Instant::now();
//! let wall = 1_700_000_000;
//! let mut server = Server::new(config, now, [7; 32]);
//! let five = FiveTuple { client: "198.51.100.2:40000".parse().unwrap(), server: "192.0.2.1:3478".parse().unwrap() };
//! let (mut req, mut reply) = (Vec::new(), Vec::new());
//!
//! // 1. Allocate without credentials: 401 with REALM and NONCE.
//! let mut w = MessageWriter::new(&mut req, MessageType::new(Method::ALLOCATE, Class::Request), TransactionId([1; 12]));
//! w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
//! w.finish();
//! assert_eq!(server.handle_client_datagram(now, wall, five, &req, &mut reply), ClientOutput::Reply);
//! let nonce = Message::parse(&reply).unwrap().get(attr::NONCE).unwrap().value.to_vec();
//!
//! // 2. Again with a TURN REST credential: the relayed address comes back.
//! let username = format!("{}:alice", wall + 3600);
//! let password = tern_proto::auth::rest_password(b"north", &username);
//! let key = tern_proto::auth::long_term_key(&username, "example.org", &password);
//! let signed = |req: &mut Vec<u8>, method, tid: u8, extra: &dyn Fn(&mut MessageWriter)| {
//!     let mut w = MessageWriter::new(req, MessageType::new(method, Class::Request), TransactionId([tid; 12]));
//!     extra(&mut w);
//!     w.attr(attr::USERNAME, username.as_bytes()).attr(attr::REALM, b"example.org").attr(attr::NONCE, &nonce);
//!     w.message_integrity(&key);
//!     w.finish();
//! };
//! signed(&mut req, Method::ALLOCATE, 2, &|w| { w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]); });
//! server.handle_client_datagram(now, wall, five, &req, &mut reply);
//! let msg = Message::parse(&reply).unwrap();
//! assert_eq!(msg.class(), Class::Success, "{:?}", msg.get(attr::ERROR_CODE).map(|a| attr::decode_error_code(a.value)));
//! let relayed = attr::decode_xor_address(msg.get(attr::XOR_RELAYED_ADDRESS).unwrap().value, 0, &msg.transaction_id()).unwrap();
//! assert_eq!(relayed.ip().to_string(), "203.0.113.1");
//!
//! // 3. Bind channel 0x4000 to a peer; ChannelData then goes straight to it.
//! let peer: std::net::SocketAddr = "198.51.100.9:5000".parse().unwrap();
//! signed(&mut req, Method::CHANNEL_BIND, 3, &|w| {
//!     w.attr(attr::CHANNEL_NUMBER, &[0x40, 0x00, 0, 0]);
//!     w.xor_address(attr::XOR_PEER_ADDRESS, peer);
//! });
//! server.handle_client_datagram(now, wall, five, &req, &mut reply);
//! assert_eq!(Message::parse(&reply).unwrap().class(), Class::Success);
//! let out = server.handle_client_datagram(now, wall, five, &[0x40, 0x00, 0x00, 0x02, b'h', b'i'], &mut reply);
//! assert_eq!(out, ClientOutput::Relay { relay_port: relayed.port(), peer, payload: 4..6 });
//!
//! // 4. The peer answers on the relayed address: framed as ChannelData in place.
//! let mut buf = [0u8; PEER_HEADROOM + 2 + 12];
//! buf[PEER_HEADROOM..PEER_HEADROOM + 2].copy_from_slice(b"yo");
//! let PeerOutput::Forward { range, .. } = server.handle_peer_datagram(now, relayed.port(), peer, &mut buf, 2) else { panic!() };
//! assert_eq!(&buf[range], &[0x40, 0x00, 0x00, 0x02, b'y', b'o']);
//! ```

mod allocation;
pub mod auth;
mod config;
pub mod counters;
mod error;
mod label;
pub mod nonce;
mod peer_check;
pub mod peer_filter;
mod pool;
mod rate;
mod relay;
mod request;
mod response;
mod server;
mod shared;
mod timer;

pub use allocation::{footprint as allocation_footprint, ClientAddr, FiveTuple, PeerAddr, Traffic};
pub use config::{Config, StaticUser, UserSecret};
pub use counters::{Counters, PathCount};
pub use error::{AuthFailure, DropReason, RequestError, RequestResult};
pub use peer_filter::{IpRange, PeerFilter, PeerFilterConfig};
pub use pool::PortPool;
pub use server::{
    ClientOutput, EndReason, Event, PeerOutput, Server, Stats, PEER_HEADROOM, PEER_TAILROOM,
};
pub use shared::SharedState;
pub use timer::TimerWheel;
