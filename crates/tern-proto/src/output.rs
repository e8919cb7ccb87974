//! What the core hands back: the hot path's decisions, returned at once with ranges into the
//! caller's buffer, and one ordered queue for everything else.
//!
//! The queue is the seam's ordering rule. A request's reply is queued after the relay claim
//! it names and the channel it binds, and an allocation's release after its last reply, so an
//! I/O layer that acts on [`Server::poll_output`](crate::Server::poll_output) in order never
//! tells a client about a relayed address before its socket is read, nor frees a socket
//! before the last word about it went out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use tern_wire::ChannelNumber;

use crate::addr::{FiveTuple, RelayEndpoint};
use crate::allocation::Traffic;
use crate::error::DropReason;
use crate::guard::LockoutTrigger;
use crate::slab::AllocationId;

/// What to do with a datagram a client sent to a listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientOutput {
    /// It was a request: its reply waits in the output queue behind whatever it depends on
    /// (the relay claim of a new allocation). Drain [`Server::poll_output`](crate::Server::poll_output).
    Reply,
    /// Send `payload` (a range of the received datagram) from the relayed endpoint `relayed`
    /// to `peer`.
    Relay {
        /// The allocation's relayed endpoint of the peer's family.
        relayed: RelayEndpoint,
        /// Where to send.
        peer: SocketAddr,
        /// The application data within the datagram.
        payload: Range<usize>,
    },
    /// Send nothing.
    Drop(DropReason),
}

/// What to do with a datagram a peer sent to a relayed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerOutput {
    /// Send `range` of the buffer (now framed as ChannelData or a Data indication) to the
    /// client over `five_tuple`.
    Forward {
        /// The allocation's 5-tuple: its transport says which socket or connection.
        five_tuple: FiveTuple,
        /// The framed message within the buffer.
        range: Range<usize>,
    },
    /// Send nothing.
    Drop(DropReason),
}

crate::label_enum! {
    /// Why an allocation ended; a metrics and log label.
    pub enum EndReason {
        /// Its lifetime ran out.
        Expired => "expired",
        /// The client sent Refresh with LIFETIME 0.
        Deleted => "deleted",
        /// The server is shutting down.
        Shutdown => "shutdown",
        /// The stream connection (TCP or TLS) that carried its 5-tuple closed (RFC 8656
        /// §3.1: the allocation lives no longer than its connection).
        ConnectionClosed => "connection_closed",
        /// An operator revoked it ([`crate::Server::revoke`]: the admin API's
        /// `POST /allocations/revoke`).
        Revoked => "revoked",
    }
}

/// Something the I/O layer may want to log or count.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An allocation was created.
    AllocationCreated {
        /// Its 5-tuple.
        five_tuple: FiveTuple,
        /// The advertised relayed transport address (of a dual allocation, the IPv4 one).
        relayed: SocketAddr,
        /// Of a dual allocation (RFC 8656 ADDITIONAL-ADDRESS-FAMILY), the IPv6 relayed
        /// transport address.
        additional: Option<SocketAddr>,
        /// The username that authenticated it (never a password or key).
        username: String,
    },
    /// An allocation ended and its relay ports went back to their pools.
    AllocationEnded {
        /// Its 5-tuple.
        five_tuple: FiveTuple,
        /// The advertised relayed transport address it held last (of a dual allocation, the
        /// IPv4 one).
        relayed: SocketAddr,
        /// Of an allocation that was still dual, the IPv6 relayed transport address.
        additional: Option<SocketAddr>,
        /// The username that authenticated it (never a password or key), for usage
        /// records.
        username: String,
        /// Why.
        reason: EndReason,
        /// How long it lived.
        duration: Duration,
        /// What it relayed, and to how many distinct peers.
        traffic: Traffic,
    },
    /// A source was locked out after failed authentications: its requests are dropped for
    /// `duration`. Carries no username: a user who typed a password into the username field
    /// would find it in the log.
    AuthLockout {
        /// The client whose failure started it (the whole source, a /32 or /64, is locked).
        client: SocketAddr,
        /// Why.
        trigger: LockoutTrigger,
        /// The failures that trigger a lockout ...
        failures: u32,
        /// ... within this window.
        window: Duration,
        /// How long it lasts.
        duration: Duration,
    },
    /// One relayed address of a dual allocation ended (its lifetime ran out, or a Refresh
    /// with REQUESTED-ADDRESS-FAMILY and LIFETIME 0 deleted it); the allocation relays on in
    /// the other family.
    RelayedAddressEnded {
        /// The allocation's 5-tuple.
        five_tuple: FiveTuple,
        /// The relayed transport address that ended.
        relayed: SocketAddr,
        /// Why ([`EndReason::Expired`] or [`EndReason::Deleted`]).
        reason: EndReason,
    },
}

/// Where a queued datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination {
    /// To a client, over its 5-tuple (from the listening socket or on the connection its
    /// transport names).
    Client(FiveTuple),
    /// To a peer, from a relayed endpoint.
    Peer {
        /// The relayed endpoint to send from.
        relayed: RelayEndpoint,
        /// The peer.
        peer: SocketAddr,
    },
}

/// A datagram to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// Where it goes.
    pub destination: Destination,
    /// Its bytes, valid until the next call on the core.
    pub contents: &'a [u8],
}

/// A channel binding as a fast path needs it (RFC 8656 §12): ChannelData from `five_tuple`
/// on `number` goes to `peer` from `relayed`, and datagrams from `peer` to `relayed` go to
/// `five_tuple` framed under `number`. Valid while the client holds a permission for the
/// peer, which the binding itself refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundChannel {
    /// The allocation.
    pub allocation: AllocationId,
    /// The client's 5-tuple.
    pub five_tuple: FiveTuple,
    /// The relayed endpoint that talks to the peer.
    pub relayed: RelayEndpoint,
    /// The channel number.
    pub number: ChannelNumber,
    /// The peer's transport address.
    pub peer: SocketAddr,
}

/// One item of the core's output queue ([`Server::poll_output`](crate::Server::poll_output)),
/// to be acted on in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output<'a> {
    /// Send a datagram.
    Transmit(Transmit<'a>),
    /// Start reading the socket of `relayed` for `allocation`: it is this core's now. Comes
    /// before the reply that tells the client the address.
    Claim {
        /// The relayed endpoint.
        relayed: RelayEndpoint,
        /// The allocation that holds it.
        allocation: AllocationId,
    },
    /// `allocation` no longer holds `relayed`; peer datagrams to it are dropped (as
    /// [`DropReason::NoAllocation`]) until another allocation claims it. Comes after the
    /// allocation's last transmit and after its [`Output::ChannelUnbound`]s. After
    /// [`Server::defer_port_release`](crate::Server::defer_port_release) its port is free
    /// for another allocation only once the I/O layer acknowledges this output with
    /// [`Server::handle_released`](crate::Server::handle_released).
    Release {
        /// The relayed endpoint.
        relayed: RelayEndpoint,
        /// The allocation that held it.
        allocation: AllocationId,
    },
    /// A channel may be relayed by a fast path: it was bound (before the ChannelBind
    /// success response), or its peer got a permission again after the old one lapsed.
    ChannelBound(BoundChannel),
    /// A channel may no longer be relayed by a fast path: its binding expired, its
    /// allocation (or relayed address) ended, or its peer's permission lapsed. Comes before
    /// the allocation's [`Output::Release`]. Every `ChannelBound` is followed by exactly
    /// one `ChannelUnbound` before the next `ChannelBound` of the same channel.
    ChannelUnbound(BoundChannel),
    /// Something to log or count.
    Event(Event),
}

/// A queued output; a transmit's bytes wait in the queue's buffer.
#[derive(Debug)]
enum Queued {
    Transmit(Destination, Range<usize>),
    Other(Output<'static>),
}

/// The output queue and the bytes of its transmits.
#[derive(Debug, Default)]
pub(crate) struct OutputQueue {
    items: VecDeque<Queued>,
    /// Transmit contents, appended; emptied when the queue is drained.
    bytes: Vec<u8>,
}

impl OutputQueue {
    /// Queues an output that carries no bytes.
    pub fn push(&mut self, output: Output<'static>) {
        self.items.push_back(Queued::Other(output));
    }

    /// Queues a datagram to `destination` whose bytes `write` appends to the buffer it is
    /// given.
    pub fn transmit(&mut self, destination: Destination, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        write(&mut self.bytes);
        let range = start..self.bytes.len();
        self.items.push_back(Queued::Transmit(destination, range));
    }

    /// The next output, in the order queued.
    pub fn pop(&mut self) -> Option<Output<'_>> {
        let Some(next) = self.items.pop_front() else {
            self.bytes.clear();
            return None;
        };
        Some(match next {
            Queued::Transmit(destination, range) => Output::Transmit(Transmit {
                destination,
                contents: &self.bytes[range],
            }),
            Queued::Other(output) => output,
        })
    }
}
