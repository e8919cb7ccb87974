//! The server state machine: datagrams and time in, decisions out.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use tern_wire::{classify, Message, PacketKind};

use crate::allocation::{Allocation, FiveTuple, Traffic};
use crate::auth::Credentials;
use crate::counters::Counters;
use crate::error::DropReason;
use crate::nonce::NonceKey;
use crate::peer_filter::PeerFilter;
use crate::pool::SplitMix64;
use crate::shared::SharedState;
use crate::timer::TimerWheel;
use crate::Config;

/// A hash map keyed with the seeded ahash hasher: keys come from the network and must not be
/// predictable.
#[allow(clippy::disallowed_types)]
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Bytes a caller must leave free before a peer's payload in the buffer passed to
/// [`Server::handle_peer_datagram`], so the ChannelData or Data indication header is written
/// in place.
pub const PEER_HEADROOM: usize = 64;
/// Bytes a caller must leave free after a peer's payload (padding and FINGERPRINT of a Data
/// indication).
pub const PEER_TAILROOM: usize = 12;

const _: () = assert!(
    PEER_HEADROOM >= tern_wire::DATA_INDICATION_HEADROOM
        && PEER_HEADROOM >= tern_wire::CHANNEL_DATA_HEADER_LEN
        && PEER_TAILROOM >= tern_wire::DATA_INDICATION_TAILROOM,
    "room for the longest framing"
);

/// What to do with a datagram a client sent to a listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Send the reply buffer back to the client from the same listening address.
    Reply,
    /// Send `payload` (a range of the received datagram) from relay port `relay_port` to
    /// `peer`.
    Relay {
        /// The relay port of the allocation.
        relay_port: u16,
        /// Where to send.
        peer: SocketAddr,
        /// The application data within the datagram.
        payload: Range<usize>,
    },
    /// Send nothing.
    Drop(DropReason),
}

/// What to do with a datagram a peer sent to a relay port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOutput {
    /// Send `range` of the buffer (now framed as ChannelData or a Data indication) to the
    /// client, from the listening address `server`.
    Forward {
        /// The allocation's 5-tuple: send to `client` from `server`.
        five_tuple: FiveTuple,
        /// The framed message within the buffer.
        range: Range<usize>,
    },
    /// Send nothing.
    Drop(DropReason),
}

crate::label_enum! {
    /// Why an allocation ended; a metrics and log label.
    pub enum EndReason {
        /// Its lifetime ran out.
        Expired => "expired",
        /// The client sent Refresh with LIFETIME 0.
        Deleted => "deleted",
        /// The server is shutting down.
        Shutdown => "shutdown",
    }
}

/// Something the I/O layer may want to log or count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An allocation was created.
    AllocationCreated {
        /// Its 5-tuple.
        five_tuple: FiveTuple,
        /// The advertised relayed transport address.
        relayed: SocketAddr,
        /// The username that authenticated it (never a password or key).
        username: String,
    },
    /// An allocation ended and its relay port went back to the pool.
    AllocationEnded {
        /// Its 5-tuple.
        five_tuple: FiveTuple,
        /// The advertised relayed transport address.
        relayed: SocketAddr,
        /// Why.
        reason: EndReason,
        /// How long it lived.
        duration: Duration,
        /// What it relayed.
        traffic: Traffic,
    },
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Timer {
    Allocation { port: u16, id: u64 },
    Permission { port: u16, id: u64, ip: IpAddr },
    Channel { port: u16, id: u64, number: u16 },
    Reservation { port: u16, token: u64 },
}

/// Counts of live state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Allocations.
    pub allocations: usize,
    /// Permissions over all allocations.
    pub permissions: usize,
    /// Channel bindings over all allocations.
    pub channels: usize,
    /// Relay ports free.
    pub free_ports: usize,
    /// Relay ports in the pool.
    pub pool_size: usize,
}

/// The sans-IO TURN server. See the crate docs for the drive loop.
#[derive(Debug)]
pub struct Server {
    pub(crate) config: Config,
    pub(crate) credentials: Credentials,
    pub(crate) nonces: NonceKey,
    pub(crate) filter: PeerFilter,
    pub(crate) shared: SharedState,
    pub(crate) base_port: u16,
    pub(crate) slots: Vec<Option<Allocation>>,
    pub(crate) by_five_tuple: Map<FiveTuple, u16>,
    pub(crate) timers: TimerWheel<Timer>,
    pub(crate) expired: Vec<Timer>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) rng: SplitMix64,
    pub(crate) next_id: u64,
    pub(crate) counters: Counters,
    /// `Some` while draining: new allocations are refused, with 300 and this alternate
    /// server if there is one, else 508.
    pub(crate) draining: Option<Option<SocketAddr>>,
    pub(crate) allocations: usize,
    pub(crate) permissions: usize,
    pub(crate) channels: usize,
}

impl Server {
    /// A server with `config`, whose clock starts at `now`, seeded with 32 secret random
    /// bytes (nonce key, hash keys, port order, transaction ids of Data indications). It owns
    /// its port pool: the ports in `config.relay_ports`.
    pub fn new(config: Config, now: Instant, seed: [u8; 32]) -> Self {
        let ports = config
            .relay_ports
            .iter()
            .copied()
            .filter(|p| config.relay_port_range.contains(p))
            .collect();
        let shared = SharedState::new(ports, seed_word(&seed, 2) ^ 0x5bd1_e995);
        Self::with_shared(config, now, seed, shared, 0)
    }

    /// One worker's server among several: they share `shared` (ports, reservations,
    /// quotas) and must be given the same `seed`, so that a nonce issued by one is valid at
    /// all; `worker` tells them apart.
    pub fn with_shared(
        config: Config,
        now: Instant,
        seed: [u8; 32],
        shared: SharedState,
        worker: u32,
    ) -> Self {
        let word = |i: usize| seed_word(&seed, i);
        let mut key_rng = SplitMix64::new(word(1) ^ word(3).rotate_left(29));
        let mut nonce_key = [0u8; 32];
        for chunk in nonce_key.chunks_mut(8) {
            chunk.copy_from_slice(&key_rng.next_u64().to_le_bytes());
        }
        let rng = SplitMix64::new(
            word(0)
                ^ word(3).rotate_left(17)
                ^ u64::from(worker).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let hasher = ahash::RandomState::with_seeds(word(0), word(1), word(2), word(3));
        let base_port = *config.relay_port_range.start();
        let span = usize::from(*config.relay_port_range.end() - base_port) + 1;
        Self {
            credentials: Credentials::new(&config.realm, &config.auth_secrets, &config.users),
            nonces: NonceKey::new(nonce_key),
            filter: PeerFilter::new(config.peer_filter.clone()),
            shared,
            base_port,
            slots: (0..span).map(|_| None).collect(),
            by_five_tuple: Map::with_hasher(hasher),
            timers: TimerWheel::new(now),
            expired: Vec::new(),
            events: VecDeque::new(),
            rng,
            next_id: 1,
            counters: Counters::default(),
            draining: None,
            allocations: 0,
            permissions: 0,
            channels: 0,
            config,
        }
    }

    /// The state shared with other workers.
    pub fn shared(&self) -> &SharedState {
        &self.shared
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counts of this core's live state, without the pool figures (which would take the
    /// shared lock).
    pub fn stats_local(&self) -> Stats {
        Stats {
            allocations: self.allocations,
            permissions: self.permissions,
            channels: self.channels,
            free_ports: 0,
            pool_size: 0,
        }
    }

    /// Counts of live state.
    pub fn stats(&self) -> Stats {
        Stats {
            allocations: self.allocations,
            permissions: self.permissions,
            channels: self.channels,
            free_ports: self.shared.free_ports(),
            pool_size: self.shared.pool_size(),
        }
    }

    /// Handles a datagram `data` from a client on `five_tuple` at monotonic time `now` and
    /// wall-clock Unix second `wall`. A reply, if any, is written into `reply`.
    pub fn handle_client_datagram(
        &mut self,
        now: Instant,
        wall: u64,
        five_tuple: FiveTuple,
        data: &[u8],
        reply: &mut Vec<u8>,
    ) -> ClientOutput {
        let out = match classify(data) {
            PacketKind::ChannelData => self.handle_client_channel_data(now, five_tuple, data),
            PacketKind::Stun => match Message::parse(data) {
                Ok(msg) => self.handle_stun(now, wall, five_tuple, &msg, reply),
                Err(_) => ClientOutput::Drop(DropReason::Malformed),
            },
            PacketKind::Other => ClientOutput::Drop(DropReason::Malformed),
        };
        if let ClientOutput::Drop(reason) = out {
            self.counters.drop(reason);
        }
        out
    }

    /// Stops accepting new allocations (graceful drain): Allocate is answered 300 Try
    /// Alternate naming `alternate`, or 508 without one. Existing allocations keep relaying
    /// and can be refreshed or deleted.
    pub fn drain(&mut self, alternate: Option<SocketAddr>) {
        self.draining = Some(alternate);
    }

    /// Whether [`Server::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.is_some()
    }

    /// Replaces the credentials and the peer filter (a live reload). Allocations that exist
    /// keep the key they authenticated with, so they keep working even when their secret
    /// or user is gone; new allocations need the new credentials. Permissions already granted
    /// stay until they expire.
    pub fn reload(
        &mut self,
        secrets: Vec<Vec<u8>>,
        users: Vec<crate::StaticUser>,
        peer_filter: crate::PeerFilterConfig,
    ) {
        self.credentials = Credentials::new(&self.config.realm, &secrets, &users);
        self.filter = PeerFilter::new(peer_filter.clone());
        self.config.auth_secrets = secrets;
        self.config.users = users;
        self.config.peer_filter = peer_filter;
    }

    /// What this core has counted since it started.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn allocation_by_five_tuple_mut(
        &mut self,
        five_tuple: &FiveTuple,
    ) -> Option<&mut Allocation> {
        let port = *self.by_five_tuple.get(five_tuple)?;
        self.slot_mut(port)
    }

    /// The allocation on `port`, which the caller knows exists.
    pub(crate) fn slot(&self, port: u16) -> &crate::allocation::Allocation {
        self.slots[usize::from(port.wrapping_sub(self.base_port))]
            .as_ref()
            .expect("allocation exists")
    }

    #[inline]
    pub(crate) fn slot_mut(&mut self, port: u16) -> Option<&mut Allocation> {
        let idx = usize::from(port.wrapping_sub(self.base_port));
        self.slots.get_mut(idx)?.as_mut()
    }

    /// When [`Server::handle_timeout`] should next be called, if anything is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_tick()
    }

    /// Expires allocations, permissions and channels whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.expired);
        self.timers.expire(now, &mut due);
        for timer in due.drain(..) {
            self.expire_one(now, timer);
        }
        self.expired = due;
    }

    fn expire_one(&mut self, now: Instant, timer: Timer) {
        let (port, id) = match timer {
            Timer::Allocation { port, id }
            | Timer::Permission { port, id, .. }
            | Timer::Channel { port, id, .. } => (port, id),
            Timer::Reservation { port, token } => {
                self.shared.expire_reservation(token, port);
                return;
            }
        };
        let Some(alloc) = self.slot_mut(port).filter(|a| a.id == id) else {
            return; // The allocation ended before its timers.
        };
        match timer {
            Timer::Reservation { .. } => unreachable!("handled above"),
            Timer::Allocation { .. } => {
                if alloc.expires <= now {
                    self.end_allocation(port, now, EndReason::Expired);
                } else {
                    let at = alloc.expires;
                    self.timers.insert(at, timer);
                }
            }
            Timer::Permission { ip, .. } => {
                let Some(i) = alloc.permissions.iter().position(|p| p.ip == ip) else {
                    return;
                };
                if alloc.permissions[i].expires <= now {
                    alloc.permissions.swap_remove(i);
                    self.permissions -= 1;
                } else {
                    let at = alloc.permissions[i].expires;
                    self.timers.insert(at, timer);
                }
            }
            Timer::Channel { number, .. } => {
                let Some(i) = alloc.channels.iter().position(|c| c.number.get() == number) else {
                    return;
                };
                if alloc.channels[i].expires <= now {
                    alloc.channels.swap_remove(i);
                    self.channels -= 1;
                } else {
                    let at = alloc.channels[i].expires;
                    self.timers.insert(at, timer);
                }
            }
        }
    }

    /// Ends the allocation on `port`, returns the port to the pool and queues an event.
    pub(crate) fn end_allocation(&mut self, port: u16, now: Instant, reason: EndReason) {
        let idx = usize::from(port.wrapping_sub(self.base_port));
        let Some(alloc) = self.slots.get_mut(idx).and_then(Option::take) else {
            return;
        };
        self.by_five_tuple.remove(&alloc.five_tuple);
        self.shared.end(&alloc.username, port);
        self.counters.ended(reason);
        self.allocations -= 1;
        self.permissions -= alloc.permissions.len();
        self.channels -= alloc.channels.len();
        self.events.push_back(Event::AllocationEnded {
            five_tuple: alloc.five_tuple,
            relayed: SocketAddr::new(self.config.relayed_ip, port),
            reason,
            duration: now.saturating_duration_since(alloc.created),
            traffic: alloc.traffic,
        });
    }

    /// Ends every allocation (the process is stopping); their events follow.
    pub fn shutdown(&mut self, now: Instant) {
        let ports: Vec<u16> = self.slots.iter().flatten().map(|a| a.relay_port).collect();
        for port in ports {
            self.end_allocation(port, now, EndReason::Shutdown);
        }
        self.shared.drop_reservations();
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

fn seed_word(seed: &[u8; 32], i: usize) -> u64 {
    u64::from_le_bytes(seed[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}
