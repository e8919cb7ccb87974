//! The operator's operations of the `core` target: revocation ([`tern_proto::Server::revoke`]
//! on every worker, then the refusal spread to all of them, as `tern-server` does) and the
//! sessions listing ([`tern_proto::Server::sessions`], page by page), each checked against
//! the model.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tern_proto::auth::quota_name;
use tern_proto::{AllocationId, Revoke, SessionFilter, Traffic};

use super::cast::{CLIENTS, CREDENTIALS, VICTIM};
use super::model::{Held, Step};
use super::world::World;

/// How many ended allocations' handles the model keeps, for stale handles and cursors.
pub(crate) const ENDED_KEPT: usize = 8;

/// What a revocation names, resolved from the input.
#[derive(Debug, Clone)]
enum Selector {
    User(String),
    Id(usize, AllocationId),
    Ip(IpAddr),
}

/// Whether an allocation's `username` is `user` or has `user` as its REST `<name>`.
fn user_matches(username: &str, user: &str) -> bool {
    username == user || quota_name(username) == user
}

fn ip_matches(held: &Held, ip: IpAddr) -> bool {
    held.five.client.ip().to_canonical() == ip.to_canonical()
}

impl Selector {
    fn matches(&self, w: usize, held: &Held) -> bool {
        match self {
            Selector::User(u) => user_matches(&held.username, u),
            Selector::Id(iw, id) => *iw == w && held.allocation == *id,
            Selector::Ip(ip) => ip_matches(held, *ip),
        }
    }
}

impl World {
    /// The user of client `client`: its allocation's username, else credential `client`'s;
    /// with `rest_name`, the `<name>` of a REST username.
    fn selected_user(&self, client: u8, rest_name: bool) -> String {
        let five = self.clients[usize::from(client) % CLIENTS].five;
        let name = match self.model.held_by(&five) {
            Some((_, h)) => h.username.clone(),
            None => self.creds[usize::from(client) % CREDENTIALS]
                .username
                .clone(),
        };
        if rest_name {
            quota_name(&name).to_owned()
        } else {
            name
        }
    }

    /// The handle of client `client`'s allocation, else of the last one that ended.
    fn selected_id(&self, client: u8) -> Option<(usize, AllocationId)> {
        let five = self.clients[usize::from(client) % CLIENTS].five;
        match self.model.held_by(&five) {
            Some((_, h)) => Some((h.worker, h.allocation)),
            None => self.model.ended.last().copied(),
        }
    }

    /// Whether `username`'s new Allocates are refused at the current time, as the model
    /// knows from the revocations.
    pub(crate) fn refused(&self, username: &str) -> bool {
        let name = quota_name(username);
        self.model
            .refused
            .iter()
            .any(|(n, until)| (n == username || n == name) && *until > self.now)
    }

    /// An operator revokes what `selector` names on every worker, refusing the users for
    /// `for_secs`. Exactly the matching allocations end, through the end path, with
    /// reason `revoked`; afterwards none matches.
    pub(crate) fn revoke(&mut self, selector: u8, client: u8, for_secs: u16) {
        let secs = u64::from(for_secs % 2048);
        let refuse_for = (secs != 0).then(|| Duration::from_secs(secs));
        let sel = match selector % 4 {
            0 => Selector::User(self.selected_user(client, false)),
            1 => Selector::User(self.selected_user(client, true)),
            2 => match self.selected_id(client) {
                Some((w, id)) => Selector::Id(w, id),
                None => return,
            },
            _ => Selector::Ip(self.clients[usize::from(client) % CLIENTS].five.client.ip()),
        };
        let mut want: Vec<(usize, AllocationId, String)> = self
            .model
            .claimed
            .values()
            .filter(|h| sel.matches(h.worker, h))
            .map(|h| (h.worker, h.allocation, h.username.clone()))
            .collect();
        want.sort();
        let victim = self.clients[VICTIM].five;
        let victim_hit = self
            .model
            .claimed
            .values()
            .any(|h| h.five == victim && sel.matches(h.worker, h));
        let mut ended = Vec::new();
        for w in 0..self.workers.len() {
            let core = match &sel {
                Selector::User(u) => Revoke::User(u),
                Selector::Id(iw, id) if *iw == w => Revoke::Id(*id),
                Selector::Id(..) => continue,
                Selector::Ip(ip) => Revoke::ClientIp(*ip),
            };
            let got = self.workers[w].revoke(core, self.now, refuse_for);
            self.drain(w, &Step::Revoke);
            ended.extend(got.into_iter().map(|(id, u)| (w, id, u)));
        }
        ended.sort();
        assert_eq!(ended, want, "revoke {sel:?} ended other allocations");
        for h in self.model.claimed.values() {
            assert!(
                !sel.matches(h.worker, h),
                "an allocation matching {sel:?} outlived its revocation: {h:?}"
            );
        }
        if victim_hit {
            // An operator may end the victim; it relays no more.
            self.victim.alive = false;
        }
        let Some(period) = refuse_for else {
            return;
        };
        let mut names: Vec<String> = match sel {
            Selector::User(u) => vec![u],
            _ => ended.iter().map(|e| quota_name(&e.2).to_owned()).collect(),
        };
        names.sort();
        names.dedup();
        let until = self.now + period;
        for name in names {
            for server in &mut self.workers {
                server.refuse(&name, until, self.now);
            }
            self.model.refuse(name, until);
        }
    }

    /// An operator lists worker `worker`'s sessions: exactly the live allocations on it that
    /// match the filter and follow the cursor, in handle order, each once across the pages,
    /// at most `limit` a page, each record as the model knows the allocation.
    pub(crate) fn sessions(&mut self, worker: u8, filter: u8, client: u8, limit: u8, cursor: u8) {
        let w = usize::from(worker) % self.workers.len();
        let user = (filter & 1 != 0).then(|| self.selected_user(client, filter & 2 != 0));
        let ip =
            (filter & 4 != 0).then(|| self.clients[usize::from(client) % CLIENTS].five.client.ip());
        let after = match cursor % 3 {
            0 => None,
            1 => self.selected_id(client).map(|(_, id)| id),
            _ => self
                .model
                .ended
                .iter()
                .rev()
                .find(|(ew, _)| *ew == w)
                .map(|e| e.1),
        };
        let limit = usize::from(limit % 8);
        let want: Vec<(AllocationId, u16)> = {
            let mut v: Vec<_> = self
                .model
                .claimed
                .iter()
                .filter(|(_, h)| {
                    h.worker == w
                        && after.is_none_or(|a| h.allocation > a)
                        && user.as_deref().is_none_or(|u| user_matches(&h.username, u))
                        && ip.is_none_or(|ip| ip_matches(h, ip))
                })
                .map(|(p, h)| (h.allocation, *p))
                .collect();
            v.sort();
            v
        };
        let f = SessionFilter {
            user: user.as_deref(),
            client_ip: ip,
        };
        let mut got = Vec::new();
        let mut from = after;
        let mut done = false;
        for _ in 0..want.len() + 2 {
            let mut page = Vec::new();
            let more = self.workers[w].sessions(&f, from, limit, &mut page);
            assert!(
                page.len() <= limit,
                "{} records for a limit of {limit}",
                page.len()
            );
            if limit == 0 {
                assert_eq!(
                    more,
                    !want.is_empty(),
                    "an empty page says whether any match"
                );
                return;
            }
            for s in &page {
                let (port, held) = self
                    .model
                    .claimed
                    .iter()
                    .find(|(_, h)| h.worker == w && h.allocation == s.id)
                    .unwrap_or_else(|| panic!("a session nobody holds: {s:?}"));
                assert_eq!(s.username, held.username);
                assert_eq!(s.five_tuple, held.five);
                assert_eq!(s.relayed, SocketAddr::new(self.relayed_ip, *port));
                assert_eq!(s.additional, None);
                assert!(s.created <= s.last_activity && s.last_activity <= self.now);
                let channels = self
                    .model
                    .channels
                    .iter()
                    .filter(|(cw, c)| *cw == w && c.allocation == s.id)
                    .count();
                assert_eq!(s.channels, channels, "{s:?}");
                let peers = held.peers.len().min(tern_proto::PEERS_COUNTED) as u32;
                let traffic = Traffic {
                    peers,
                    ..held.traffic
                };
                assert_eq!(
                    s.traffic, traffic,
                    "what {s:?} relayed, and its distinct peers"
                );
                got.push((s.id, *port));
            }
            if !more {
                done = true;
                break;
            }
            assert_eq!(page.len(), limit, "a short page says more follow");
            from = page.last().map(|s| s.id);
        }
        assert!(done, "the pages did not end");
        assert_eq!(got, want, "sessions of worker {w} after {after:?}");
    }
}

impl super::model::Model {
    /// Records that `name` is refused until `until` (or later, if it already was).
    pub(crate) fn refuse(&mut self, name: String, until: Instant) {
        match self.refused.iter_mut().find(|(n, _)| *n == name) {
            Some((_, t)) => *t = (*t).max(until),
            None => self.refused.push((name, until)),
        }
    }

    /// Records that an allocation ended, keeping the last [`ENDED_KEPT`].
    pub(crate) fn ended(&mut self, w: usize, id: AllocationId) {
        if self.ended.len() == ENDED_KEPT {
            self.ended.remove(0);
        }
        self.ended.push((w, id));
    }
}
