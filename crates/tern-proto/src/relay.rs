//! The peer → client hot path: frame a peer's datagram in place as ChannelData or as a Data
//! indication. No allocation, no lock, no log line; the relay port indexes an array.

use std::net::SocketAddr;
use std::time::Instant;

use tern_wire::{
    frame_data_indication, ChannelData, TransactionId, CHANNEL_DATA_HEADER_LEN,
    DATA_INDICATION_MAX_PAYLOAD,
};

use crate::error::DropReason;
use crate::rate::Direction;
use crate::server::{PeerOutput, Server, PEER_HEADROOM, PEER_TAILROOM};

impl Server {
    /// Handles a datagram from `peer` to relay port `relay_port`. The payload is at
    /// `buf[PEER_HEADROOM..PEER_HEADROOM + len]`, and `buf` extends at least
    /// `PEER_TAILROOM` bytes beyond it; the message for the client is framed in place.
    #[inline]
    pub fn handle_peer_datagram(
        &mut self,
        now: Instant,
        relay_port: u16,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> PeerOutput {
        let out = self.frame_for_client(now, relay_port, peer, buf, len);
        if let PeerOutput::Drop(reason) = out {
            self.counters.drop(reason);
        }
        out
    }

    #[inline]
    fn frame_for_client(
        &mut self,
        now: Instant,
        relay_port: u16,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> PeerOutput {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let always_fingerprint = self.config.always_fingerprint;
        let idx = usize::from(relay_port.wrapping_sub(self.base_port));
        let Some(alloc) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
            return PeerOutput::Drop(DropReason::NoAllocation);
        };
        if !alloc.has_permission(peer.ip()) {
            return PeerOutput::Drop(DropReason::NoPermission);
        }
        // A Data indication carries less than ChannelData (whose limit is u16::MAX), so its
        // limit is checked once, before the framing is chosen.
        if buf.len() < PEER_HEADROOM + len + PEER_TAILROOM || len > DATA_INDICATION_MAX_PAYLOAD {
            return PeerOutput::Drop(DropReason::TooBig);
        }
        if !alloc.within_rate(Direction::ToClient, now, len) {
            return PeerOutput::Drop(DropReason::RateLimited);
        }
        alloc.traffic.packets_to_client += 1;
        alloc.traffic.bytes_to_client += len as u64;
        let five_tuple = alloc.five_tuple;
        if let Some(channel) = alloc.channel_by_peer(peer) {
            let start = PEER_HEADROOM - CHANNEL_DATA_HEADER_LEN;
            let header: &mut [u8; CHANNEL_DATA_HEADER_LEN] = (&mut buf[start..PEER_HEADROOM])
                .try_into()
                .expect("4 bytes");
            ChannelData::write_header(channel.number, len as u16, header);
            self.counters.channel_to_client.add(len);
            return PeerOutput::Forward {
                five_tuple,
                range: start..PEER_HEADROOM + len,
            };
        }
        let tid = self.data_indication_tid();
        let payload = PEER_HEADROOM..PEER_HEADROOM + len;
        let range = frame_data_indication(buf, payload, peer, &tid, always_fingerprint);
        self.counters.data_to_client.add(len);
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
