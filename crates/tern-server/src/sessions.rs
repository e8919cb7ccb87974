//! The sessions API's side of the workers: a listing and a revocation go to every worker
//! through its command queue, each answers from its core between batches, and the replies
//! are gathered here with a timeout. Nothing is added to the per-packet path.
//!
//! An allocation's API id is `<worker>-<slot>-<generation>` ([`SessionId`]): unique within
//! the process's run and stable for the allocation's life. Ids order numerically, worker
//! first, which is the listing's order and makes its cursor.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::{Duration, Instant};

use tern_proto::{AllocationId, Session};

use crate::control::{Command, Workers};

/// How long the workers get to answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// An allocation's id in the API: its worker, slot and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    /// The worker whose core holds it.
    pub worker: u32,
    /// Its slot in that core.
    pub slot: u32,
    /// The slot's generation.
    pub generation: u32,
}

impl SessionId {
    /// The id of `id` in `worker`.
    pub fn new(worker: u32, id: AllocationId) -> Self {
        Self {
            worker,
            slot: id.slot() as u32,
            generation: id.generation(),
        }
    }

    /// The core's handle (`None` for a generation no handle has).
    pub fn allocation(self) -> Option<AllocationId> {
        AllocationId::from_parts(self.slot, self.generation)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.worker, self.slot, self.generation)
    }
}

impl FromStr for SessionId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("not an allocation id (`<worker>-<slot>-<generation>`): {s:?}");
        let mut parts = s.split('-').map(|p| p.parse::<u32>().map_err(|_| bad()));
        let (Some(worker), Some(slot), Some(generation), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Self {
            worker: worker?,
            slot: slot?,
            generation: generation?,
        })
    }
}

/// What a listing asks each worker.
#[derive(Debug, Clone)]
pub struct SessionsQuery {
    /// Full username or REST name.
    pub user: Option<String>,
    /// Client IP.
    pub client_ip: Option<IpAddr>,
    /// Only ids after this one.
    pub after: Option<SessionId>,
    /// At most this many.
    pub limit: usize,
    /// Where each worker answers.
    pub reply: SyncSender<WorkerSessions>,
}

/// One worker's answer to a listing.
#[derive(Debug)]
pub struct WorkerSessions {
    /// The worker.
    pub worker: u32,
    /// Its matching allocations, in id order, at most the limit.
    pub sessions: Vec<Session>,
    /// Whether more matched beyond the limit.
    pub more: bool,
}

/// Which allocations a revocation ends (the owned form of [`tern_proto::Revoke`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeSelector {
    /// Full username or REST name.
    User(String),
    /// One allocation.
    Id(SessionId),
    /// Every allocation of a client IP.
    ClientIp(IpAddr),
}

impl fmt::Display for RevokeSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(u) => write!(f, "user={u}"),
            Self::Id(id) => write!(f, "id={id}"),
            Self::ClientIp(ip) => write!(f, "client_ip={ip}"),
        }
    }
}

/// What a revocation asks each worker.
#[derive(Debug, Clone)]
pub struct RevokeOrder {
    /// Which allocations end.
    pub selector: RevokeSelector,
    /// Where each worker answers.
    pub reply: SyncSender<WorkerRevoked>,
}

/// One worker's answer to a revocation: the allocations that ended, with their usernames.
#[derive(Debug)]
pub struct WorkerRevoked {
    /// The worker.
    pub worker: u32,
    /// The allocations it ended and their usernames.
    pub ended: Vec<(AllocationId, String)>,
}

/// A page of the listing.
#[derive(Debug)]
pub struct SessionsPage {
    /// Each allocation with its id, in id order.
    pub sessions: Vec<(SessionId, Session)>,
    /// The id to pass as `after` for the next page, when more follow.
    pub next: Option<SessionId>,
}

/// What a revocation did.
#[derive(Debug)]
pub struct Revoked {
    /// The allocations that ended, in id order, with their usernames.
    pub ended: Vec<(SessionId, String)>,
    /// The names refused until [`Revoked::refused_until`].
    pub refused: Vec<String>,
    /// Until when they are refused, when a period was asked for.
    pub refused_until: Option<Instant>,
}

/// The workers did not all answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoReply {
    /// How many answered.
    pub answered: usize,
    /// How many were asked.
    pub asked: usize,
}

impl fmt::Display for NoReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} workers answered within {:?}",
            self.answered, self.asked, REPLY_TIMEOUT
        )
    }
}

impl Workers {
    /// Sends a command made for each worker's reply channel, waits for one reply from
    /// each. Blocks for up to [`REPLY_TIMEOUT`]: call it off the async runtime.
    fn gather<T>(&self, make: impl Fn(SyncSender<T>) -> Command) -> Result<Vec<T>, NoReply> {
        let asked = self.commands.len();
        let (tx, rx) = sync_channel(asked.max(1));
        self.send(make(tx));
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut replies = Vec::with_capacity(asked);
        while replies.len() < asked {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(r) => replies.push(r),
                Err(_) => {
                    return Err(NoReply {
                        answered: replies.len(),
                        asked,
                    })
                }
            }
        }
        Ok(replies)
    }

    /// One page of live allocations matching `user` and `client_ip`, after `after`, at
    /// most `limit`. Blocks for up to [`REPLY_TIMEOUT`].
    pub fn sessions(
        &self,
        user: Option<String>,
        client_ip: Option<IpAddr>,
        after: Option<SessionId>,
        limit: usize,
    ) -> Result<SessionsPage, NoReply> {
        let replies = self.gather(|reply| {
            Command::Sessions(SessionsQuery {
                user: user.clone(),
                client_ip,
                after,
                limit,
                reply,
            })
        })?;
        let mut more = false;
        let mut all: Vec<(SessionId, Session)> = Vec::new();
        for r in replies {
            more |= r.more;
            all.extend(
                r.sessions
                    .into_iter()
                    .map(|s| (SessionId::new(r.worker, s.id), s)),
            );
        }
        all.sort_by_key(|(id, _)| *id);
        if all.len() > limit {
            all.truncate(limit);
            more = true;
        }
        let next = if more {
            all.last().map(|(id, _)| *id)
        } else {
            None
        };
        Ok(SessionsPage {
            sessions: all,
            next,
        })
    }

    /// Ends the allocations `selector` names on every worker; with `refuse_for`, then
    /// refuses their user on every worker until then (the user named, or for an id or a
    /// client IP the REST name or static username of each allocation that ended). Blocks
    /// for up to [`REPLY_TIMEOUT`].
    pub fn revoke(
        &self,
        selector: RevokeSelector,
        refuse_for: Option<Duration>,
    ) -> Result<Revoked, NoReply> {
        let replies = self.gather(|reply| {
            Command::Revoke(RevokeOrder {
                selector: selector.clone(),
                reply,
            })
        })?;
        let mut ended: Vec<(SessionId, String)> = replies
            .into_iter()
            .flat_map(|r| {
                let worker = r.worker;
                r.ended
                    .into_iter()
                    .map(move |(id, user)| (SessionId::new(worker, id), user))
            })
            .collect();
        ended.sort_by_key(|(id, _)| *id);
        let mut refused = Vec::new();
        let mut refused_until = None;
        if let Some(period) = refuse_for {
            refused = match &selector {
                RevokeSelector::User(u) => vec![u.clone()],
                _ => ended
                    .iter()
                    .map(|(_, u)| tern_proto::auth::quota_name(u).to_owned())
                    .collect(),
            };
            refused.sort();
            refused.dedup();
            let until = Instant::now() + period;
            if !refused.is_empty() {
                self.send(Command::Refuse {
                    names: refused.clone(),
                    until,
                });
                refused_until = Some(until);
            }
        }
        Ok(Revoked {
            ended,
            refused,
            refused_until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_order_numerically() {
        let id: SessionId = "2-41-7".parse().unwrap();
        assert_eq!(
            id,
            SessionId {
                worker: 2,
                slot: 41,
                generation: 7
            }
        );
        assert_eq!(id.to_string(), "2-41-7");
        let ten: SessionId = "0-10-1".parse().unwrap();
        let nine: SessionId = "0-9-1".parse().unwrap();
        assert!(nine < ten, "numeric, not string, order");
        for bad in ["", "1-2", "1-2-3-4", "a-1-1", "1--1", "-1-1-1"] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad}");
        }
        assert_eq!("0-0-0".parse::<SessionId>().unwrap().allocation(), None);
    }
}
