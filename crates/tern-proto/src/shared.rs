//! What the cores of several workers share: the relay port pools (one per family),
//! EVEN-PORT reservations and the allocation quotas. It is locked only when an allocation begins or ends (and when a
//! reservation lapses), never per relayed packet.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::addr::{Family, PerFamily, RelayEndpoint, Relayed};
use crate::auth::quota_name;
use crate::error::RequestError;
use crate::guard::Guard;
use crate::pool::{PortPool, SplitMix64};

/// A handle on the shared state; clone it into every worker's [`crate::Server`]. Besides the
/// locked pool and quotas it holds the flood and brute-force tables ([`crate::GuardConfig`]),
/// which take no lock.
#[derive(Debug, Clone)]
pub struct SharedState(Arc<Mutex<Inner>>, Arc<Guard>);

#[derive(Debug)]
struct Inner {
    /// One pool per family, over the same port range: a port number is free or taken in
    /// each family on its own.
    pools: PerFamily<PortPool>,
    /// Relayed endpoints held for a later Allocate with RESERVATION-TOKEN: (token, endpoint).
    /// A token of a dual allocation holds one endpoint per family.
    reservations: Vec<(u64, RelayEndpoint)>,
    /// Live allocations per quota name (see [`quota_name`]).
    per_user: Vec<(Box<str>, u32)>,
    allocations: usize,
}

/// How a new allocation wants its relay ports.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PortRequest {
    /// Any port.
    Any,
    /// An even port (EVEN-PORT without the R bit).
    Even,
    /// An even port, and reserve its successor under this new token.
    EvenReservingNext(u64),
    /// The endpoints a RESERVATION-TOKEN holds (their families are the reservation's).
    Reserved(u64),
}

/// What [`SharedState::admit`] gave a new allocation: its relayed endpoints, and each
/// family asked for that got no port (508 in ADDRESS-ERROR-CODE).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted {
    pub relayed: Relayed,
    pub exhausted: Option<Family>,
}

impl SharedState {
    /// Pools of `ports` per family (by [`Family::index`]), shuffled with `seed` so relay
    /// ports are not predictable.
    pub fn new(ports: PerFamily<Vec<u16>>, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let pools = ports.map(|p| PortPool::new(p, &mut rng));
        Self(
            Arc::new(Mutex::new(Inner {
                pools,
                reservations: Vec::new(),
                per_user: Vec::new(),
                allocations: 0,
            })),
            Arc::new(Guard::new(seed)),
        )
    }

    /// The flood and brute-force tables.
    pub(crate) fn guard(&self) -> &Guard {
        &self.1
    }

    /// Bytes the flood and brute-force tables hold: fixed when the state is created, and
    /// resident from then on.
    pub fn guard_footprint(&self) -> usize {
        self.1.footprint()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A worker that panicked while holding the lock left the counters consistent (every
        // method below updates them only after its last fallible step).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks the quotas and takes a port in each of `families` for a new allocation by
    /// `username` (with [`PortRequest::Reserved`], the reservation's endpoints instead).
    /// A family whose pool is empty is left out and named in [`Admitted::exhausted`]; with
    /// none left at all, 508.
    pub(crate) fn admit(
        &self,
        username: &str,
        user_quota: u32,
        total_quota: u32,
        request: PortRequest,
        families: &[Family],
    ) -> Result<Admitted, RequestError> {
        let mut guard = self.lock();
        let s = &mut *guard;
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
        let mut admitted = Admitted {
            relayed: Relayed::default(),
            exhausted: None,
        };
        if let PortRequest::Reserved(token) = request {
            while let Some(i) = s.reservations.iter().position(|r| r.0 == token) {
                admitted.relayed.set(s.reservations.swap_remove(i).1);
            }
        } else {
            for &family in families {
                let pool = &mut s.pools[family.index()];
                let port = match request {
                    PortRequest::Any => pool.take(false),
                    PortRequest::Even => pool.take(true),
                    PortRequest::EvenReservingNext(token) => {
                        pool.take_pair().map(|(port, next)| {
                            s.reservations
                                .push((token, RelayEndpoint { family, port: next }));
                            port
                        })
                    }
                    PortRequest::Reserved(_) => unreachable!("handled above"),
                };
                match port {
                    Some(port) => admitted.relayed.set(RelayEndpoint { family, port }),
                    None => admitted.exhausted = Some(family),
                }
            }
        }
        if admitted.relayed.is_empty() {
            return Err(RequestError::InsufficientCapacity);
        }
        match s.per_user.iter_mut().find(|(n, _)| &**n == name) {
            Some((_, c)) => *c += 1,
            None => s.per_user.push((name.into(), 1)),
        }
        s.allocations += 1;
        Ok(admitted)
    }

    /// One relayed endpoint of a live allocation ended (a family of a dual allocation
    /// expired or was deleted): its port is free again at once in that family.
    pub(crate) fn release(&self, endpoint: RelayEndpoint) {
        self.lock().pools[endpoint.family.index()].release(endpoint.port);
    }

    /// An allocation by `username` holding `relayed` ended: its ports are free again at
    /// once.
    pub(crate) fn end(&self, username: &str, relayed: Relayed) {
        let mut s = self.lock();
        let name = quota_name(username);
        if let Some(i) = s.per_user.iter().position(|(n, _)| &**n == name) {
            s.per_user[i].1 -= 1;
            if s.per_user[i].1 == 0 {
                s.per_user.swap_remove(i);
            }
        }
        s.allocations -= 1;
        for e in relayed.iter() {
            s.pools[e.family.index()].release(e.port);
        }
    }

    /// A reservation's time is up: the endpoints nobody redeemed are free again.
    pub(crate) fn expire_reservation(&self, token: u64) {
        let mut s = self.lock();
        while let Some(i) = s.reservations.iter().position(|r| r.0 == token) {
            let (_, e) = s.reservations.swap_remove(i);
            s.pools[e.family.index()].release(e.port);
        }
    }

    /// Frees every reserved port (the process is stopping).
    pub(crate) fn drop_reservations(&self) {
        let mut s = self.lock();
        for (_, e) in std::mem::take(&mut s.reservations) {
            s.pools[e.family.index()].release(e.port);
        }
    }

    /// Relay ports free now, over both families.
    pub fn free_ports(&self) -> usize {
        self.lock().pools.iter().map(PortPool::free).sum()
    }

    /// Relay ports in the pools, free or not, over both families.
    pub fn pool_size(&self) -> usize {
        self.lock().pools.iter().map(PortPool::capacity).sum()
    }

    /// Relay ports free now and in the pool, in each family.
    pub fn ports_by_family(&self) -> PerFamily<(usize, usize)> {
        let s = self.lock();
        Family::ALL.map(|f| {
            let pool = &s.pools[f.index()];
            (pool.free(), pool.capacity())
        })
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
