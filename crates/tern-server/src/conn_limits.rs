//! The stream connection limits all workers share: connections in all (`max-connections`)
//! and per client IP (`max-connections-per-ip`).
//!
//! Touched when a connection is accepted, when a PROXY header names its client, and when it
//! closes; never per packet. The total is one atomic counter; the per-IP table is a map behind
//! a mutex that holds only the IPs with a connection open, so it never outgrows the
//! connections. The map's hasher is keyed per process (`RandomState`): PROXY headers let a
//! load balancer's clients choose the keys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The shared counts and their bounds.
#[derive(Debug)]
pub struct ConnLimits {
    max_total: usize,
    /// 0: no per-IP limit.
    max_per_ip: u32,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

impl ConnLimits {
    /// At most `max_total` connections in all and `max_per_ip` from one IP (0: no per-IP
    /// limit).
    pub fn new(max_total: usize, max_per_ip: u32) -> Self {
        Self {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection; false (counting nothing) when `max_total` are open.
    pub fn open(&self) -> bool {
        let max = self.max_total;
        self.total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Uncounts a connection [`ConnLimits::open`] counted.
    pub fn close(&self) {
        self.total.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a connection from `ip`; false (counting nothing) when `ip` has
    /// `max_per_ip` already. IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn claim_ip(&self, ip: IpAddr) -> bool {
        let mut table = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = table.entry(ip.to_canonical()).or_insert(0);
        // An entry made here is 0 only when the limit is 0, which never refuses.
        if self.max_per_ip != 0 && *n >= self.max_per_ip {
            return false;
        }
        *n += 1;
        true
    }

    /// Uncounts a connection [`ConnLimits::claim_ip`] counted.
    pub fn release_ip(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let mut table = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = table.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                table.remove(&ip);
            }
        }
    }

    /// Connections open (all workers).
    #[cfg(test)]
    fn open_connections(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Distinct client IPs with a connection open.
    #[cfg(test)]
    fn distinct_ips(&self) -> usize {
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::ConnLimits;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_total_is_bounded_and_freed_by_close() {
        let l = ConnLimits::new(2, 0);
        assert!(l.open() && l.open());
        assert!(!l.open(), "the third is over the limit");
        assert_eq!(l.open_connections(), 2, "a refusal counts nothing");
        l.close();
        assert!(l.open(), "a closed one frees its place");
    }

    #[test]
    fn each_ip_has_its_own_bound_and_the_table_forgets_ips_without_connections() {
        let l = ConnLimits::new(100, 3);
        let (a, b) = (ip("127.0.0.1"), ip("127.0.0.2"));
        for _ in 0..3 {
            assert!(l.claim_ip(a));
        }
        assert!(!l.claim_ip(a), "the fourth from one IP");
        assert!(l.claim_ip(b), "another IP is not affected");
        // The IPv4-mapped form is the same client.
        assert!(!l.claim_ip(ip("::ffff:127.0.0.1")));
        l.release_ip(a);
        assert!(
            l.claim_ip(ip("::ffff:127.0.0.1")),
            "a released one frees a place"
        );
        assert_eq!(l.distinct_ips(), 2);
        for _ in 0..3 {
            l.release_ip(a);
        }
        l.release_ip(b);
        assert_eq!(
            l.distinct_ips(),
            0,
            "no entry stays for IPs with nothing open"
        );
        l.release_ip(b);
        assert_eq!(l.distinct_ips(), 0, "a stray release is harmless");
    }

    #[test]
    fn zero_means_no_per_ip_limit() {
        let l = ConnLimits::new(100, 0);
        for _ in 0..1000 {
            assert!(l.claim_ip(ip("192.0.2.1")));
        }
        assert_eq!(l.distinct_ips(), 1);
    }
}
