//! What the rest of the process sees of the workers: their published counters and gauges
//! (copied out of each core about every 100 ms, so scraping takes no lock a packet waits
//! for), their heartbeats, and the commands they take (drain, reload).

use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_proto::{Counters, PeerFilterConfig, SharedState, StaticUser, Stats};

/// A command to every worker.
#[derive(Debug, Clone)]
pub enum Command {
    /// Refuse new allocations (300 with this alternate server, or 508); keep relaying.
    Drain(Option<SocketAddr>),
    /// Replace credentials and peer filter; live allocations keep their keys.
    Reload(Reload),
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

/// What one worker last published.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Its core's counters.
    pub counters: Counters,
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
    pub(crate) shared: SharedState,
}

/// Counters summed over workers, and gauges.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Summed counters.
    pub counters: Counters,
    /// Live allocations over all workers.
    pub allocations: usize,
    /// Live permissions over all workers.
    pub permissions: usize,
    /// Live channel bindings over all workers.
    pub channels: usize,
    /// Relay ports free.
    pub free_ports: usize,
    /// Relay ports in the pool.
    pub pool_size: usize,
}

impl Workers {
    /// Sums what the workers last published.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.snapshots.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            t.counters.merge(&s.counters);
            t.allocations += s.stats.allocations;
            t.permissions += s.stats.permissions;
            t.channels += s.stats.channels;
        }
        t.free_ports = self.shared.free_ports();
        t.pool_size = self.shared.pool_size();
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

    /// Sends `command` to every worker; they act on it within about 100 ms.
    pub fn send(&self, command: Command) {
        for c in &self.commands {
            let _ = c.send(command.clone());
        }
    }
}

/// A worker's end of the plumbing.
pub(crate) struct WorkerPort {
    pub snapshots: Arc<Vec<Mutex<Snapshot>>>,
    pub index: usize,
    pub commands: Receiver<Command>,
}
