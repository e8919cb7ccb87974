//! Allocations and what hangs off them (RFC 8656 §2: "allocation", "permission",
//! "channel binding").

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tern_wire::{ChannelNumber, TransactionId};

use crate::addr::{Family, FiveTuple, PerFamily, Relayed, TransportLabel};
use crate::error::RequestResult;
use crate::output::BoundChannel;
use crate::rate::{Direction, RateState};
use crate::slab::AllocationId;

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
    /// Distinct peer IP addresses the client gave a permission to (by CreatePermission or
    /// ChannelBind) over the allocation's life, expired ones included; counted when a
    /// permission is created, never per packet, and saturating at [`PEERS_COUNTED`].
    pub peers: u32,
}

impl Traffic {
    /// Whether any application data passed, either way.
    pub fn relayed(&self) -> bool {
        self.packets_to_peers > 0 || self.packets_to_client > 0
    }

    /// Adds what a fast path relayed: `to_peers` client → peers, `to_client` peers →
    /// client.
    pub fn add_fast_path(&mut self, to_peers: crate::PathCount, to_client: crate::PathCount) {
        self.packets_to_peers += to_peers.packets;
        self.bytes_to_peers += to_peers.bytes;
        self.packets_to_client += to_client.packets;
        self.bytes_to_client += to_client.bytes;
    }
}

/// Distinct peer IPs one allocation remembers for [`Traffic::peers`]; a count at this
/// figure means "this many or more".
pub const PEERS_COUNTED: usize = 32;

/// One allocation (RFC 8656 §2: "the relayed transport address reserved on the server for a
/// client, together with the state the server keeps for it").
#[derive(Debug)]
pub(crate) struct Allocation {
    pub five_tuple: FiveTuple,
    /// The client transport's label, kept so that counting a relayed packet under it is
    /// an index, not a match on the 5-tuple.
    pub transport: TransportLabel,
    /// Its relayed endpoints, one per family it holds.
    pub relayed: Relayed,
    pub username: Box<str>,
    pub key: [u8; 16],
    pub created: Instant,
    /// The latest of its creation, its last authenticated request and its last packet
    /// either way that passed the permission check (relayed, or dropped by `max_bps`): the
    /// sessions API's idle time. Stored before the rate check, where `now` is still in
    /// registers (`benches/callgrind.sh`: 213 instructions a ChannelData packet, 210 without).
    pub last_activity: Instant,
    /// When each relayed endpoint expires, by family (RFC 8656 §8: a Refresh with
    /// REQUESTED-ADDRESS-FAMILY refreshes one family of a dual allocation); meaningful for
    /// the families in `relayed`.
    pub expires: PerFamily<Instant>,
    /// The Allocate transaction that created it, the lifetime it was granted and the
    /// family it could not give (ADDRESS-ERROR-CODE), so that a retransmitted Allocate gets
    /// the same answer.
    pub allocate_tid: TransactionId,
    pub granted_lifetime: u32,
    pub address_error: Option<(Family, RequestResult)>,
    /// Asked for two families at coturn's draft codepoint: answer in kind.
    pub draft_codepoints: bool,
    /// The RESERVATION-TOKEN handed out with it, if it reserved the next port.
    pub reservation_token: Option<u64>,
    pub permissions: Vec<Permission>,
    pub channels: Vec<ChannelBinding>,
    pub traffic: Traffic,
    /// The distinct peer IPs given a permission so far (at most [`PEERS_COUNTED`]), for
    /// `traffic.peers`.
    pub peers_seen: Vec<IpAddr>,
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

    /// Notes that `ip` got a new permission: a peer not seen before counts in
    /// `traffic.peers` (up to [`PEERS_COUNTED`]).
    pub fn note_peer(&mut self, ip: IpAddr) {
        if self.peers_seen.len() < PEERS_COUNTED && !self.peers_seen.contains(&ip) {
            self.peers_seen.push(ip);
            self.traffic.peers = self.peers_seen.len() as u32;
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

    /// `channel`, one of this allocation's (`id`), as a fast path needs it.
    pub fn bound(&self, id: AllocationId, channel: ChannelBinding) -> BoundChannel {
        BoundChannel {
            allocation: id,
            five_tuple: self.five_tuple,
            relayed: self
                .relayed
                .get(Family::of(channel.peer.ip()))
                .unwrap_or_else(|| self.relayed.first()),
            number: channel.number,
            peer: channel.peer,
        }
    }
}

/// What one allocation costs in memory: its slot in the core's slab, its 5-tuple map entry,
/// its entry in the per-port index (every worker has one per relay port, allocated or not),
/// its permissions and channels, each list bounded by the config
/// (`max_permissions_per_allocation`, `max_channels_per_allocation`), and the distinct peers
/// it has seen (at most [`PEERS_COUNTED`]).
pub fn footprint(permissions: usize, channels: usize, username_len: usize) -> usize {
    use std::mem::size_of;
    size_of::<(u32, Option<Allocation>)>()
        + size_of::<(FiveTuple, AllocationId)>() + 8 // map entry and its control byte, rounded
        + size_of::<Option<AllocationId>>()
        + username_len
        + permissions * size_of::<Permission>()
        + channels * size_of::<ChannelBinding>()
        + permissions.min(PEERS_COUNTED) * size_of::<IpAddr>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_is_small_and_bounded() {
        let bare = footprint(0, 0, 24);
        let busy = footprint(64, 64, 24);
        println!("allocation footprint: {bare} bytes bare, {busy} bytes at 64 permissions and 64 channels");
        // Two lifetimes (one per family of a dual allocation) since IPv6 relaying; the last
        // activity and the distinct peers' list since the sessions API and usage records.
        assert!(bare <= 480, "{bare}");
        assert!(busy <= 8 * 1024, "{busy}");
    }
}
