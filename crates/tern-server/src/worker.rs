//! One worker: an epoll loop around one core, its share of the listening sockets, the relay
//! sockets of the allocations its core owns, and an eventfd that wakes it for commands.
//!
//! Each epoll event carries a typed [`Token`]. A datagram's 5-tuple names its listener, so
//! answers and forwarded peer data leave from the right socket without a search.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tern_proto::{
    ClientOutput, Destination, Event, FiveTuple, ListenerId, Output, PeerOutput, RelayEndpoint,
    Server, Transport, PEER_HEADROOM, PEER_TAILROOM,
};
use tracing::{debug, info};

use crate::control::{Command, IoErrorKind, IoErrors, WorkerPort, PUBLISH_EVERY};
use crate::relay_ports::RelayTable;
use crate::token::Token;
use tern_sys::{send_many, send_to, Epoll, Gso, Interest, Ready, RecvRing, SendReport};

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams read from a listening socket per system call.
const CLIENT_BATCH: usize = 32;
/// Peer datagrams buffered (and framed in place) before one sendmmsg to clients.
const PEER_RING: usize = 64;
/// Most datagrams read from one socket before the loop turns to the others.
const FAIR_SHARE: usize = 128;

/// A client's payload waiting to go out of a relay socket at the end of its batch.
#[derive(Debug, Clone)]
struct ToPeer {
    relayed: RelayEndpoint,
    slot: usize,
    range: Range<usize>,
    peer: SocketAddr,
}

/// A peer datagram framed for its client, waiting in the ring for the next sendmmsg.
#[derive(Debug, Clone)]
struct Forward {
    slot: usize,
    range: Range<usize>,
    client: SocketAddr,
    listener: ListenerId,
}

pub struct Worker {
    id: u32,
    core: Server,
    listeners: Vec<Listener>,
    relays: Arc<RelayTable>,
    epoll: Epoll,
    batched: bool,
    stop: Arc<AtomicBool>,
    port: WorkerPort,
    published: Option<Instant>,
    /// Failed system calls, by kind; published with the core's counters.
    io_errors: IoErrors,
    /// Receive buffers for client datagrams.
    client_bufs: RecvRing,
    /// Receive buffers for peer datagrams, each with headroom and tailroom for framing.
    peer_bufs: RecvRing,
    peer_used: usize,
    forwards: Vec<Forward>,
    to_peers: Vec<ToPeer>,
    ready: Vec<Ready>,
}

fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Worker {
    pub fn new(
        id: u32,
        core: Server,
        listeners: Vec<(SocketAddr, UdpSocket)>,
        relays: Arc<RelayTable>,
        batched: bool,
        stop: Arc<AtomicBool>,
        port: WorkerPort,
    ) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        epoll.add(&*port.waker, Token::Wake.encode(), Interest::READABLE)?;
        for (i, (_, s)) in listeners.iter().enumerate() {
            let token = Token::Listener(ListenerId(i as u32));
            epoll.add(s, token.encode(), Interest::READABLE)?;
            // Bursts from one client (a GSO send, or a NIC's GRO) arrive as one entry, split
            // again in drain_listener. Only with batched I/O: the plain path reads no
            // control messages. Relay sockets keep one datagram per entry, because each
            // peer datagram is framed in place behind its own headroom.
            if batched {
                tern_sys::enable_gro(s.as_fd());
            }
        }
        let listeners = listeners
            .into_iter()
            .map(|(addr, socket)| Listener {
                addr,
                socket,
                gso: Gso::new(),
            })
            .collect();
        Ok(Self {
            id,
            core,
            listeners,
            relays,
            epoll,
            batched,
            stop,
            port,
            published: None,
            io_errors: IoErrors::default(),
            client_bufs: RecvRing::new(CLIENT_BATCH, 0, MAX_DATAGRAM, 0),
            peer_bufs: RecvRing::new(PEER_RING, PEER_HEADROOM, MAX_DATAGRAM, PEER_TAILROOM),
            peer_used: 0,
            forwards: Vec::with_capacity(PEER_RING),
            // Room for every datagram of a full batch of GRO entries (64 segments each).
            to_peers: Vec::with_capacity(CLIENT_BATCH * 64),
            ready: Vec::with_capacity(256),
        })
    }

    pub fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            // Idle, the loop still turns every PUBLISH_EVERY to publish its heartbeat;
            // commands and stop wake it through the eventfd.
            let timeout = self.core.poll_timeout().map_or(PUBLISH_EVERY, |t| {
                t.saturating_duration_since(now).min(PUBLISH_EVERY)
            });
            let mut ready = std::mem::take(&mut self.ready);
            if let Err(e) = self.epoll.wait(&mut ready, timeout) {
                debug!(error = %e, "epoll_wait");
            }
            let now = Instant::now();
            // Commands first: a drain or reload acts before the datagrams that arrived with
            // it.
            if ready
                .iter()
                .any(|r| Token::decode(r.token()) == Some(Token::Wake))
            {
                self.take_commands(now);
            }
            // Peers next, and their packets out to clients before the listeners' turn: a
            // burst of client packets (each send a delivery on loopback) must not hold back
            // answers that are already framed.
            for r in &ready {
                if let Some(Token::Relay(relayed)) = Token::decode(r.token()) {
                    self.drain_relay(relayed, now);
                }
            }
            self.flush_forwards();
            for r in &ready {
                if let Some(Token::Listener(listener)) = Token::decode(r.token()) {
                    self.drain_listener(listener, now);
                }
            }
            self.ready = ready;
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
                self.act_on_outputs(None);
            }
            if self
                .published
                .is_none_or(|at| now.duration_since(at) >= PUBLISH_EVERY)
            {
                self.publish(now);
            }
        }
        self.core.shutdown(Instant::now());
        self.act_on_outputs(None);
        self.publish(Instant::now());
        debug!(worker = self.id, "worker stopped");
    }

    /// Copies the core's counters and gauges where the admin side reads them.
    fn publish(&mut self, now: Instant) {
        let mut s = self.port.snapshots[self.port.index]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        s.counters.clone_from(self.core.counters());
        s.io_errors = self.io_errors;
        s.stats = self.core.stats_local();
        s.at = Some(now);
        self.published = Some(now);
    }

    /// Clears the eventfd and acts on drain and reload commands, then publishes so the
    /// admin side sees their effect.
    fn take_commands(&mut self, now: Instant) {
        if let Err(e) = self.port.waker.reset() {
            debug!(error = %e, "reset the worker's eventfd");
        }
        let mut any = false;
        while let Ok(command) = self.port.commands.try_recv() {
            any = true;
            match command {
                Command::Drain(alternate) => self.core.drain(alternate),
                Command::Reload(r) => self.core.reload(r.secrets, r.users, r.peer_filter),
            }
        }
        if any {
            self.publish(now);
        }
    }

    /// Reads client datagrams from `listener` and acts on each.
    fn drain_listener(&mut self, listener: ListenerId, now: Instant) {
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
            _ => {}
        }
    }

    /// Reads peer datagrams from the relay socket of `relayed`, frames each for its client
    /// in place, and queues it for the next sendmmsg.
    fn drain_relay(&mut self, relayed: RelayEndpoint, now: Instant) {
        let Some((sock, _)) = self.relays.socket(relayed) else {
            return;
        };
        if !self.relays.is_owner(relayed, self.id) {
            // Another worker's allocation now: stop watching, leave the data to it.
            let _ = self.epoll.delete(sock);
            return;
        }
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
            let n = received.unwrap_or_else(|e| {
                self.io_errors[IoErrorKind::Receive.index()] += 1;
                debug!(port = relayed.port, error = %e, "recv on relay socket");
                0
            });
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
                    // Streams come with the TCP/TLS listeners; until then every 5-tuple is UDP.
                    if let Transport::Udp { listener } = five_tuple.transport {
                        self.forwards.push(Forward {
                            slot,
                            range,
                            client: five_tuple.client,
                            listener,
                        });
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
    fn flush_forwards(&mut self) {
        if self.forwards.is_empty() {
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

    /// Acts on the core's outputs in the order it queued them, so that a new allocation's
    /// relay socket is claimed before the reply that names it goes out. `request`, at debug
    /// level, is the request a reply answers (to log why it failed).
    fn act_on_outputs(&mut self, request: Option<&[u8]>) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit(t) => {
                    let (fd, to, kind) = match t.destination {
                        Destination::Client(five_tuple) => {
                            let Transport::Udp { listener } = five_tuple.transport else {
                                continue; // No stream connections yet.
                            };
                            let Some(l) = self.listeners.get(listener.index()) else {
                                continue;
                            };
                            if let Some(request) = request {
                                log_error_reply(request, t.contents, five_tuple.client);
                            }
                            let fd = l.socket.as_fd();
                            (fd, five_tuple.client, IoErrorKind::SendToClient)
                        }
                        Destination::Peer { relayed, peer } => {
                            let Some((sock, _)) = self.relays.socket(relayed) else {
                                continue;
                            };
                            (sock.as_fd(), peer, IoErrorKind::SendToPeer)
                        }
                        _ => continue,
                    };
                    if let Err(e) = send_to(fd, t.contents, to) {
                        self.io_errors[kind.index()] += 1;
                        debug!(error = %e, to = %to, "{}", kind.label());
                    }
                }
                Output::Claim { relayed, .. } => claim(&self.relays, &self.epoll, self.id, relayed),
                // The socket stays watched by this worker until another one claims it, so
                // stray peer datagrams are read and counted as dropped (no allocation) rather
                // than left queued for the port's next allocation.
                Output::Release { .. } => {}
                // For a kernel fast path (XDP), which this server does not have yet.
                Output::ChannelBound(_) | Output::ChannelUnbound(_) => {}
                Output::Event(event) => self.log_event(event),
                _ => {}
            }
        }
    }

    /// Logs allocations beginning and ending.
    fn log_event(&self, event: Event) {
        match event {
            Event::AllocationCreated {
                five_tuple,
                relayed,
                username,
            } => {
                info!(client = %five_tuple.client, %relayed, %username, worker = self.id, "allocation created");
            }
            Event::AllocationEnded {
                five_tuple,
                relayed,
                reason,
                duration,
                traffic,
            } => {
                info!(
                    client = %five_tuple.client,
                    %relayed,
                    reason = reason.label(),
                    duration_s = duration.as_secs(),
                    bytes_to_peers = traffic.bytes_to_peers,
                    bytes_to_client = traffic.bytes_to_client,
                    "allocation ended"
                );
            }
            _ => {}
        }
    }
}

/// Makes worker `id` the reader of `relayed`'s socket and watches it.
fn claim(relays: &RelayTable, epoll: &Epoll, id: u32, relayed: RelayEndpoint) {
    let Some((sock, _)) = relays.socket(relayed) else {
        return;
    };
    relays.claim(relayed, id);
    let token = Token::Relay(relayed).encode();
    if let Err(e) = epoll.add(sock, token, Interest::READABLE) {
        debug!(port = relayed.port, error = %e, "watch relay socket");
    }
}

/// Counts the datagrams a send lost to errors, and logs the last error at debug level.
fn count_refused(io_errors: &mut IoErrors, kind: IoErrorKind, report: SendReport) {
    if let Some(e) = report.last_error {
        io_errors[kind.index()] += report.refused;
        debug!(error = %e, datagrams = report.refused, "{}", kind.label());
    }
}

/// A listening socket, its address and its GSO state.
#[derive(Debug)]
struct Listener {
    addr: SocketAddr,
    socket: UdpSocket,
    gso: Gso,
}

/// Attributes whose 4-byte values are numbers worth logging; nothing that could carry a
/// credential.
const NUMERIC: &[u16] = &[
    tern_wire::attr::LIFETIME,
    tern_wire::attr::CHANNEL_NUMBER,
    tern_wire::attr::REQUESTED_TRANSPORT,
    tern_wire::attr::REQUESTED_ADDRESS_FAMILY,
];

/// At debug level, says which request failed and why.
fn log_error_reply(request: &[u8], reply: &[u8], client: SocketAddr) {
    use tern_wire::{attr, Class, Message};
    let Ok(msg) = Message::parse(reply) else {
        return;
    };
    if msg.class() != Class::Error {
        return;
    }
    let Some((code, reason)) = msg
        .get(attr::ERROR_CODE)
        .and_then(|a| attr::decode_error_code(a.value).ok())
    else {
        return;
    };
    // Attribute types, and the values of the short numeric ones (LIFETIME, CHANNEL-NUMBER, ...).
    let attrs: Vec<String> = Message::parse(request)
        .map(|m| {
            m.attributes()
                .map(|a| match a.value {
                    [x, y, z, w] if NUMERIC.contains(&a.typ) => {
                        format!("{:#06x}={x:02x}{y:02x}{z:02x}{w:02x}", a.typ)
                    }
                    _ => format!("{:#06x}", a.typ),
                })
                .collect()
        })
        .unwrap_or_default();
    debug!(%client, method = msg.method().name(), code, reason, request_attributes = ?attrs, "error response");
}
