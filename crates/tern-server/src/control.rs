//! What the rest of the process sees of the workers: their published counters and gauges
//! (copied out of each core about every 100 ms, so scraping takes no lock a packet waits
//! for), their heartbeats, and the commands they take (drain, reload), which wake them
//! through their eventfd.

use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_proto::{Counters, PeerFilterConfig, SharedState, StaticUser, Stats};
use tern_sys::Waker;

/// A command to every worker.
#[derive(Debug, Clone)]
pub enum Command {
    /// Refuse new allocations (300 with this alternate server, or 508); keep relaying.
    Drain(Option<SocketAddr>),
    /// Replace credentials and peer filter; live allocations keep their keys.
    Reload(Reload),
    /// List live allocations (the sessions API); each worker answers on the query's channel.
    Sessions(crate::sessions::SessionsQuery),
    /// End allocations (the sessions API); each worker answers on the order's channel.
    Revoke(crate::sessions::RevokeOrder),
    /// Refuse new Allocates by these users (full usernames or REST names) until then.
    Refuse {
        /// The names.
        names: Vec<String>,
        /// Until when.
        until: Instant,
    },
}

/// The settings a live reload replaces. Its `Debug` output leaves out the secrets.
#[derive(Clone)]
pub struct Reload {
    /// TURN REST API secrets.
    pub secrets: Vec<Vec<u8>>,
    /// Static long-term users.
    pub users: Vec<StaticUser>,
    /// Peer filtering.
    pub peer_filter: PeerFilterConfig,
}

impl std::fmt::Debug for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reload")
            .field(
                "secrets",
                &format_args!("<{} redacted>", self.secrets.len()),
            )
            .field("users", &self.users)
            .field("peer_filter", &self.peer_filter)
            .finish()
    }
}

tern_proto::label_enum! {
    /// Which system call of a worker failed; the `kind` label of `tern_io_errors_total`. A
    /// full socket buffer is not an error (the datagram is dropped, as the network would).
    pub enum IoErrorKind {
        /// A datagram to a peer, out of a relay socket, that the kernel refused.
        SendToPeer => "send_to_peer",
        /// A datagram to a client (a reply or relayed data) that the kernel refused.
        SendToClient => "send_to_client",
        /// A failed receive on a listening or relay socket.
        Receive => "receive",
        /// A datagram to a peer or a client dropped because the socket's send buffer was
        /// full (EAGAIN) or the device's queue was (ENOBUFS, which the kernel reports on the
        /// relay sockets, as they set `IP_RECVERR`).
        SendBufferFull => "send_buffer_full",
        /// An ICMP port unreachable a peer's host answered a relayed datagram with (the peer
        /// is gone); the allocation goes on.
        IcmpPortUnreachable => "icmp_port_unreachable",
        /// Any other ICMP destination unreachable for a relayed datagram.
        IcmpUnreachable => "icmp_unreachable",
        /// Any other error the kernel queued for a relay socket (time exceeded, ...).
        IcmpOther => "icmp_other",
    }
}

tern_proto::label_enum! {
    /// Why a worker closed a stream connection; the `reason` label of
    /// `tern_stream_closes_total`. The first six are the framing errors of
    /// [`tern_wire::stream::StreamError`], at the same index and with the same label.
    pub enum StreamClose {
        /// The first two bits of a message are neither `00` nor `01`.
        BadFirstByte => "bad_first_byte",
        /// A STUN length field that is not a multiple of four.
        UnalignedStunLength => "stun_unaligned_length",
        /// A STUN message longer than the largest frame.
        OversizedStun => "stun_oversized",
        /// A STUN header without the magic cookie.
        BadMagicCookie => "stun_bad_magic_cookie",
        /// A ChannelData message longer than the largest frame.
        OversizedChannelData => "channel_data_oversized",
        /// A ChannelData channel number out of range.
        BadChannelNumber => "bad_channel_number",
        /// The client closed the connection (end of stream or hang-up).
        PeerClosed => "peer_closed",
        /// A read or write failed (reset, broken pipe, ...).
        Reset => "reset",
        /// The connection sent nothing for a while and holds no allocation.
        Idle => "idle",
        /// Accepted beyond `max-connections` (all workers together), and closed at once.
        OverLimit => "over_limit",
        /// TLS failed: a handshake that failed, timed out or was abandoned
        /// ([`TlsFailure`] says why), or a bad record later.
        Tls => "tls",
        /// On a port that requires the PROXY protocol: the header was malformed, missing,
        /// cut short by a hang-up, or not complete within the handshake timeout.
        ProxyHeader => "proxy_header",
        /// Its client IP already had `max-connections-per-ip` connections (all workers
        /// together); closed at once, or once a PROXY header named that client.
        PerIpLimit => "per_ip_limit",
    }
}

tern_proto::label_enum! {
    /// Why a TLS handshake failed; the `reason` label of
    /// `tern_tls_handshake_failures_total`.
    pub enum TlsFailure {
        /// Not finished within the handshake timeout (`tls-handshake-timeout`, 10 s).
        Timeout => "timeout",
        /// A malformed or unexpected message, or nothing in common (versions, suites).
        Protocol => "protocol",
        /// A certificate was refused.
        BadCertificate => "bad_certificate",
        /// The client sent an alert (it refused the server's certificate, say).
        Alert => "alert",
        /// The client hung up (end of stream or reset) in the middle of the handshake, or
        /// anything else.
        Other => "other",
    }
}

/// TLS handshake failures by [`TlsFailure::index`].
pub type TlsFailures = [u64; TlsFailure::ALL.len()];

impl StreamClose {
    /// The close a framing error causes.
    pub fn framing(error: tern_wire::stream::StreamError) -> Self {
        Self::ALL[error.index()]
    }
}

/// Stream connections closed, by [`StreamClose::index`].
pub type StreamCloses = [u64; StreamClose::ALL.len()];

/// I/O errors by [`IoErrorKind::index`].
pub type IoErrors = [u64; IoErrorKind::ALL.len()];

/// What one worker last published.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Its core's counters.
    pub counters: Counters,
    /// Its system calls' errors.
    pub io_errors: IoErrors,
    /// Its stream connections closed, by reason.
    pub stream_closes: StreamCloses,
    /// Its failed TLS handshakes, by reason.
    pub tls_failures: TlsFailures,
    /// Its open stream connections.
    pub connections: usize,
    /// Its core's gauges (allocations, permissions, channels; pool figures are global).
    pub stats: Stats,
    /// When it published (its heartbeat).
    pub at: Option<Instant>,
}

/// How often a worker publishes.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// The handle the admin side holds.
#[derive(Debug, Clone)]
pub struct Workers {
    pub(crate) snapshots: Arc<Vec<Mutex<Snapshot>>>,
    pub(crate) commands: Vec<Sender<Command>>,
    /// Each worker's eventfd, woken after a command is sent.
    pub(crate) wakers: Vec<Arc<Waker>>,
    pub(crate) shared: SharedState,
    /// The usage log's counts (zero without `usage-log`).
    pub(crate) usage: Arc<crate::usage::UsageStats>,
}

/// Counters summed over workers, and gauges.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Summed counters.
    pub counters: Counters,
    /// Summed I/O errors.
    pub io_errors: IoErrors,
    /// Summed stream connection closes.
    pub stream_closes: StreamCloses,
    /// Summed TLS handshake failures.
    pub tls_failures: TlsFailures,
    /// Open stream connections over all workers.
    pub connections: usize,
    /// Live allocations over all workers.
    pub allocations: usize,
    /// Live permissions over all workers.
    pub permissions: usize,
    /// Live channel bindings over all workers.
    pub channels: usize,
    /// Relay ports free, over both families.
    pub free_ports: usize,
    /// Relay ports in the pools, over both families.
    pub pool_size: usize,
    /// Relay ports free and in the pool, by family (by [`tern_proto::Family::index`]).
    pub ports_by_family: tern_proto::PerFamily<(usize, usize)>,
    /// Usage records written and dropped.
    pub usage: crate::usage::UsageCounts,
}

impl Workers {
    /// Sums what the workers last published.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.snapshots.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            t.counters.merge(&s.counters);
            for (a, b) in t.io_errors.iter_mut().zip(s.io_errors) {
                *a += b;
            }
            for (a, b) in t.stream_closes.iter_mut().zip(s.stream_closes) {
                *a += b;
            }
            for (a, b) in t.tls_failures.iter_mut().zip(s.tls_failures) {
                *a += b;
            }
            t.connections += s.connections;
            t.allocations += s.stats.allocations;
            t.permissions += s.stats.permissions;
            t.channels += s.stats.channels;
        }
        t.ports_by_family = self.shared.ports_by_family();
        t.free_ports = t.ports_by_family.iter().map(|p| p.0).sum();
        t.pool_size = t.ports_by_family.iter().map(|p| p.1).sum();
        t.usage = self.usage.counts();
        t
    }

    /// Per worker, how long ago it last published; `None` if it never did.
    pub fn heartbeats(&self, now: Instant) -> Vec<Option<Duration>> {
        self.snapshots
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .at
                    .map(|at| now.saturating_duration_since(at))
            })
            .collect()
    }

    /// Live allocations over all workers, from the shared pool (exact, not a snapshot).
    pub fn allocations(&self) -> usize {
        self.shared.allocations()
    }

    /// Relay ports free now over both families, from the shared pool (exact, not a
    /// snapshot).
    pub fn free_ports(&self) -> usize {
        self.shared.free_ports()
    }

    /// Sends `command` to every worker and wakes it: each acts on it before the next
    /// datagram it reads.
    pub fn send(&self, command: Command) {
        for (c, waker) in self.commands.iter().zip(&self.wakers) {
            if c.send(command.clone()).is_ok() {
                let _ = waker.wake();
            }
        }
    }

    /// Wakes every worker (to see the stop flag at once).
    pub(crate) fn wake_all(&self) {
        for waker in &self.wakers {
            let _ = waker.wake();
        }
    }
}

/// A worker's end of the plumbing.
pub(crate) struct WorkerPort {
    pub snapshots: Arc<Vec<Mutex<Snapshot>>>,
    pub index: usize,
    pub commands: Receiver<Command>,
    /// Readable when commands (or the stop flag) wait.
    pub waker: Arc<Waker>,
    /// Where ended allocations' usage records go.
    pub usage: crate::usage::UsageSink,
}

#[cfg(test)]
mod tests {
    use super::{IoErrorKind, StreamClose};
    use tern_wire::stream::StreamError;

    #[test]
    fn stream_closes_carry_the_framing_errors_at_their_index() {
        for e in StreamError::ALL {
            let close = StreamClose::framing(e);
            assert_eq!((close.index(), close.label()), (e.index(), e.label()));
        }
        for (i, k) in StreamClose::ALL.into_iter().enumerate() {
            assert!(StreamClose::ALL[..i].iter().all(|o| o.label() != k.label()));
        }
    }

    #[test]
    fn io_error_kinds_are_indexed() {
        for (i, k) in IoErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i);
            assert!(IoErrorKind::ALL[..i].iter().all(|o| o.label() != k.label()));
        }
    }
}
