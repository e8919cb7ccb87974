//! The data paths. Client → peer: ChannelData and Send indications share one function,
//! [`Server::payload_to_peer`]. Peer → client: a peer's datagram is framed in place as
//! ChannelData or as a Data indication. No allocation, no lock, no log line; a client's
//! 5-tuple is one hash lookup, a relayed endpoint one array index. Both decisions are
//! returned at once, with ranges into the caller's buffer; nothing here queues an output.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use tern_wire::{
    attr, frame_data_indication, ChannelData, Message, TransactionId, CHANNEL_DATA_HEADER_LEN,
    DATA_INDICATION_MAX_PAYLOAD,
};

use crate::addr::{Family, FiveTuple, RelayEndpoint};
use crate::error::DropReason;
use crate::output::{ClientOutput, PeerOutput};
use crate::peer_check::{decode_peer, PeerUse};
use crate::rate::Direction;
use crate::server::{Server, PEER_HEADROOM, PEER_TAILROOM};

/// Where a client's payload goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The peer bound to this channel number (ChannelData).
    Channel(u16),
    /// The peer a Send indication names.
    Peer(SocketAddr),
}

impl Server {
    /// A ChannelData message from a client (RFC 8656 §12.6).
    #[inline]
    pub(crate) fn handle_client_channel_data(
        &mut self,
        now: Instant,
        five_tuple: FiveTuple,
        data: &[u8],
    ) -> ClientOutput {
        let parsed = if self.config.rfc5766_channels {
            ChannelData::parse_rfc5766(data)
        } else {
            ChannelData::parse(data)
        };
        let Ok(cd) = parsed else {
            return ClientOutput::Drop(DropReason::Malformed);
        };
        let payload = CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + cd.payload.len();
        let to = Target::Channel(cd.channel.get());
        self.payload_to_peer(now, five_tuple, to, payload)
    }

    /// A Send indication (RFC 8656 §11.2): relay its DATA to its XOR-PEER-ADDRESS if a
    /// permission exists; otherwise drop it silently.
    pub(crate) fn handle_send(
        &mut self,
        now: Instant,
        five_tuple: FiveTuple,
        msg: &Message<'_>,
    ) -> ClientOutput {
        let (Some(peer), Some(data)) = (msg.get(attr::XOR_PEER_ADDRESS), msg.get(attr::DATA))
        else {
            return ClientOutput::Drop(DropReason::Malformed);
        };
        let Some(peer) = decode_peer(peer.value, msg) else {
            return ClientOutput::Drop(DropReason::Malformed);
        };
        if !self.peer_allowed(peer, PeerUse::Send) {
            return ClientOutput::Drop(DropReason::DeniedPeer);
        }
        let start = data.offset + 4;
        let payload = start..start + data.value.len();
        self.payload_to_peer(now, five_tuple, Target::Peer(peer), payload)
    }

    /// Client payload to peer, the steps ChannelData and Send share: the 5-tuple's
    /// allocation, the peer, its permission, the rate limit, then traffic and counters.
    /// `payload` is the range of the received datagram to send.
    ///
    /// Always inlined: as a call it costs the ChannelData path about 40 instructions a
    /// packet (moving the 5-tuple and the destination), a fifth of its budget, and
    /// `benches/callgrind.sh` shows it.
    #[inline(always)]
    fn payload_to_peer(
        &mut self,
        now: Instant,
        five_tuple: FiveTuple,
        to: Target,
        payload: Range<usize>,
    ) -> ClientOutput {
        let Some(alloc) = self.allocation_by_five_tuple_mut(&five_tuple) else {
            return ClientOutput::Drop(DropReason::NoAllocation);
        };
        let peer = match to {
            Target::Channel(number) => match alloc.channel_by_number(number) {
                Some(c) => c.peer,
                None => return ClientOutput::Drop(DropReason::NoChannel),
            },
            Target::Peer(peer) => peer,
        };
        if !alloc.has_permission(peer.ip()) {
            return ClientOutput::Drop(DropReason::NoPermission);
        }
        // A permission is only granted in a family the allocation relays.
        let Some(relayed) = alloc.relayed.get(Family::of(peer.ip())) else {
            return ClientOutput::Drop(DropReason::NoPermission);
        };
        let len = payload.len();
        alloc.last_activity = now;
        if !alloc.within_rate(Direction::ToPeers, now, len) {
            return ClientOutput::Drop(DropReason::RateLimited);
        }
        alloc.traffic.packets_to_peers += 1;
        alloc.traffic.bytes_to_peers += len as u64;
        let (t, f) = (alloc.transport.index(), relayed.family.index());
        match to {
            Target::Channel(_) => self.counters.channel_to_peer[t][f].add(len),
            Target::Peer(_) => self.counters.send_to_peer[t][f].add(len),
        }
        ClientOutput::Relay {
            relayed,
            peer,
            payload,
        }
    }

    /// Handles a datagram from `peer` to the relayed endpoint `relayed`. The payload is at
    /// `buf[PEER_HEADROOM..PEER_HEADROOM + len]`, and `buf` extends at least
    /// `PEER_TAILROOM` bytes beyond it; the message for the client is framed in place.
    #[inline]
    pub fn handle_peer_datagram(
        &mut self,
        now: Instant,
        relayed: RelayEndpoint,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> PeerOutput {
        let out = self.frame_for_client(now, relayed, peer, buf, len);
        if let PeerOutput::Drop(reason) = out {
            self.counters.drop(reason);
        }
        out
    }

    #[inline]
    fn frame_for_client(
        &mut self,
        now: Instant,
        relayed: RelayEndpoint,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> PeerOutput {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let always_fingerprint = self.config.always_fingerprint;
        // The peer side's index, borrowed field by field: the allocation stays borrowed while
        // the counters and the generator are used below.
        let index = usize::from(relayed.port.wrapping_sub(self.base_port));
        let id = self.by_relay[relayed.family.index()]
            .get(index)
            .copied()
            .flatten();
        let Some(alloc) = id.and_then(|id| self.allocations.get_mut(id)) else {
            return PeerOutput::Drop(DropReason::NoAllocation);
        };
        // Permissions are per family: a peer reaches the endpoint of its own family only
        // (a dual-stack socket would show an IPv4 peer on the IPv6 endpoint as mapped).
        if Family::of(peer.ip()) != relayed.family || !alloc.has_permission(peer.ip()) {
            return PeerOutput::Drop(DropReason::NoPermission);
        }
        // A Data indication carries less than ChannelData (whose limit is u16::MAX), so its
        // limit is checked once, before the framing is chosen.
        if buf.len() < PEER_HEADROOM + len + PEER_TAILROOM || len > DATA_INDICATION_MAX_PAYLOAD {
            return PeerOutput::Drop(DropReason::TooBig);
        }
        alloc.last_activity = now;
        if !alloc.within_rate(Direction::ToClient, now, len) {
            return PeerOutput::Drop(DropReason::RateLimited);
        }
        alloc.traffic.packets_to_client += 1;
        alloc.traffic.bytes_to_client += len as u64;
        let five_tuple = alloc.five_tuple;
        let (t, f) = (alloc.transport.index(), relayed.family.index());
        if let Some(channel) = alloc.channel_by_peer(peer) {
            let start = PEER_HEADROOM - CHANNEL_DATA_HEADER_LEN;
            let header: &mut [u8; CHANNEL_DATA_HEADER_LEN] = (&mut buf[start..PEER_HEADROOM])
                .try_into()
                .expect("4 bytes");
            ChannelData::write_header(channel.number, len as u16, header);
            self.counters.channel_to_client[t][f].add(len);
            return PeerOutput::Forward {
                five_tuple,
                range: start..PEER_HEADROOM + len,
            };
        }
        let tid = self.data_indication_tid();
        let payload = PEER_HEADROOM..PEER_HEADROOM + len;
        let range = frame_data_indication(buf, payload, peer, &tid, always_fingerprint);
        self.counters.data_to_client[t][f].add(len);
        PeerOutput::Forward { five_tuple, range }
    }

    /// A fresh transaction id for a Data indication, from the seeded generator.
    fn data_indication_tid(&mut self) -> TransactionId {
        let bits = self.rng.next_u64();
        let mut tid = [0u8; 12];
        tid[..8].copy_from_slice(&bits.to_le_bytes());
        tid[8..].copy_from_slice(&(bits as u32 ^ 0x5a5a_5a5a).to_le_bytes());
        TransactionId(tid)
    }
}
