//! The server state machine: datagrams and time in, decisions and the output queue out.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tern_wire::{classify, Message, PacketKind};

use crate::addr::{Family, FiveTuple, RelayEndpoint};
use crate::allocation::Allocation;
use crate::auth::Credentials;
use crate::counters::Counters;
use crate::error::DropReason;
use crate::nonce::NonceKey;
use crate::output::{ClientOutput, Output, OutputQueue};
use crate::peer_filter::PeerFilter;
use crate::pool::SplitMix64;
use crate::sessions::RefusedUsers;
use crate::shared::SharedState;
use crate::slab::{AllocationId, Slab};
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

/// What a timer of the wheel is for. Allocation timers name the allocation by its handle, so
/// a timer that outlives its allocation finds nothing, even when the slot was reused.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Timer {
    /// The relayed endpoint of `family` of allocation `id` (each family of a dual
    /// allocation has its own lifetime).
    Allocation {
        id: AllocationId,
        family: Family,
    },
    Permission {
        id: AllocationId,
        ip: IpAddr,
    },
    Channel {
        id: AllocationId,
        number: u16,
    },
    /// The ports held for a RESERVATION-TOKEN (a pool matter: no allocation holds them yet).
    Reservation {
        token: u64,
    },
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
    /// The allocations, under their handles.
    pub(crate) allocations: Slab<Allocation>,
    /// The client side's index: one hash lookup per client datagram.
    pub(crate) by_five_tuple: Map<FiveTuple, AllocationId>,
    /// The peer side's index: per family, per relay port from `base_port`, the allocation
    /// relayed there. One array index per peer datagram, no hashing.
    pub(crate) by_relay: [Vec<Option<AllocationId>>; Family::ALL.len()],
    pub(crate) base_port: u16,
    pub(crate) timers: TimerWheel<Timer>,
    pub(crate) expired: Vec<Timer>,
    pub(crate) out: OutputQueue,
    /// An allocation a Refresh with LIFETIME 0 deletes once its reply is queued: all of it,
    /// or the relayed endpoint of one family (REQUESTED-ADDRESS-FAMILY).
    pub(crate) ending: Option<(AllocationId, Option<Family>)>,
    pub(crate) rng: SplitMix64,
    pub(crate) counters: Counters,
    /// `Some` while draining: new allocations are refused, with 300 and this alternate
    /// server if there is one, else 508.
    pub(crate) draining: Option<Option<SocketAddr>>,
    pub(crate) permissions: usize,
    pub(crate) channels: usize,
    /// Users an operator revoked with a refusal period ([`Server::revoke`]).
    pub(crate) refused: RefusedUsers,
    /// `Some` after [`Server::defer_port_release`]: relayed endpoints that ended, whose
    /// [`Output::Release`] the I/O layer has not acknowledged yet; their ports are not in
    /// the pool.
    pub(crate) unreleased: Option<Vec<RelayEndpoint>>,
}

impl Server {
    /// A server with `config`, whose clock starts at `now`, seeded with 32 secret random
    /// bytes (nonce key, hash keys, port order, transaction ids of Data indications). It owns
    /// its port pools: the ports in `config.relay_ports`.
    pub fn new(config: Config, now: Instant, seed: [u8; 32]) -> Self {
        let ports = config.relay_ports.each_ref().map(|ports| {
            ports
                .iter()
                .copied()
                .filter(|p| config.relay_port_range.contains(p))
                .collect()
        });
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
        // Only the families the server relays in have relay ports.
        let by_relay = Family::ALL.map(|f| {
            let len = if config.relayed_ip(f).is_some() {
                span
            } else {
                0
            };
            vec![None; len]
        });
        Self {
            credentials: Credentials::new(&config.realm, &config.auth_secrets, &config.users),
            nonces: NonceKey::new(nonce_key),
            filter: PeerFilter::new(config.peer_filter.clone()),
            shared,
            allocations: Slab::new(),
            by_five_tuple: Map::with_hasher(hasher.clone()),
            refused: RefusedUsers::new(hasher),
            by_relay,
            base_port,
            timers: TimerWheel::new(now),
            expired: Vec::new(),
            out: OutputQueue::default(),
            ending: None,
            rng,
            counters: Counters::default(),
            draining: None,
            permissions: 0,
            channels: 0,
            unreleased: None,
            config,
        }
    }

    /// From now on, a relayed endpoint that ends goes back to its port pool only when the
    /// I/O layer acknowledges its [`Output::Release`] with [`Server::handle_released`],
    /// not when the core queues it. A fast path whose entries name relay ports (XDP) needs
    /// this: it removes them on the [`Output::ChannelUnbound`]s that come before the
    /// `Release`, and no other allocation, on any worker, may get the port while one is
    /// left. Without it (the default) ports are free at once.
    pub fn defer_port_release(&mut self) {
        self.unreleased.get_or_insert_with(Vec::new);
    }

    /// The I/O layer acted on the [`Output::Release`] of `relayed` (and on every output
    /// before it): after [`Server::defer_port_release`], its port goes back to the pool now.
    /// An endpoint that has no release pending is ignored, so a port is never freed twice.
    pub fn handle_released(&mut self, relayed: RelayEndpoint) {
        let Some(unreleased) = &mut self.unreleased else {
            return;
        };
        if let Some(i) = unreleased.iter().position(|&e| e == relayed) {
            unreleased.swap_remove(i);
            self.shared.release(relayed);
        }
    }

    /// Ports of ended relayed endpoints whose release the I/O layer has not acknowledged
    /// (always 0 without [`Server::defer_port_release`]).
    pub fn unreleased_ports(&self) -> usize {
        self.unreleased.as_ref().map_or(0, Vec::len)
    }

    /// Returns the port of `endpoint`, which just ended, to its pool, or holds it until
    /// [`Server::handle_released`] when releases are deferred.
    pub(crate) fn release_port(&mut self, endpoint: RelayEndpoint) {
        match &mut self.unreleased {
            Some(unreleased) => unreleased.push(endpoint),
            None => self.shared.release(endpoint),
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
            allocations: self.allocations.len(),
            permissions: self.permissions,
            channels: self.channels,
            free_ports: 0,
            pool_size: 0,
        }
    }

    /// Counts of live state.
    pub fn stats(&self) -> Stats {
        Stats {
            free_ports: self.shared.free_ports(),
            pool_size: self.shared.pool_size(),
            ..self.stats_local()
        }
    }

    /// Handles a datagram `data` from a client on `five_tuple` at monotonic time `now` and
    /// wall-clock Unix second `wall`. Relayed data is decided at once; a request's reply is
    /// queued ([`ClientOutput::Reply`]) behind what it depends on.
    pub fn handle_client_datagram(
        &mut self,
        now: Instant,
        wall: u64,
        five_tuple: FiveTuple,
        data: &[u8],
    ) -> ClientOutput {
        let out = match classify(data) {
            PacketKind::ChannelData => self.handle_client_channel_data(now, five_tuple, data),
            PacketKind::Stun => match Message::parse(data) {
                Ok(msg) => self.handle_stun(now, wall, five_tuple, &msg),
                Err(_) => ClientOutput::Drop(DropReason::Malformed),
            },
            PacketKind::Other => ClientOutput::Drop(DropReason::Malformed),
        };
        if let ClientOutput::Drop(reason) = out {
            self.counters.drop(reason);
        }
        out
    }

    /// The next output, in order: transmits, relay claims and releases, channel changes and
    /// events. Drain it after every call that may queue (every `handle_*` but the relayed
    /// data paths, and [`Server::shutdown`]) and act on each before the next.
    pub fn poll_output(&mut self) -> Option<Output<'_>> {
        self.out.pop()
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

    /// Counts `n` datagrams the I/O layer dropped after the core decided to send them (a
    /// stream client's full write queue: [`DropReason::ClientBacklog`]), with the core's own
    /// drops.
    pub fn count_drops(&mut self, reason: DropReason, n: u64) {
        self.counters.dropped[reason.index()] += n;
    }

    /// Counts ChannelData that a fast path (XDP) relayed on `channel` since it was last
    /// told: `to_peers` client → peer and `to_client` peer → client, payload bytes. Both go
    /// to the channel counters; to the allocation's [`crate::Traffic`] (and its last
    /// activity) too while it lives. Returns `false` when the allocation has ended: the
    /// caller adds the counts to the [`crate::Event::AllocationEnded`] that follows.
    pub fn handle_fast_path_traffic(
        &mut self,
        now: Instant,
        channel: &crate::BoundChannel,
        to_peers: crate::PathCount,
        to_client: crate::PathCount,
    ) -> bool {
        let (t, f) = (
            channel.five_tuple.transport.label().index(),
            channel.relayed.family.index(),
        );
        let [fast_to_peers, fast_to_client] = &mut self.counters.fast_path;
        for (count, add) in [
            (fast_to_peers, to_peers),
            (fast_to_client, to_client),
            (&mut self.counters.channel_to_peer[t][f], to_peers),
            (&mut self.counters.channel_to_client[t][f], to_client),
        ] {
            count.packets += add.packets;
            count.bytes += add.bytes;
        }
        let Some(alloc) = self
            .allocations
            .get_mut(channel.allocation)
            .filter(|a| a.five_tuple == channel.five_tuple)
        else {
            return false;
        };
        alloc.traffic.add_fast_path(to_peers, to_client);
        if to_peers.packets + to_client.packets > 0 {
            alloc.last_activity = now;
        }
        true
    }

    /// What this core has counted since it started.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The allocation of `five_tuple`, if it has one.
    #[inline]
    pub(crate) fn allocation_by_five_tuple_mut(
        &mut self,
        five_tuple: &FiveTuple,
    ) -> Option<&mut Allocation> {
        let id = *self.by_five_tuple.get(five_tuple)?;
        self.allocations.get_mut(id)
    }

    /// Records that `relayed` is `id`'s (or nobody's, with `None`).
    pub(crate) fn index_relay(&mut self, relayed: RelayEndpoint, id: Option<AllocationId>) {
        let index = usize::from(relayed.port.wrapping_sub(self.base_port));
        if let Some(slot) = self.by_relay[relayed.family.index()].get_mut(index) {
            *slot = id;
        }
    }

    /// The allocation `id`, which the caller knows exists.
    pub(crate) fn allocation(&self, id: AllocationId) -> &Allocation {
        self.allocations.get(id).expect("allocation exists")
    }

    /// The allocation `id`, which the caller knows exists.
    pub(crate) fn allocation_mut(&mut self, id: AllocationId) -> &mut Allocation {
        self.allocations.get_mut(id).expect("allocation exists")
    }

    /// The advertised relayed transport address of `relayed`, one of this server's.
    pub(crate) fn relayed_addr(&self, relayed: RelayEndpoint) -> SocketAddr {
        let ip = self
            .config
            .relayed_ip(relayed.family)
            .expect("endpoints exist only in families with a relayed IP");
        SocketAddr::new(ip, relayed.port)
    }
}

fn seed_word(seed: &[u8; 32], i: usize) -> u64 {
    u64::from_le_bytes(seed[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}
