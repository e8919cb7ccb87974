//! The sans-IO TURN server core of tern (RFC 8656 over RFC 8489).
//!
//! [`Server`] owns allocations, permissions, channel bindings, the relay port pool's
//! bookkeeping, authentication and nonces, and a timer wheel. It never touches a socket, a
//! clock or an entropy source: datagrams, monotonic time (`Instant`), wall-clock seconds and a
//! seed are passed in, and decisions come back.
//!
//! # Names
//!
//! A client is a [`FiveTuple`]: its address, the server address it talks to, and a
//! [`Transport`] naming the UDP listening socket ([`ListenerId`]) or the stream connection
//! ([`ConnId`]) that carries it, so an answer needs no search for its socket. A relayed
//! transport address is a [`RelayEndpoint`]: a [`Family`] and a port. An allocation is an
//! [`AllocationId`], a generation-checked handle into the core's slab; a port is never the key
//! of anything but the relay socket.
//!
//! # Address families
//!
//! The server relays in each family the config gives a relayed IP ([`Config::relay_in`]),
//! with one port pool per family over the same range. An allocation relays in the family
//! REQUESTED-ADDRESS-FAMILY names, else in [`DefaultFamily`]'s, or, asked with
//! ADDITIONAL-ADDRESS-FAMILY, in both (a dual allocation: one [`RelayEndpoint`] per family,
//! each with its own lifetime; a family it cannot get is named in ADDRESS-ERROR-CODE).
//! Permissions, channels and relayed data belong to the family of their peer, and the
//! counters keep them per family ([`PerTransportFamily`]).
//!
//! # The drive loop
//!
//! The I/O layer binds its listening sockets and one socket per relayed endpoint, then:
//! - a datagram from a client → [`Server::handle_client_datagram`]. The data path decides at
//!   once: send the payload range of the datagram from the named relayed endpoint to the peer
//!   ([`ClientOutput::Relay`]), or drop it. A request answers [`ClientOutput::Reply`]: its
//!   reply is in the output queue.
//! - a datagram from a peer on a relayed endpoint → [`Server::handle_peer_datagram`], with
//!   the payload placed after [`PEER_HEADROOM`] bytes: send the framed range to the client
//!   over the 5-tuple it names ([`PeerOutput::Forward`]), or drop it.
//! - when the time from [`Server::poll_timeout`] comes → [`Server::handle_timeout`].
//! - a stream connection closes → [`Server::handle_connection_closed`]: its allocation ends
//!   at once. (Over a stream, each whole STUN or ChannelData message the I/O layer framed is
//!   handed to [`Server::handle_client_datagram`] as a datagram, without ChannelData's padding.)
//!
//! After every input but the two data paths, and after [`Server::shutdown`], drain
//! [`Server::poll_output`] and act on each [`Output`] before the next: transmits, relay
//! claims and releases, channels bound and unbound, and events for logs. The order is the
//! contract: a [`Output::Claim`] comes before the reply that tells the client its relayed
//! address, so the socket is read before any peer can send to it, and an [`Output::Release`]
//! comes after its allocation's last transmit. The data paths never queue anything, so their
//! packets cost no queue.
//!
//! # Strangers
//!
//! Nothing is kept for a client before it authenticates: the nonce is a MAC over its address
//! and the time. What the core answers strangers is limited per source address, and sources
//! that fail integrity checks are locked out ([`GuardConfig`], on by default); both count in
//! tables of fixed size that every worker's core shares through [`SharedState`]. A request
//! they refuse is dropped ([`DropReason::UnauthorizedRateLimited`], [`DropReason::LockedOut`]),
//! and a lockout is an [`Event::AuthLockout`] to log.
//!
//! # Allocate → ChannelBind, worked through
//!
//! ```
//! use std::time::Instant;
//! use tern_proto::{
//!     ClientOutput, Config, FiveTuple, ListenerId, Output, PeerOutput, RelayEndpoint, Server,
//!     PEER_HEADROOM,
//! };
//! use tern_wire::{attr, Class, Message, MessageType, MessageWriter, Method, TransactionId};
//!
//! let mut config = Config::new("example.org", "203.0.113.1".parse().unwrap(), 49152..=49252);
//! config.auth_secrets = vec![b"north".to_vec()];
//! // Documentation addresses are refused as peers unless allowed, like private ones.
//! config.peer_filter.allowed.push("198.51.100.0/24".parse().unwrap());
//! let now = Instant::now();
//! let wall = 1_700_000_000;
//! let mut server = Server::new(config, now, [7; 32]);
//! // A client on the worker's first UDP listening socket.
//! let five = FiveTuple::udp(ListenerId(0), "198.51.100.2:40000".parse().unwrap(), "192.0.2.1:3478".parse().unwrap());
//!
//! // Drains the queue as an I/O layer would, in order: claims first, then the reply.
//! let drain = |server: &mut Server| {
//!     let (mut claimed, mut reply) = (None, Vec::new());
//!     while let Some(out) = server.poll_output() {
//!         match out {
//!             Output::Claim { relayed, .. } => claimed = Some(relayed), // read its socket now
//!             Output::Transmit(t) => reply = t.contents.to_vec(), // send to t.destination
//!             _ => {}                                             // events: log them
//!         }
//!     }
//!     (claimed, reply)
//! };
//! let mut req = Vec::new();
//!
//! // 1. Allocate without credentials: 401 with REALM and NONCE.
//! let mut w = MessageWriter::new(&mut req, MessageType::new(Method::ALLOCATE, Class::Request), TransactionId([1; 12]));
//! w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
//! w.finish();
//! assert_eq!(server.handle_client_datagram(now, wall, five, &req), ClientOutput::Reply);
//! let (_, reply) = drain(&mut server);
//! let nonce = Message::parse(&reply).unwrap().get(attr::NONCE).unwrap().value.to_vec();
//!
//! // 2. Again with a TURN REST credential: the relay socket is claimed, then the relayed
//! //    address comes back.
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
//! server.handle_client_datagram(now, wall, five, &req);
//! let (claimed, reply) = drain(&mut server);
//! let msg = Message::parse(&reply).unwrap();
//! assert_eq!(msg.class(), Class::Success, "{:?}", msg.get(attr::ERROR_CODE).map(|a| attr::decode_error_code(a.value)));
//! let relayed = attr::decode_xor_address(msg.get(attr::XOR_RELAYED_ADDRESS).unwrap().value, 0, &msg.transaction_id()).unwrap();
//! assert_eq!(relayed.ip().to_string(), "203.0.113.1");
//! let endpoint = RelayEndpoint::of(relayed);
//! assert_eq!(claimed, Some(endpoint));
//!
//! // 3. Bind channel 0x4000 to a peer; ChannelData then goes straight to it, decided at once
//! //    with the payload's range in the datagram.
//! let peer: std::net::SocketAddr = "198.51.100.9:5000".parse().unwrap();
//! signed(&mut req, Method::CHANNEL_BIND, 3, &|w| {
//!     w.attr(attr::CHANNEL_NUMBER, &[0x40, 0x00, 0, 0]);
//!     w.xor_address(attr::XOR_PEER_ADDRESS, peer);
//! });
//! server.handle_client_datagram(now, wall, five, &req);
//! assert_eq!(Message::parse(&drain(&mut server).1).unwrap().class(), Class::Success);
//! let out = server.handle_client_datagram(now, wall, five, &[0x40, 0x00, 0x00, 0x02, b'h', b'i']);
//! assert_eq!(out, ClientOutput::Relay { relayed: endpoint, peer, payload: 4..6 });
//!
//! // 4. The peer answers on the relayed address: framed as ChannelData in place.
//! let mut buf = [0u8; PEER_HEADROOM + 2 + 12];
//! buf[PEER_HEADROOM..PEER_HEADROOM + 2].copy_from_slice(b"yo");
//! let PeerOutput::Forward { range, five_tuple } = server.handle_peer_datagram(now, endpoint, peer, &mut buf, 2) else { panic!() };
//! assert_eq!((five_tuple, &buf[range]), (five, &[0x40, 0x00, 0x00, 0x02, b'y', b'o'][..]));
//! ```

mod addr;
mod allocate;
mod allocation;
pub mod auth;
mod bind;
mod config;
pub mod counters;
mod error;
mod expiry;
mod guard;
mod label;
pub mod nonce;
mod output;
mod peer_check;
pub mod peer_filter;
mod pool;
mod rate;
mod relay;
mod request;
mod response;
mod server;
mod sessions;
mod shared;
mod slab;
mod timer;

pub use addr::{
    ConnId, Family, FiveTuple, ListenerId, PerFamily, RelayEndpoint, Transport, TransportLabel,
};
pub use allocation::{footprint as allocation_footprint, Traffic, PEERS_COUNTED};
pub use config::{Config, DefaultFamily, StaticUser, UserSecret};
pub use counters::{Counters, PathCount, PerTransport, PerTransportFamily};
pub use error::{AuthFailure, DropReason, RequestError, RequestResult};
pub use guard::{GuardConfig, LockoutTrigger, UNAUTHORIZED_BURST_SECONDS};
pub use output::{
    BoundChannel, ClientOutput, Destination, EndReason, Event, Output, PeerOutput, Transmit,
};
pub use peer_filter::{IpRange, PeerFilter, PeerFilterConfig};
pub use pool::PortPool;
pub use server::{Server, Stats, PEER_HEADROOM, PEER_TAILROOM};
pub use sessions::{Revoke, Session, SessionFilter, MAX_REFUSED};
pub use shared::SharedState;
pub use slab::AllocationId;
pub use timer::TimerWheel;
