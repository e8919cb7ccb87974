//! Time and endings: the timer wheel's expiries, and how an allocation ends (expired,
//! deleted, its connection closed or shut down) with its outputs in order.

use std::net::IpAddr;
use std::time::Instant;

use crate::addr::{Family, FiveTuple};
use crate::output::{EndReason, Event, Output};
use crate::server::{Server, Timer};
use crate::slab::AllocationId;

impl Server {
    /// When [`Server::handle_timeout`] should next be called, if anything is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_tick()
    }

    /// Expires allocations, permissions and channels whose time is up; their outputs are
    /// queued.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.expired);
        self.timers.expire(now, &mut due);
        for timer in due.drain(..) {
            self.expire_one(now, timer);
        }
        self.expired = due;
    }

    fn expire_one(&mut self, now: Instant, timer: Timer) {
        let id = match timer {
            Timer::Allocation { id, .. }
            | Timer::Permission { id, .. }
            | Timer::Channel { id, .. } => id,
            Timer::Reservation { token } => {
                self.shared.expire_reservation(token);
                return;
            }
        };
        let Some(alloc) = self.allocations.get_mut(id) else {
            return; // The allocation ended before its timers.
        };
        match timer {
            Timer::Reservation { .. } => unreachable!("handled above"),
            Timer::Allocation { family, .. } => {
                if alloc.relayed.get(family).is_none() {
                    return; // That family was deleted before its time.
                }
                let at = alloc.expires[family.index()];
                let all_due = alloc
                    .relayed
                    .iter()
                    .all(|e| alloc.expires[e.family.index()] <= now);
                if all_due {
                    // Families that run out together end as one allocation.
                    self.end_allocation(id, now, EndReason::Expired);
                } else if at <= now {
                    self.end_relayed(id, family, now, EndReason::Expired);
                } else {
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
                    // Channels to `ip` stay bound but relay nothing until a new
                    // permission: a fast path must stop relaying them now.
                    for &channel in alloc.channels.iter().filter(|c| c.peer.ip() == ip) {
                        self.out
                            .push(Output::ChannelUnbound(alloc.bound(id, channel)));
                    }
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
                    let channel = alloc.channels.swap_remove(i);
                    let bound = alloc.bound(id, channel);
                    self.channels -= 1;
                    // Without a permission it was unbound for a fast path already.
                    if alloc.has_permission(channel.peer.ip()) {
                        self.out.push(Output::ChannelUnbound(bound));
                    }
                } else {
                    let at = alloc.channels[i].expires;
                    self.timers.insert(at, timer);
                }
            }
        }
    }

    /// Ends the relayed endpoint of `family` of allocation `id`; when it is the last one, the
    /// whole allocation ([`Server::end_allocation`]). Otherwise (one family of a dual
    /// allocation) the permissions and channels of that family go with it, its channels are
    /// unbound, its endpoint released and its port returned to its pool, then the event
    /// says so; the other family relays on.
    pub(crate) fn end_relayed(
        &mut self,
        id: AllocationId,
        family: Family,
        now: Instant,
        reason: EndReason,
    ) {
        let Some(alloc) = self.allocations.get_mut(id) else {
            return;
        };
        if alloc.relayed.len() <= 1 {
            self.end_allocation(id, now, reason);
            return;
        }
        let Some(endpoint) = alloc.relayed.get(family) else {
            return;
        };
        let in_family = |ip: IpAddr| Family::of(ip) == family;
        let mut i = 0;
        while i < alloc.channels.len() {
            if in_family(alloc.channels[i].peer.ip()) {
                let channel = alloc.channels.swap_remove(i);
                self.channels -= 1;
                if alloc.has_permission(channel.peer.ip()) {
                    self.out
                        .push(Output::ChannelUnbound(alloc.bound(id, channel)));
                }
            } else {
                i += 1;
            }
        }
        let permissions = alloc.permissions.len();
        alloc.permissions.retain(|p| !in_family(p.ip));
        self.permissions -= permissions - alloc.permissions.len();
        alloc.relayed.remove(family);
        let (five_tuple, transport) = (alloc.five_tuple, alloc.five_tuple.transport);
        let relayed_data = alloc.traffic.relayed();
        self.index_relay(endpoint, None);
        self.release_port(endpoint);
        self.counters.ended(transport, family, reason, relayed_data);
        self.out.push(Output::Release {
            relayed: endpoint,
            allocation: id,
        });
        self.out.push(Output::Event(Event::RelayedAddressEnded {
            five_tuple,
            relayed: self.relayed_addr(endpoint),
            reason,
        }));
    }

    /// Ends allocation `id` and returns its ports to their pools (or holds them for
    /// [`Server::handle_released`]). Its channels are unbound,
    /// then its relayed endpoints released, then the event says it ended: all after
    /// whatever it queued before.
    pub(crate) fn end_allocation(&mut self, id: AllocationId, now: Instant, reason: EndReason) {
        let Some(alloc) = self.allocations.remove(id) else {
            return;
        };
        self.by_five_tuple.remove(&alloc.five_tuple);
        // Ports go back with the quota in one lock, unless the I/O layer must acknowledge
        // their release first (they are held below).
        let freed = match self.unreleased {
            Some(_) => Default::default(),
            None => alloc.relayed,
        };
        self.shared.end(&alloc.username, freed);
        self.permissions -= alloc.permissions.len();
        self.channels -= alloc.channels.len();
        for &channel in &alloc.channels {
            if alloc.has_permission(channel.peer.ip()) {
                self.out
                    .push(Output::ChannelUnbound(alloc.bound(id, channel)));
            }
        }
        for relayed in alloc.relayed.iter() {
            self.counters.ended(
                alloc.five_tuple.transport,
                relayed.family,
                reason,
                alloc.traffic.relayed(),
            );
            self.index_relay(relayed, None);
            if let Some(unreleased) = &mut self.unreleased {
                unreleased.push(relayed);
            }
            self.out.push(Output::Release {
                relayed,
                allocation: id,
            });
        }
        let (relayed, additional) = self.advertised(alloc.relayed);
        self.out.push(Output::Event(Event::AllocationEnded {
            five_tuple: alloc.five_tuple,
            relayed,
            additional,
            username: alloc.username.into_string(),
            reason,
            duration: now.saturating_duration_since(alloc.created),
            traffic: alloc.traffic,
        }));
    }

    /// The stream connection that carried `five_tuple` closed: its allocation, if it has one,
    /// ends at once ([`EndReason::ConnectionClosed`]) and its port goes back to the pool. The
    /// outputs are queued as for any end: channels unbound, relayed endpoints released, then
    /// the event. A 5-tuple without an allocation queues nothing.
    pub fn handle_connection_closed(&mut self, now: Instant, five_tuple: FiveTuple) {
        if let Some(&id) = self.by_five_tuple.get(&five_tuple) {
            self.end_allocation(id, now, EndReason::ConnectionClosed);
        }
    }

    /// Ends every allocation (the process is stopping); their outputs are queued.
    pub fn shutdown(&mut self, now: Instant) {
        for id in self.allocations.ids() {
            self.end_allocation(id, now, EndReason::Shutdown);
        }
        self.shared.drop_reservations();
    }
}
