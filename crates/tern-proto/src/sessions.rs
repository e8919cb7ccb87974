//! What an operator sees and does: the live allocations as records ([`Server::sessions`]),
//! and revocation ([`Server::revoke`]), which ends allocations at once and may refuse their
//! user's new Allocates for a while.
//!
//! Neither touches the relay path: records are read from what the allocations already keep,
//! between batches, when the I/O layer asks.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::addr::FiveTuple;
use crate::allocation::Traffic;
use crate::auth::{quota_name, rest_expiry};
use crate::output::EndReason;
use crate::server::{Map, Server};
use crate::slab::AllocationId;

/// The most user names a core refuses at once; past it, revoking with a refusal period drops
/// the names whose period ends first.
pub const MAX_REFUSED: usize = 10_000;

/// Which allocations [`Server::sessions`] lists: those that match every filter given.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionFilter<'a> {
    /// The full username, or the `<name>` part of a REST username `<expiry>:<name>`.
    pub user: Option<&'a str>,
    /// The client's IP (of the 5-tuple).
    pub client_ip: Option<IpAddr>,
}

impl SessionFilter<'_> {
    fn matches(&self, username: &str, five_tuple: &FiveTuple) -> bool {
        self.user.is_none_or(|u| user_matches(username, u))
            && self
                .client_ip
                .is_none_or(|ip| five_tuple.client.ip().to_canonical() == ip.to_canonical())
    }
}

/// Whether `username` is `user`, or a REST username whose `<name>` is `user`.
fn user_matches(username: &str, user: &str) -> bool {
    username == user || quota_name(username) == user
}

/// One live allocation as the sessions API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its handle: stable for its life, unique within the core.
    pub id: AllocationId,
    /// The username that authenticated it.
    pub username: String,
    /// Its 5-tuple (client address and transport).
    pub five_tuple: FiveTuple,
    /// The advertised relayed transport address (of a dual allocation, the IPv4 one).
    pub relayed: SocketAddr,
    /// Of a dual allocation, the IPv6 relayed transport address.
    pub additional: Option<SocketAddr>,
    /// When it was created.
    pub created: Instant,
    /// When it expires unless refreshed (the latest of its families).
    pub expires: Instant,
    /// The latest of its creation, its last request and its last relayed packet.
    pub last_activity: Instant,
    /// Permissions it holds.
    pub permissions: usize,
    /// Channels bound on it.
    pub channels: usize,
    /// What it relayed so far.
    pub traffic: Traffic,
}

impl Session {
    /// The `<name>` part of a REST username `<expiry>:<name>`, if the username has one.
    pub fn rest_name(&self) -> Option<&str> {
        rest_expiry(&self.username)?;
        self.username.split_once(':').map(|(_, name)| name)
    }
}

/// Which allocations [`Server::revoke`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoke<'a> {
    /// Every allocation of a user: the full username, or the `<name>` of REST usernames.
    User(&'a str),
    /// The allocation with this handle.
    Id(AllocationId),
    /// Every allocation whose client has this IP.
    ClientIp(IpAddr),
}

/// User names refused on Allocate until a time. Kept apart from the credentials, so a reload
/// keeps it.
#[derive(Debug)]
pub(crate) struct RefusedUsers {
    until: Map<Box<str>, Instant>,
}

impl RefusedUsers {
    pub fn new(hasher: ahash::RandomState) -> Self {
        Self {
            until: Map::with_hasher(hasher),
        }
    }

    /// Refuses `name` until `until` (or later, if it already was).
    fn insert(&mut self, name: &str, until: Instant, now: Instant) {
        if let Some(t) = self.until.get_mut(name) {
            *t = (*t).max(until);
            return;
        }
        if self.until.len() >= MAX_REFUSED {
            self.until.retain(|_, t| *t > now);
        }
        while self.until.len() >= MAX_REFUSED {
            let first = self
                .until
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(n, _)| n.clone())
                .expect("the map is full");
            self.until.remove(&first);
        }
        self.until.insert(name.into(), until);
    }

    /// Whether `username` (by its full name or its REST name) is refused at `now`; drops
    /// the entry it finds expired.
    fn refuses(&mut self, username: &str, now: Instant) -> bool {
        if self.until.is_empty() {
            return false;
        }
        let name = quota_name(username);
        let mut refused = false;
        for n in [username, name] {
            match self.until.get(n) {
                Some(&t) if t > now => refused = true,
                Some(_) => {
                    self.until.remove(n);
                }
                None => {}
            }
        }
        refused
    }

    fn len(&self) -> usize {
        self.until.len()
    }
}

impl Server {
    /// Appends to `out` one record per live allocation that matches `filter`, with a handle
    /// after `after` (a cursor: the last handle of the previous page), in handle order, at
    /// most `limit`. Returns whether more matching allocations follow.
    pub fn sessions(
        &self,
        filter: &SessionFilter<'_>,
        after: Option<AllocationId>,
        limit: usize,
        out: &mut Vec<Session>,
    ) -> bool {
        let mut matching = self
            .allocations
            .iter_after(after)
            .filter(|(_, a)| filter.matches(&a.username, &a.five_tuple));
        for (id, a) in matching.by_ref().take(limit) {
            let (relayed, additional) = self.advertised(a.relayed);
            let expires = a
                .relayed
                .iter()
                .map(|e| a.expires[e.family.index()])
                .max()
                .unwrap_or(a.created);
            out.push(Session {
                id,
                username: a.username.to_string(),
                five_tuple: a.five_tuple,
                relayed,
                additional,
                created: a.created,
                expires,
                last_activity: a.last_activity,
                permissions: a.permissions.len(),
                channels: a.channels.len(),
                traffic: a.traffic,
            });
        }
        matching.next().is_some()
    }

    /// Ends the allocations `selector` names at once, through the normal end path (channels
    /// unbound, relayed endpoints released, then [`crate::Event::AllocationEnded`] with
    /// [`EndReason::Revoked`]); returns their handles and usernames. With `refuse_for`, new Allocates by the
    /// user are answered 403 until `now + refuse_for`: the user the selector names, or for
    /// an id or a client IP the users of the allocations that ended (by their REST name, or
    /// their full static username). The refusal outlives [`Server::reload`].
    pub fn revoke(
        &mut self,
        selector: Revoke<'_>,
        now: Instant,
        refuse_for: Option<Duration>,
    ) -> Vec<(AllocationId, String)> {
        let ids: Vec<(AllocationId, String)> = self
            .allocations
            .iter_after(None)
            .filter(|(id, a)| match selector {
                Revoke::User(user) => user_matches(&a.username, user),
                Revoke::Id(wanted) => *id == wanted,
                Revoke::ClientIp(ip) => {
                    a.five_tuple.client.ip().to_canonical() == ip.to_canonical()
                }
            })
            .map(|(id, a)| (id, a.username.to_string()))
            .collect();
        for (id, _) in &ids {
            self.end_allocation(*id, now, EndReason::Revoked);
        }
        if let Some(period) = refuse_for {
            let until = now + period;
            match selector {
                Revoke::User(user) => self.refused.insert(user, until, now),
                Revoke::Id(_) | Revoke::ClientIp(_) => {
                    for (_, username) in &ids {
                        self.refused.insert(quota_name(username), until, now);
                    }
                }
            }
        }
        ids
    }

    /// Refuses new Allocates by `name` (a full username, or a REST `<name>`) until `until`,
    /// as [`Server::revoke`] does with a period; for an I/O layer whose workers each hold a
    /// core, so that all of them refuse the users one of them revoked.
    pub fn refuse(&mut self, name: &str, until: Instant, now: Instant) {
        self.refused.insert(name, until, now);
    }

    /// Whether a new Allocate by `username` is refused at `now` (a revocation's period).
    pub(crate) fn refused(&mut self, username: &str, now: Instant) -> bool {
        self.refused.refuses(username, now)
    }

    /// How many user names are refused (some of them perhaps expired, dropped lazily).
    pub fn refused_users(&self) -> usize {
        self.refused.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_expire_lazily_and_stay_bounded() {
        #[allow(clippy::disallowed_methods)] // The origin of virtual time.
        let t0 = Instant::now();
        let mut r = RefusedUsers::new(ahash::RandomState::with_seeds(1, 2, 3, 4));
        r.insert("alice", t0 + Duration::from_secs(10), t0);
        assert!(r.refuses("alice", t0));
        assert!(r.refuses("1700000000:alice", t0), "her REST usernames too");
        assert!(!r.refuses("bob", t0));
        assert!(!r.refuses("alice", t0 + Duration::from_secs(10)));
        assert_eq!(r.len(), 0, "the expired entry was dropped");
        for i in 0..MAX_REFUSED + 5 {
            let until = t0 + Duration::from_secs(100 + i as u64);
            r.insert(&format!("u{i}"), until, t0);
        }
        assert_eq!(r.len(), MAX_REFUSED);
        assert!(!r.refuses("u0", t0), "the earliest to end made room");
        assert!(r.refuses(&format!("u{}", MAX_REFUSED + 4), t0));
    }
}
