//! One worker's writer of the fast path's maps: an entry per channel the core says may be
//! relayed (`ChannelBound`), removed on `ChannelUnbound`, and the counters folded back into
//! the core.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_proto::{BoundChannel, Event, FiveTuple, PathCount, Server, Transport};
use tracing::{debug, warn};

use super::maps::Entry;
use super::Shared;

/// How often the counters of live entries are folded into the core (a map read per entry,
/// so not every publish).
const FOLD_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Live {
    bound: BoundChannel,
    entry: Entry,
    /// What the entry had relayed when last folded.
    folded: (PathCount, PathCount),
}

/// One worker's side of the fast path.
#[derive(Debug)]
pub struct Feed {
    shared: Shared,
    live: HashMap<(FiveTuple, u16), Live>,
    /// Counts of entries whose allocation had ended when they were removed, for its
    /// `AllocationEnded` event, which follows in the same drain of the queue.
    ended: HashMap<FiveTuple, (PathCount, PathCount)>,
    folded: Option<Instant>,
}

fn delta(now: PathCount, then: PathCount) -> PathCount {
    PathCount {
        packets: now.packets.saturating_sub(then.packets),
        bytes: now.bytes.saturating_sub(then.bytes),
    }
}

impl Feed {
    /// A writer for the attached program `shared`.
    pub fn new(shared: Shared) -> Self {
        Self {
            shared,
            live: HashMap::new(),
            ended: HashMap::new(),
            folded: None,
        }
    }

    /// The program's view of `b`, when it can relay it: UDP from a specific listening
    /// address, a relayed address of a family with a specific relay address, and client,
    /// relay and peer all of one family. Mixed families (an IPv4 client with an IPv6
    /// relayed address, RFC 8656's ADDITIONAL-ADDRESS-FAMILY) would need the packet's IP
    /// version changed on the way: userspace relays them.
    fn entry(&self, b: &BoundChannel) -> Option<Entry> {
        if !matches!(b.five_tuple.transport, Transport::Udp { .. }) {
            return None;
        }
        let relay_ip = self.shared.relay_ips.get(b.relayed.family)?;
        Entry::new(
            b.five_tuple.client,
            b.five_tuple.server,
            b.number.get(),
            SocketAddr::new(relay_ip, b.relayed.port),
            b.peer,
        )
    }

    /// `Output::ChannelBound`: the program relays `b` from now on.
    pub fn bound(&mut self, core: &mut Server, now: Instant, b: BoundChannel) {
        let Some(entry) = self.entry(&b) else {
            return;
        };
        let key = (b.five_tuple, b.number.get());
        if self.live.contains_key(&key) {
            // Not expected (one unbind per bind), but never lose counts.
            self.unbound(core, now, b);
        }
        match self.shared.with(|p| p.insert(&entry)) {
            Ok(()) => {
                self.live.insert(
                    key,
                    Live {
                        bound: b,
                        entry,
                        folded: Default::default(),
                    },
                );
            }
            Err(e) => {
                // The userspace path relays it as before.
                self.shared.with(|p| p.remove(&entry));
                warn!(error = %e, "xdp: cannot add a channel; userspace relays it");
            }
        }
    }

    /// `Output::ChannelUnbound`: the program stops relaying `b`; what it relayed since the
    /// last fold goes to the core (or to the allocation's end event).
    pub fn unbound(&mut self, core: &mut Server, now: Instant, b: BoundChannel) {
        let Some(live) = self.live.remove(&(b.five_tuple, b.number.get())) else {
            return;
        };
        let (to_peers, to_client) = self.shared.with(|p| p.remove(&live.entry));
        let (to_peers, to_client) = (
            delta(to_peers, live.folded.0),
            delta(to_client, live.folded.1),
        );
        if !core.handle_fast_path_traffic(now, &live.bound, to_peers, to_client) {
            let e = self.ended.entry(b.five_tuple).or_default();
            e.0.packets += to_peers.packets;
            e.0.bytes += to_peers.bytes;
            e.1.packets += to_client.packets;
            e.1.bytes += to_client.bytes;
        }
    }

    /// Adds what the fast path relayed for an ended allocation to its event.
    pub fn complete(&mut self, event: &mut Event) {
        if let Event::AllocationEnded {
            five_tuple,
            traffic,
            ..
        } = event
        {
            if let Some((to_peers, to_client)) = self.ended.remove(five_tuple) {
                traffic.add_fast_path(to_peers, to_client);
            }
        }
    }

    /// Every [`FOLD_EVERY`]: folds what live entries relayed into the core's counters and
    /// their allocations' traffic.
    pub fn fold(&mut self, core: &mut Server, now: Instant) {
        if self
            .folded
            .is_some_and(|t| now.saturating_duration_since(t) < FOLD_EVERY)
        {
            return;
        }
        self.folded = Some(now);
        let shared = &self.shared;
        shared.with(|p| {
            for live in self.live.values_mut() {
                let counts = p.counts(&live.entry);
                let (to_peers, to_client) = (
                    delta(counts.0, live.folded.0),
                    delta(counts.1, live.folded.1),
                );
                live.folded = counts;
                if to_peers.packets + to_client.packets > 0
                    && !core.handle_fast_path_traffic(now, &live.bound, to_peers, to_client)
                {
                    debug!("xdp: an entry outlived its allocation");
                }
            }
        });
    }
}
