//! A worker's TCP side: accepting on its own `SO_REUSEPORT` listening sockets (within the
//! shared connection limits), taking the PROXY header off connections on ports that require
//! one, reading and framing each connection's stream (`tern_wire::stream`), handing every
//! whole message to the core with the connection's 5-tuple, writing answers and relayed data
//! through each connection's bounded queue, and closing connections (which ends their
//! allocations).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::Instant;

use std::ops::Range;

use tern_proto::{ClientOutput, ConnId, DropReason, FiveTuple, RelayEndpoint, Transport};
use tern_sys::{send_many, Interest, Ready};
use tern_wire::stream::{self, Framing, MAX_FRAME_LEN};
use tracing::debug;

use super::tls::{failure, tls_broken};
use super::{count_refused, wall_now, Worker};
use crate::control::{IoErrorKind, StreamClose, TlsFailure};
use crate::token::Token;

/// Connections accepted from one listening socket per turn of the loop.
const ACCEPTS_PER_TURN: usize = 64;
/// Reads from one connection per turn of the loop.
const READS_PER_TURN: usize = 16;

/// A client's payload for a peer, waiting for the rest of its read to be handled.
#[derive(Debug, Clone)]
pub(super) struct StreamSend {
    relayed: RelayEndpoint,
    peer: SocketAddr,
    /// Where the payload is in the connection's read buffer.
    payload: Range<usize>,
}

const READ_INTEREST: Interest = Interest::READABLE;

fn interest(writes: bool) -> Interest {
    if writes {
        READ_INTEREST | Interest::READ_CLOSED | Interest::WRITABLE
    } else {
        READ_INTEREST | Interest::READ_CLOSED
    }
}

impl Worker {
    /// Accepts the connections waiting on TCP listening socket `index`.
    pub(super) fn accept(&mut self, index: u32, now: Instant) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(port) = self.tcp_listeners.get(index as usize) else {
                return;
            };
            let proxy = port.proxy;
            match port.listener.accept() {
                Ok((stream, client)) => self.open_conn(stream, client, proxy, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // A connection that reset before it was accepted, or no descriptors left.
                    self.io_errors[IoErrorKind::Receive.index()] += 1;
                    debug!(error = %e, "accept");
                    return;
                }
            }
        }
    }

    /// Takes an accepted connection in, unless it is over a limit. Behind a PROXY header
    /// its client IP is counted once the header names it.
    fn open_conn(&mut self, stream: TcpStream, client: SocketAddr, proxy: bool, now: Instant) {
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "local address of an accepted connection");
                return;
            }
        };
        if let Err(e) = stream.set_nonblocking(true) {
            debug!(error = %e, "nonblocking accepted connection");
            return;
        }
        if !self.limits.open() {
            self.refuse(client, StreamClose::OverLimit);
            return; // Dropping the stream closes it.
        }
        let ip_counted = !proxy;
        if ip_counted && !self.limits.claim_ip(client.ip()) {
            self.limits.close();
            self.refuse(client, StreamClose::PerIpLimit);
            return;
        }
        // Small messages (answers, relayed media) go out at once.
        let _ = stream.set_nodelay(true);
        let five = |id| FiveTuple {
            transport: Transport::Stream {
                conn: id,
                tls: false,
            },
            client,
            server: local,
        };
        let Some((id, conn)) = self
            .conns
            .insert(stream, five, self.tls.clone(), proxy, now)
        else {
            self.release(client, ip_counted);
            self.refuse(client, StreamClose::OverLimit);
            return;
        };
        let token = Token::Conn(id).encode();
        let watched = self.epoll.add(conn.stream.as_fd(), token, interest(false));
        if let Some(conn) = self.conns.get_mut(id) {
            conn.ip_counted = ip_counted;
        }
        if let Err(e) = watched {
            debug!(error = %e, "watch connection");
            self.close_conn(id, None, now);
        }
    }

    /// Counts a connection closed at once for `reason`.
    fn refuse(&mut self, client: SocketAddr, reason: StreamClose) {
        self.stream_closes[reason.index()] += 1;
        debug!(%client, reason = reason.label(), "connection refused");
    }

    /// Uncounts a connection from the shared limits (its IP too, if it was counted).
    fn release(&self, client: SocketAddr, ip_counted: bool) {
        self.limits.close();
        if ip_counted {
            self.limits.release_ip(client.ip());
        }
    }

    /// Acts on an epoll event of connection `id`.
    pub(super) fn conn_ready(&mut self, id: ConnId, ready: Ready, now: Instant) {
        if ready.is_writable() {
            self.flush_conn(id, now);
        }
        if ready.is_readable() || ready.is_read_closed() || ready.is_error() {
            if let Err(reason) = self.read_conn(id, now) {
                self.close_conn(id, Some(reason), now);
            }
        }
    }

    /// Reads what connection `id` sent and hands each whole message to the core.
    fn read_conn(&mut self, id: ConnId, now: Instant) -> Result<(), StreamClose> {
        let result = self.read_conn_turn(id, now);
        // Handshake records (and alerts) go out at once.
        if self.conns.get_mut(id).is_some_and(|c| c.tls.wants_write()) {
            self.flush_conn(id, now);
        }
        result
    }

    fn read_conn_turn(&mut self, id: ConnId, now: Instant) -> Result<(), StreamClose> {
        // Past the turn's share, reads go on only while bytes that came behind a PROXY header
        // wait in memory: epoll would not report them.
        for turn in 0.. {
            let Some(conn) = self.conns.get_mut(id) else {
                return Ok(());
            };
            if turn >= READS_PER_TURN && !conn.has_early() {
                return Ok(());
            }
            match conn.read() {
                Ok(0) => return Err(self.read_closed(id, now)),
                Ok(_) if conn.awaiting_proxy => {
                    conn.last_read = now;
                    self.take_proxy_header(id)?;
                }
                Ok(_) => {
                    conn.last_read = now;
                    let drained = conn.drained;
                    self.handle_frames(id, now)?;
                    if drained {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(error = %e, "read from connection");
                    if let Some(broken) = tls_broken(&e) {
                        if broken.handshaking {
                            self.tls_failures[failure(&broken.error).index()] += 1;
                        }
                        return Err(StreamClose::Tls);
                    }
                    if conn.tls.handshaking() {
                        self.tls_failures[TlsFailure::Other.index()] += 1;
                        return Err(StreamClose::Tls);
                    }
                    return Err(StreamClose::Reset);
                }
            }
        }
        Ok(())
    }

    /// Why connection `id`, whose client ended the stream, is closed: its last whole
    /// messages are handled first. A hang-up in the middle of a PROXY header or a TLS
    /// handshake is a failure of those.
    fn read_closed(&mut self, id: ConnId, now: Instant) -> StreamClose {
        let Some(conn) = self.conns.get_mut(id) else {
            return StreamClose::PeerClosed;
        };
        if conn.awaiting_proxy {
            return match conn.filled {
                0 => StreamClose::PeerClosed,
                _ => StreamClose::ProxyHeader,
            };
        }
        if conn.tls.handshaking() {
            self.tls_failures[TlsFailure::Other.index()] += 1;
            return StreamClose::Tls;
        }
        match self.handle_frames(id, now) {
            Ok(()) => StreamClose::PeerClosed,
            Err(reason) => reason,
        }
    }

    /// Takes the PROXY header off connection `id` once it is all in, and counts the client
    /// it names against the per-IP limit.
    fn take_proxy_header(&mut self, id: ConnId) -> Result<(), StreamClose> {
        let Some(conn) = self.conns.get_mut(id) else {
            return Ok(());
        };
        let peer = conn.five.client;
        let client = match conn.take_proxy_header() {
            Ok(None) => return Ok(()),
            Ok(Some(client)) => client,
            Err(e) => {
                debug!(%peer, error = %e, reason = e.label(), "PROXY header refused");
                return Err(StreamClose::ProxyHeader);
            }
        };
        debug!(%peer, %client, "PROXY header");
        if !self.limits.claim_ip(client.ip()) {
            return Err(StreamClose::PerIpLimit);
        }
        conn.ip_counted = true;
        Ok(())
    }

    /// Frames the bytes buffered for connection `id`: every whole message goes to the core,
    /// the rest of a message stays at the front of the buffer for the next read.
    fn handle_frames(&mut self, id: ConnId, now: Instant) -> Result<(), StreamClose> {
        let framing = Framing {
            max_frame_len: MAX_FRAME_LEN,
            rfc5766_channels: self.core.config().rfc5766_channels,
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return Ok(());
        };
        // The first byte has chosen TLS or not before any message is framed; the 5-tuple
        // says which from the first message on.
        if let Transport::Stream { tls, .. } = &mut conn.five.transport {
            *tls = conn.tls.is_tls();
        }
        let (five, filled) = (conn.five, conn.filled);
        // The buffer leaves the connection while its messages are handled (the answers are
        // queued on the same connection).
        let mut buf = std::mem::take(&mut conn.buf);
        let wall = wall_now();
        let mut frames = stream::frames(&buf[..filled], framing);
        let mut result = Ok(());
        // Payloads for peers wait here (as ranges of `buf`) and leave together after the
        // read's messages are handled: one sendmmsg for the lot, not a sendto each.
        let mut sends = std::mem::take(&mut self.stream_sends);
        for frame in &mut frames {
            match frame {
                Ok((_, message)) => {
                    if let Some(send) = self.handle_stream_message(five, message, now, wall) {
                        let offset = message.as_ptr().addr() - buf.as_ptr().addr();
                        let payload = offset + send.payload.start..offset + send.payload.end;
                        sends.push(StreamSend { payload, ..send });
                    }
                }
                Err(e) => {
                    result = Err(StreamClose::framing(e));
                    break;
                }
            }
        }
        let consumed = frames.consumed();
        self.send_to_peers(&buf, &sends);
        sends.clear();
        self.stream_sends = sends;
        buf.copy_within(consumed..filled, 0);
        if let Some(conn) = self.conns.get_mut(id) {
            conn.buf = buf;
            conn.filled = filled - consumed;
        }
        result
    }

    /// One message from a stream client: the payload to send to a peer (its range of
    /// `message`), or its answer queued.
    fn handle_stream_message(
        &mut self,
        five: FiveTuple,
        message: &[u8],
        now: Instant,
        wall: u64,
    ) -> Option<StreamSend> {
        match self.core.handle_client_datagram(now, wall, five, message) {
            ClientOutput::Relay {
                relayed,
                peer,
                payload,
            } => Some(StreamSend {
                relayed,
                peer,
                payload,
            }),
            ClientOutput::Reply => {
                let request = tracing::enabled!(tracing::Level::DEBUG).then(|| message.to_vec());
                self.act_on_outputs(request.as_deref());
                None
            }
            _ => None,
        }
    }

    /// Sends `sends` (ranges of `buf`) out of their relay sockets: one sendmmsg per run
    /// for the same socket, in the client's order.
    fn send_to_peers(&mut self, buf: &[u8], sends: &[StreamSend]) {
        for run in sends.chunk_by(|a, b| a.relayed == b.relayed) {
            let Some((sock, gso)) = self.relays.socket(run[0].relayed) else {
                continue; // The allocation ended within the read (deleted, say).
            };
            let msgs = run.iter().map(|s| (&buf[s.payload.clone()], s.peer));
            let report = send_many(sock.as_fd(), gso, msgs, self.batched);
            count_refused(&mut self.io_errors, IoErrorKind::SendToPeer, report);
        }
    }

    /// Writes every connection that has bytes queued; watches the ones left with bytes for
    /// room to write.
    pub(super) fn flush_conns(&mut self, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        self.conns.take_dirty(&mut dirty);
        for &id in &dirty {
            self.flush_conn(id, now);
        }
        self.dirty = dirty;
        if self.conns.backlog_drops > 0 {
            let n = std::mem::take(&mut self.conns.backlog_drops);
            self.core.count_drops(DropReason::ClientBacklog, n);
        }
    }

    /// Writes connection `id`'s queue, and watches it for room to write while bytes wait.
    fn flush_conn(&mut self, id: ConnId, now: Instant) {
        let pending = match self.conns.flush(id) {
            None => return,
            Some(Ok(pending)) => pending,
            Some(Err(e)) => {
                debug!(error = %e, "write to connection");
                self.close_conn(id, Some(StreamClose::Reset), now);
                return;
            }
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let watch = pending > 0;
        if watch != conn.watching_writes {
            conn.watching_writes = watch;
            let token = Token::Conn(id).encode();
            if let Err(e) = self
                .epoll
                .modify(conn.stream.as_fd(), token, interest(watch))
            {
                debug!(error = %e, "watch connection for writes");
            }
        }
    }

    /// Closes connection `id` (counted under `reason`, if any) and ends its allocation.
    pub(super) fn close_conn(&mut self, id: ConnId, reason: Option<StreamClose>, now: Instant) {
        let Some(conn) = self.conns.remove(id) else {
            return;
        };
        let _ = self.epoll.delete(conn.stream.as_fd());
        self.release(conn.five.client, conn.ip_counted);
        if let Some(reason) = reason {
            self.stream_closes[reason.index()] += 1;
            debug!(client = %conn.five.client, reason = reason.label(), "connection closed");
        }
        self.core.handle_connection_closed(now, conn.five);
        self.act_on_outputs(None);
    }

    /// Closes the connections that hold no allocation and sent nothing for the idle timeout,
    /// and those whose TLS handshake or PROXY header took longer than the handshake timeout
    /// ([`super::StreamTimeouts`]).
    pub(super) fn close_idle(&mut self, now: Instant) {
        let mut ids = std::mem::take(&mut self.swept_ids);
        ids.clear();
        ids.extend(self.conns.ids());
        let limits = self.timeouts;
        for &id in &ids {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            let opened_for = now.saturating_duration_since(c.opened);
            let reason = if c.awaiting_proxy && opened_for >= limits.handshake {
                StreamClose::ProxyHeader
            } else if c.tls.handshaking() && opened_for >= limits.handshake {
                self.tls_failures[TlsFailure::Timeout.index()] += 1;
                StreamClose::Tls
            } else if !c.allocated && now.saturating_duration_since(c.last_read) >= limits.idle {
                StreamClose::Idle
            } else {
                continue;
            };
            self.close_conn(id, Some(reason), now);
        }
        self.swept_ids = ids;
    }

    /// Closes every connection (the worker is stopping); their allocations already ended.
    pub(super) fn close_all(&mut self, now: Instant) {
        for id in self.conns.ids().collect::<Vec<_>>() {
            self.close_conn(id, None, now);
        }
    }
}
