//! What the cores of several workers share: the relay port pool, EVEN-PORT reservations and
//! the allocation quotas. It is locked only when an allocation begins or ends (and when a
//! reservation lapses), never per relayed packet.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::auth::quota_name;
use crate::error::RequestError;
use crate::pool::{PortPool, SplitMix64};

/// A handle on the shared state; clone it into every worker's [`crate::Server`].
#[derive(Debug, Clone)]
pub struct SharedState(Arc<Mutex<Inner>>);

#[derive(Debug)]
struct Inner {
    pool: PortPool,
    /// Ports held for a later Allocate with RESERVATION-TOKEN: (token, port).
    reservations: Vec<(u64, u16)>,
    /// Live allocations per quota name (see [`quota_name`]).
    per_user: Vec<(Box<str>, u32)>,
    allocations: usize,
}

/// How a new allocation wants its relay port.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PortRequest {
    /// Any port.
    Any,
    /// An even port (EVEN-PORT without the R bit).
    Even,
    /// An even port, and reserve its successor under this new token.
    EvenReservingNext(u64),
    /// The port a RESERVATION-TOKEN holds.
    Reserved(u64),
}

impl SharedState {
    /// A pool of `ports` (shuffled with `seed`, so relay ports are not predictable).
    pub fn new(ports: Vec<u16>, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        Self(Arc::new(Mutex::new(Inner {
            pool: PortPool::new(ports, &mut rng),
            reservations: Vec::new(),
            per_user: Vec::new(),
            allocations: 0,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A worker that panicked while holding the lock left the counters consistent (every
        // method below updates them only after its last fallible step).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks the quotas and takes a port for a new allocation by `username`.
    pub(crate) fn admit(
        &self,
        username: &str,
        user_quota: u32,
        total_quota: u32,
        request: PortRequest,
    ) -> Result<u16, RequestError> {
        let mut s = self.lock();
        let name = quota_name(username);
        let held = s
            .per_user
            .iter()
            .find(|(n, _)| &**n == name)
            .map_or(0, |(_, c)| *c);
        if user_quota > 0 && held >= user_quota {
            return Err(RequestError::QuotaReached);
        }
        if total_quota > 0 && s.allocations >= total_quota as usize {
            return Err(RequestError::QuotaReached);
        }
        let port = match request {
            PortRequest::Any => s.pool.take(false),
            PortRequest::Even => s.pool.take(true),
            PortRequest::EvenReservingNext(token) => s.pool.take_pair().map(|(port, next)| {
                s.reservations.push((token, next));
                port
            }),
            PortRequest::Reserved(token) => {
                let i = s.reservations.iter().position(|r| r.0 == token);
                i.map(|i| s.reservations.swap_remove(i).1)
            }
        }
        .ok_or(RequestError::InsufficientCapacity)?;
        match s.per_user.iter_mut().find(|(n, _)| &**n == name) {
            Some((_, c)) => *c += 1,
            None => s.per_user.push((name.into(), 1)),
        }
        s.allocations += 1;
        Ok(port)
    }

    /// An allocation by `username` on `port` ended: the port is free again at once.
    pub(crate) fn end(&self, username: &str, port: u16) {
        let mut s = self.lock();
        let name = quota_name(username);
        if let Some(i) = s.per_user.iter().position(|(n, _)| &**n == name) {
            s.per_user[i].1 -= 1;
            if s.per_user[i].1 == 0 {
                s.per_user.swap_remove(i);
            }
        }
        s.allocations -= 1;
        s.pool.release(port);
    }

    /// A reservation's time is up: if nobody redeemed it, its port is free again.
    pub(crate) fn expire_reservation(&self, token: u64, port: u16) {
        let mut s = self.lock();
        if let Some(i) = s.reservations.iter().position(|r| *r == (token, port)) {
            s.reservations.swap_remove(i);
            s.pool.release(port);
        }
    }

    /// Frees every reserved port (the process is stopping).
    pub(crate) fn drop_reservations(&self) {
        let mut s = self.lock();
        for (_, port) in std::mem::take(&mut s.reservations) {
            s.pool.release(port);
        }
    }

    /// Relay ports free now.
    pub fn free_ports(&self) -> usize {
        self.lock().pool.free()
    }

    /// Relay ports in the pool, free or not.
    pub fn pool_size(&self) -> usize {
        self.lock().pool.capacity()
    }

    /// Relay ports held for a RESERVATION-TOKEN: out of the free pool, and no allocation's
    /// yet. With the ports allocations hold and the free ones, they make up the pool.
    pub fn reserved_ports(&self) -> usize {
        self.lock().reservations.len()
    }

    /// Live allocations over all workers.
    pub fn allocations(&self) -> usize {
        self.lock().allocations
    }
}
