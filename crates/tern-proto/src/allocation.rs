//! Allocations and what hangs off them (RFC 8656 §2: "allocation", "permission",
//! "channel binding").

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tern_wire::{ChannelNumber, TransactionId};

use crate::rate::{Direction, RateState};

/// The client's transport address as the server sees it (RFC 8656 §2: "client's IP address
/// and port as seen by the server").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

/// A peer's transport address (RFC 8656 §2: "the transport address of a peer").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// The 5-tuple of an allocation over UDP (RFC 8656 §2: "the combination of client IP address
/// and port, server IP address and port, and transport protocol"): the client address and
/// the listening address it talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// The client's address.
    pub client: SocketAddr,
    /// The server's listening address the client sends to.
    pub server: SocketAddr,
}

/// A permission (RFC 8656 §9): the peer IP (ports do not matter) and its expiry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Permission {
    pub ip: IpAddr,
    pub expires: Instant,
}

/// A channel binding (RFC 8656 §12): a channel number bound to one peer transport address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelBinding {
    pub number: ChannelNumber,
    pub peer: SocketAddr,
    pub expires: Instant,
}

/// Counters of one allocation, reported when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Packets relayed from the client to peers.
    pub packets_to_peers: u64,
    /// Bytes of application data relayed from the client to peers.
    pub bytes_to_peers: u64,
    /// Packets relayed from peers to the client.
    pub packets_to_client: u64,
    /// Bytes of application data relayed from peers to the client.
    pub bytes_to_client: u64,
}

/// One allocation (RFC 8656 §2: "the relayed transport address reserved on the server for a
/// client, together with the state the server keeps for it").
#[derive(Debug)]
pub(crate) struct Allocation {
    pub id: u64,
    pub five_tuple: FiveTuple,
    pub relay_port: u16,
    pub username: Box<str>,
    pub key: [u8; 16],
    pub created: Instant,
    pub expires: Instant,
    /// The Allocate transaction that created it, and the lifetime it was granted, so that a
    /// retransmitted Allocate gets the same answer.
    pub allocate_tid: TransactionId,
    pub granted_lifetime: u32,
    /// The RESERVATION-TOKEN handed out with it, if it reserved the next port.
    pub reservation_token: Option<u64>,
    pub permissions: Vec<Permission>,
    pub channels: Vec<ChannelBinding>,
    pub traffic: Traffic,
    /// Bandwidth budgets, when the config sets `max_bps`.
    pub rate: Option<Box<RateState>>,
}

impl Allocation {
    #[inline]
    pub fn has_permission(&self, ip: IpAddr) -> bool {
        self.permissions.iter().any(|p| p.ip == ip)
    }

    /// Whether `len` payload bytes may go in `direction` at `now` (always, without a
    /// bandwidth limit).
    #[inline]
    pub fn within_rate(&mut self, direction: Direction, now: Instant, len: usize) -> bool {
        match &mut self.rate {
            Some(rate) => rate.admit(direction, now, len),
            None => true,
        }
    }

    #[inline]
    pub fn channel_by_number(&self, n: u16) -> Option<&ChannelBinding> {
        self.channels.iter().find(|c| c.number.get() == n)
    }

    #[inline]
    pub fn channel_by_peer(&self, peer: SocketAddr) -> Option<&ChannelBinding> {
        self.channels.iter().find(|c| c.peer == peer)
    }
}

/// What one allocation costs in memory: its slot in the per-port array (every worker has one
/// slot per relay port), its 5-tuple map entry, and its permissions and channels, each list
/// bounded by the config (`max_permissions_per_allocation`, `max_channels_per_allocation`).
pub fn footprint(permissions: usize, channels: usize, username_len: usize) -> usize {
    use std::mem::size_of;
    size_of::<Option<Allocation>>()
        + size_of::<(FiveTuple, u16)>() + 8 // map entry and its control byte, rounded
        + username_len
        + permissions * size_of::<Permission>()
        + channels * size_of::<ChannelBinding>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_is_small_and_bounded() {
        let bare = footprint(0, 0, 24);
        let busy = footprint(64, 64, 24);
        println!("allocation footprint: {bare} bytes bare, {busy} bytes at 64 permissions and 64 channels");
        assert!(bare <= 400, "{bare}");
        assert!(busy <= 8 * 1024, "{busy}");
    }
}
