//! The `core` target: the sans-IO core (tern-proto) driven by a sequence of datagrams from
//! several clients and peers, with a virtual clock.
//!
//! # The world
//!
//! Two workers share one port pool, as `tern serve` runs them. Six clients the input
//! controls talk to them: UDP clients over IPv4 and IPv6, one on the same IP as the victim,
//! two on the same address behind different listening sockets, and a TCP and a TLS client.
//! A seventh client, the victim, allocates before the input runs, binds a channel to a peer
//! and keeps both alive as time passes; the input cannot send from its 5-tuple. Peers are a
//! table of public addresses, addresses the peer filter must refuse (loopback, private,
//! link-local, metadata, IPv4-mapped loopback and so on) and the server's own relay address.
//!
//! # The input
//!
//! Two bytes of configuration (fingerprints, RFC 5766 channels, SOFTWARE, a rate limit, an
//! IPv6 relay, quotas, a short nonce lifetime, the ending), then up to [`ops::MAX_OPS`]
//! operations ([`ops::Op`]): raw datagrams, requests built and signed with one of eight
//! credentials (genuine, expired, forged, a static user's, the victim's), ChannelData,
//! datagrams from peers to relay ports, time steps, wall-clock jumps, closed connections,
//! draining and credential reloads.
//!
//! # The invariants, checked after every step
//!
//! - Nothing panics.
//! - Every reply answers the request's transaction, and only requests get one.
//! - No allocation without a successful authenticated Allocate: every relay claim comes
//!   with an Allocate success, in the same step, for the client that asked, whose request
//!   carries a MESSAGE-INTEGRITY valid under a key the current credentials (or its own
//!   allocation) give that username; no port is claimed twice.
//! - No permission for a refused peer: every channel bound, every datagram relayed to a
//!   peer and every datagram forwarded from one names a peer the filter allows (or the
//!   server's own address, on a relay port).
//! - One client never ends, relays through or receives for another's allocation.
//! - Ports are conserved: held + reserved + free = the pool, and the allocation and channel
//!   counts agree with what the outputs said.
//! - The victim's allocation survives: its ChannelData reaches its peer and its peer's
//!   datagrams reach it, after every step.
//! - At the end the server shuts down (or every allocation expires) and the pool is whole.

mod build;
mod cast;
mod model;
mod operator;
pub mod ops;
mod tally;
mod victim;
mod world;

pub use cast::{Config, CLIENTS, CREDENTIALS};
pub use tally::Tally;
pub use world::World;

use crate::input::Reader;

/// Runs one input; see the module docs.
pub fn core(data: &[u8]) {
    run(data);
}

/// Runs one input and says what happened in it.
pub fn run(data: &[u8]) -> Tally {
    let mut r = Reader::new(data);
    let config = Config::read(&mut r);
    let mut world = World::new(config);
    for _ in 0..ops::MAX_OPS {
        if r.is_empty() {
            break;
        }
        let op = ops::Op::read(&mut r);
        world.apply(&op);
    }
    world.finish();
    world.tally
}
