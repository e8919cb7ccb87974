//! One worker: an epoll loop around one core, its share of the UDP and TCP listening sockets
//! and the TCP connections accepted on them, the relay
//! sockets of the allocations its core owns, and an eventfd that wakes it for commands.
//!
//! Each epoll event carries a typed [`Token`]. A datagram's 5-tuple names its listener, so
//! answers and forwarded peer data leave from the right socket without a search.

mod conn;
mod data;
mod outputs;
mod stream;
mod tls;

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tern_proto::{ConnId, ListenerId, RelayEndpoint, Server, PEER_HEADROOM, PEER_TAILROOM};
use tracing::debug;

use crate::conn_limits::ConnLimits;
use crate::control::{
    Command, IoErrorKind, IoErrors, StreamCloses, TlsFailures, WorkerPort, PUBLISH_EVERY,
};
use crate::relay_ports::RelayTable;
use crate::sessions::{RevokeOrder, RevokeSelector, SessionsQuery, WorkerRevoked, WorkerSessions};
use crate::tls::CertStore;
use crate::token::Token;
use tern_proto::{Revoke, SessionFilter};
use tern_sys::{Epoll, Gso, Interest, Ready, RecvRing, SendReport};

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams read from a listening socket per system call.
const CLIENT_BATCH: usize = 32;
/// Peer datagrams buffered (and framed in place) before one sendmmsg to clients.
const PEER_RING: usize = 64;
/// How often connections are checked for their timeouts at most; a quarter of the shortest
/// timeout when that is less, so a connection closes within a quarter past its timeout.
const IDLE_SWEEP: Duration = Duration::from_secs(1);
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
    /// This worker's TCP listening sockets (its own `SO_REUSEPORT` members).
    tcp_listeners: Vec<TcpPort>,
    /// Its stream connections.
    conns: conn::Conns,
    /// Scratch list of connections to flush.
    dirty: Vec<ConnId>,
    /// Scratch list of connections to check for their timeouts.
    swept_ids: Vec<ConnId>,
    /// The connection limits all workers share.
    limits: Arc<ConnLimits>,
    /// Stream connections closed, by reason.
    stream_closes: StreamCloses,
    /// TLS handshakes failed, by reason.
    tls_failures: TlsFailures,
    /// The certificates, when TLS is on (every TCP port then tells TLS by its first byte).
    tls: Option<Arc<CertStore>>,
    /// When idle connections were last looked for.
    swept: Instant,
    /// How often they are looked for.
    sweep_every: Duration,
    /// How long a connection without an allocation may stay silent, and how long a TLS
    /// handshake or PROXY header may take.
    timeouts: StreamTimeouts,
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
    /// Scratch list of a stream read's payloads for peers.
    stream_sends: Vec<stream::StreamSend>,
    /// The XDP fast path's map writer, when it is attached.
    #[cfg(feature = "xdp")]
    xdp: Option<crate::xdp::Feed>,
}

fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Worker {
    // The fast path is one more argument only in builds that have it.
    #[cfg_attr(feature = "xdp", allow(clippy::too_many_arguments))]
    pub fn new(
        id: u32,
        core: Server,
        sockets: ListeningSockets,
        relays: Arc<RelayTable>,
        #[cfg(feature = "xdp")] xdp: Option<crate::xdp::Shared>,
        batched: bool,
        stop: Arc<AtomicBool>,
        port: WorkerPort,
    ) -> io::Result<Self> {
        // The fast path's entries name relay ports: a port goes back to the pool only after
        // this worker has removed them (see `Output::Release` in `outputs.rs`).
        #[cfg(feature = "xdp")]
        let core = {
            let mut core = core;
            if xdp.is_some() {
                core.defer_port_release();
            }
            core
        };
        let ListeningSockets {
            udp: listeners,
            tcp: tcp_listeners,
            timeouts,
            limits,
            tls,
        } = sockets;
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
        for (i, port) in tcp_listeners.iter().enumerate() {
            let token = Token::TcpListener(i as u32).encode();
            epoll.add(&port.listener, token, Interest::READABLE)?;
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
            tcp_listeners,
            conns: conn::Conns::default(),
            dirty: Vec::new(),
            swept_ids: Vec::new(),
            limits,
            stream_closes: StreamCloses::default(),
            tls_failures: TlsFailures::default(),
            tls,
            swept: Instant::now(),
            sweep_every: IDLE_SWEEP.min(timeouts.idle.min(timeouts.handshake) / 4),
            timeouts,
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
            stream_sends: Vec::with_capacity(64),
            #[cfg(feature = "xdp")]
            xdp: xdp.map(crate::xdp::Feed::new),
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
                    self.drain_relay(relayed, now, r.is_error());
                }
            }
            self.flush_forwards();
            for r in &ready {
                match Token::decode(r.token()) {
                    Some(Token::Listener(listener)) => self.drain_listener(listener, now),
                    Some(Token::Conn(id)) => self.conn_ready(id, *r, now),
                    Some(Token::TcpListener(i)) => self.accept(i, now),
                    _ => {}
                }
            }
            self.ready = ready;
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
                self.act_on_outputs(None);
            }
            if now.saturating_duration_since(self.swept) >= self.sweep_every {
                self.swept = now;
                self.close_idle(now);
            }
            self.flush_conns(now);
            if self
                .published
                .is_none_or(|at| now.duration_since(at) >= PUBLISH_EVERY)
            {
                self.publish(now);
            }
        }
        self.core.shutdown(Instant::now());
        self.act_on_outputs(None);
        self.flush_conns(Instant::now());
        self.close_all(Instant::now());
        self.publish(Instant::now());
        debug!(worker = self.id, "worker stopped");
    }

    /// Copies the core's counters and gauges where the admin side reads them.
    fn publish(&mut self, now: Instant) {
        #[cfg(feature = "xdp")]
        if let Some(feed) = &mut self.xdp {
            feed.fold(&mut self.core, now);
        }
        let mut s = self.port.snapshots[self.port.index]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        s.counters.clone_from(self.core.counters());
        s.io_errors = self.io_errors;
        s.stream_closes = self.stream_closes;
        s.tls_failures = self.tls_failures;
        s.connections = self.conns.len();
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
                Command::Sessions(q) => self.answer_sessions(q),
                Command::Revoke(order) => self.revoke(order, now),
                Command::Refuse { names, until } => {
                    for name in &names {
                        self.core.refuse(name, until, now);
                    }
                }
            }
        }
        if any {
            self.publish(now);
        }
    }
}

impl Worker {
    /// Lists the core's allocations for the sessions API. Never blocks: the reply channel
    /// has room for every worker's answer.
    fn answer_sessions(&mut self, q: SessionsQuery) {
        let worker = self.port.index as u32;
        let after = match q.after {
            // A cursor in an earlier worker: all of this one's come after it.
            Some(a) if a.worker < worker => None,
            // The API refuses a cursor without a handle (generation 0).
            Some(a) if a.worker == worker => a.allocation(),
            // A cursor in a later worker: none of this one's come after it.
            Some(_) => {
                let _ = q.reply.try_send(WorkerSessions {
                    worker,
                    sessions: Vec::new(),
                    more: false,
                });
                return;
            }
            None => None,
        };
        let filter = SessionFilter {
            user: q.user.as_deref(),
            client_ip: q.client_ip,
        };
        let mut sessions = Vec::new();
        let more = self.core.sessions(&filter, after, q.limit, &mut sessions);
        let _ = q.reply.try_send(WorkerSessions {
            worker,
            sessions,
            more,
        });
    }

    /// Ends the allocations an order names, through the normal end path, and says which.
    fn revoke(&mut self, order: RevokeOrder, now: Instant) {
        let worker = self.port.index as u32;
        let selector = match &order.selector {
            RevokeSelector::User(u) => Some(Revoke::User(u)),
            RevokeSelector::ClientIp(ip) => Some(Revoke::ClientIp(*ip)),
            RevokeSelector::Id(id) => id
                .allocation()
                .filter(|_| id.worker == worker)
                .map(Revoke::Id),
        };
        let mut ended = Vec::new();
        if let Some(selector) = selector {
            ended = self.core.revoke(selector, now, None);
            self.act_on_outputs(None);
        }
        let _ = order.reply.try_send(WorkerRevoked { worker, ended });
    }
}

/// Counts the datagrams a send lost to errors (logging the last at debug level) and to a full
/// socket buffer.
fn count_refused(io_errors: &mut IoErrors, kind: IoErrorKind, report: SendReport) {
    io_errors[IoErrorKind::SendBufferFull.index()] += report.unsent;
    if let Some(e) = report.last_error {
        io_errors[kind.index()] += report.refused;
        debug!(error = %e, datagrams = report.refused, "{}", kind.label());
    }
}

/// A worker's listening sockets, each with its address: its members of the `SO_REUSEPORT`
/// groups.
#[derive(Debug)]
pub struct ListeningSockets {
    /// UDP.
    pub udp: Vec<(SocketAddr, UdpSocket)>,
    /// TCP.
    pub tcp: Vec<TcpPort>,
    /// The stream connections' timeouts.
    pub timeouts: StreamTimeouts,
    /// The connection limits all workers share.
    pub limits: Arc<ConnLimits>,
    /// The certificates shared by all workers, when TLS is on.
    pub tls: Option<Arc<CertStore>>,
}

/// A worker's member of a TCP listening socket's `SO_REUSEPORT` group.
#[derive(Debug)]
pub struct TcpPort {
    /// The socket.
    pub listener: TcpListener,
    /// Whether every connection must start with a PROXY protocol header.
    pub proxy: bool,
}

/// How long a stream connection may take for what.
#[derive(Debug, Clone, Copy)]
pub struct StreamTimeouts {
    /// Silent, without an allocation (`tcp-idle-timeout`).
    pub idle: Duration,
    /// From accept to the end of the TLS handshake, and to the end of a PROXY header
    /// (`tls-handshake-timeout`).
    pub handshake: Duration,
}

/// A listening socket, its address and its GSO state.
#[derive(Debug)]
struct Listener {
    addr: SocketAddr,
    socket: UdpSocket,
    gso: Gso,
}
