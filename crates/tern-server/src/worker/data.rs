//! The data paths of a worker: client datagrams in (each decided by the core at once, or
//! answered through its output queue), peer datagrams in (framed in place), and the batched
//! sends out.

use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsFd;
use std::time::Instant;

use tern_proto::{
    ClientOutput, DropReason, FiveTuple, ListenerId, PeerOutput, RelayEndpoint, Transport,
};
use tern_sys::send_many;
use tracing::debug;

use super::{
    count_refused, wall_now, Forward, ToPeer, Worker, CLIENT_BATCH, FAIR_SHARE, PEER_RING,
};
use crate::control::IoErrorKind;

impl Worker {
    /// Reads client datagrams from `listener` and acts on each.
    pub(super) fn drain_listener(&mut self, listener: ListenerId, now: Instant) {
        let Some(l) = self.listeners.get(listener.index()) else {
            return;
        };
        let local = l.addr;
        let wall = wall_now();
        let mut read = 0;
        while read < FAIR_SHARE {
            let sock = self.listeners[listener.index()].socket.as_fd();
            let received = self.client_bufs.recv(sock, 0, CLIENT_BATCH, self.batched);
            let n = received.unwrap_or_else(|e| {
                self.io_errors[IoErrorKind::Receive.index()] += 1;
                debug!(error = %e, "recv on listening socket");
                0
            });
            if n == 0 {
                break;
            }
            read += n;
            for i in 0..n {
                // With UDP GRO one entry may hold several datagrams from the same client.
                for range in self.client_bufs.meta(i).datagrams() {
                    self.handle_client(listener, local, now, wall, i, range);
                }
            }
            self.flush_to_peers();
            if self.batched && n < CLIENT_BATCH {
                break;
            }
        }
    }

    /// Acts on the client datagram at `range` of receive slot `slot`: queues its payload for
    /// the peer, or answers it.
    fn handle_client(
        &mut self,
        listener: ListenerId,
        local: SocketAddr,
        now: Instant,
        wall: u64,
        slot: usize,
        range: Range<usize>,
    ) {
        let from = self.client_bufs.meta(slot).from;
        let five_tuple = FiveTuple::udp(listener, from, local);
        let data = &self.client_bufs.datagram(slot, range.end)[range.clone()];
        match self
            .core
            .handle_client_datagram(now, wall, five_tuple, data)
        {
            ClientOutput::Relay {
                relayed,
                peer,
                payload,
            } => self.to_peers.push(ToPeer {
                relayed,
                slot,
                range: range.start + payload.start..range.start + payload.end,
                peer,
            }),
            ClientOutput::Reply => {
                // Only to say which request failed, at debug level.
                let request = tracing::enabled!(tracing::Level::DEBUG).then(|| data.to_vec());
                self.act_on_outputs(request.as_deref());
            }
            // The failed check whose 401 was held back may have started a lockout: its event
            // waits in the queue.
            ClientOutput::Drop(DropReason::UnauthorizedRateLimited) => self.act_on_outputs(None),
            _ => {}
        }
    }

    /// Reads the ICMP errors queued for the relay socket of `relayed` (at most 64 a call) and
    /// counts them: never logged, as a peer that is gone draws one per datagram sent to it.
    fn count_icmp(&mut self, relayed: RelayEndpoint) {
        let Some((sock, _)) = self.relays.socket(relayed) else {
            return;
        };
        let found = tern_sys::drain_icmp_errors(sock.as_fd(), 64);
        self.io_errors[IoErrorKind::IcmpPortUnreachable.index()] += found.port_unreachable;
        self.io_errors[IoErrorKind::IcmpUnreachable.index()] += found.unreachable;
        self.io_errors[IoErrorKind::IcmpOther.index()] += found.other;
    }

    /// Reads peer datagrams from the relay socket of `relayed`, frames each for its client
    /// in place, and queues it for the next sendmmsg. With `errors` (epoll's EPOLLERR), first
    /// reads the ICMP errors queued for the socket and counts them.
    pub(super) fn drain_relay(&mut self, relayed: RelayEndpoint, now: Instant, errors: bool) {
        let Some((sock, _)) = self.relays.socket(relayed) else {
            return;
        };
        if !self.relays.is_owner(relayed, self.id) {
            // Another worker's allocation now: stop watching, leave the data to it.
            let _ = self.epoll.delete(sock);
            return;
        }
        if errors {
            self.count_icmp(relayed);
        }
        let mut icmp_reports = 0;
        let mut read = 0;
        while read < FAIR_SHARE {
            if self.peer_used == PEER_RING {
                self.flush_forwards();
            }
            let start = self.peer_used;
            let room = if self.batched { PEER_RING - start } else { 1 };
            let Some((sock, _)) = self.relays.socket(relayed) else {
                break;
            };
            let received = self.peer_bufs.recv(sock.as_fd(), start, room, self.batched);
            let n = match received {
                Ok(n) => n,
                // A peer's ICMP answer, reported once (tern_sys::errqueue): count what is
                // queued and read on.
                Err(e) if tern_sys::is_icmp_report(&e) && icmp_reports < 4 => {
                    icmp_reports += 1;
                    self.count_icmp(relayed);
                    continue;
                }
                Err(e) => {
                    self.io_errors[IoErrorKind::Receive.index()] += 1;
                    debug!(port = relayed.port, error = %e, "recv on relay socket");
                    0
                }
            };
            if n == 0 {
                break;
            }
            read += n;
            for slot in start..start + n {
                let meta = self.peer_bufs.meta(slot);
                let out = self.core.handle_peer_datagram(
                    now,
                    relayed,
                    meta.from,
                    self.peer_bufs.slot_mut(slot),
                    meta.len,
                );
                if let PeerOutput::Forward { five_tuple, range } = out {
                    match five_tuple.transport {
                        Transport::Udp { listener } => self.forwards.push(Forward {
                            slot,
                            range,
                            client: five_tuple.client,
                            listener,
                        }),
                        Transport::Stream { conn, .. } => {
                            let frame = &mut self.peer_bufs.slot_mut(slot)[range.start..];
                            // ChannelData on a stream is padded to 4 bytes (RFC 8656 §12.5),
                            // in the tailroom; a Data indication already is.
                            let len = if frame[0] & 0xC0 == 0x40 {
                                let payload = range.len() - tern_wire::CHANNEL_DATA_HEADER_LEN;
                                tern_wire::stream::pad_channel_data(frame, payload)
                            } else {
                                range.len()
                            };
                            if !self.conns.queue(conn, &[&frame[..len]]) {
                                self.conns.backlog_drops += 1;
                            }
                        }
                        _ => {}
                    }
                }
            }
            self.peer_used += n;
            if self.batched && n < room {
                break; // The socket is drained; another read would only say EAGAIN.
            }
        }
    }

    /// Sends the payloads of the last batch of client datagrams out of their relay sockets:
    /// one sendmmsg per run of datagrams for the same socket (a client's burst arrives as
    /// one run), in arrival order.
    fn flush_to_peers(&mut self) {
        let bufs = &self.client_bufs;
        for run in self.to_peers.chunk_by(|a, b| a.relayed == b.relayed) {
            let Some((sock, gso)) = self.relays.socket(run[0].relayed) else {
                continue;
            };
            let msgs = run
                .iter()
                .map(|t| (&bufs.datagram(t.slot, t.range.end)[t.range.clone()], t.peer));
            let report = send_many(sock.as_fd(), gso, msgs, self.batched);
            count_refused(&mut self.io_errors, IoErrorKind::SendToPeer, report);
        }
        self.to_peers.clear();
    }

    /// Sends every queued peer datagram to its client.
    pub(super) fn flush_forwards(&mut self) {
        if self.forwards.is_empty() {
            // Stream clients' data waits in their connections' queues (flush_conns).
            self.peer_used = 0;
            return;
        }
        for (index, l) in self.listeners.iter().enumerate() {
            let bufs = &self.peer_bufs;
            let msgs = self
                .forwards
                .iter()
                .filter(|f| f.listener.index() == index)
                .map(|f| (&bufs.slot(f.slot)[f.range.clone()], f.client));
            let report = send_many(l.socket.as_fd(), &l.gso, msgs, self.batched);
            count_refused(&mut self.io_errors, IoErrorKind::SendToClient, report);
        }
        self.forwards.clear();
        self.peer_used = 0;
    }
}
