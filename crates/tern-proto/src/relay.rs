//! The peer → client hot path: frame a peer's datagram in place as ChannelData or as a Data
//! indication. No allocation, no lock, no log line; the relay port indexes an array.

use std::net::SocketAddr;
use std::time::Instant;

use tern_wire::{
    attr, ChannelData, Class, MessageType, Method, CHANNEL_DATA_HEADER_LEN, MAGIC_COOKIE,
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
        if buf.len() < PEER_HEADROOM + len + PEER_TAILROOM || len > usize::from(u16::MAX) - 64 {
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
        // A Data indication (RFC 8656 §11.4): XOR-PEER-ADDRESS, then DATA around the payload.
        let mut addr = [0u8; 20];
        let tid_bits = self.rng.next_u64();
        let mut tid = [0u8; 12];
        tid[..8].copy_from_slice(&tid_bits.to_le_bytes());
        tid[8..].copy_from_slice(&(tid_bits as u32 ^ 0x5a5a_5a5a).to_le_bytes());
        let addr_len = attr::encode_address(
            attr::xor_addr(peer, &tern_wire::TransactionId(tid)),
            &mut addr,
        );
        let header_len = tern_wire::HEADER_LEN + 4 + addr_len + 4;
        let start = PEER_HEADROOM - header_len;
        let pad = (4 - len % 4) % 4;
        let fp_len = if always_fingerprint { 8 } else { 0 };
        let body_len = header_len - tern_wire::HEADER_LEN + len + pad + fp_len;
        let h = &mut buf[start..PEER_HEADROOM];
        h[0..2].copy_from_slice(
            &MessageType::new(Method::DATA, Class::Indication)
                .to_u16()
                .to_be_bytes(),
        );
        h[2..4].copy_from_slice(&(body_len as u16).to_be_bytes());
        h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        h[8..20].copy_from_slice(&tid);
        h[20..22].copy_from_slice(&attr::XOR_PEER_ADDRESS.to_be_bytes());
        h[22..24].copy_from_slice(&(addr_len as u16).to_be_bytes());
        h[24..24 + addr_len].copy_from_slice(&addr[..addr_len]);
        let d = 24 + addr_len;
        h[d..d + 2].copy_from_slice(&attr::DATA.to_be_bytes());
        h[d + 2..d + 4].copy_from_slice(&(len as u16).to_be_bytes());
        let mut end = PEER_HEADROOM + len;
        buf[end..end + pad].fill(0);
        end += pad;
        if always_fingerprint {
            buf[end..end + 2].copy_from_slice(&attr::FINGERPRINT.to_be_bytes());
            buf[end + 2..end + 4].copy_from_slice(&4u16.to_be_bytes());
            let crc = tern_wire::fingerprint_of(&buf[start..end]);
            buf[end + 4..end + 8].copy_from_slice(&crc.to_be_bytes());
            end += 8;
        }
        self.counters.data_to_client.add(len);
        PeerOutput::Forward {
            five_tuple,
            range: start..end,
        }
    }
}
