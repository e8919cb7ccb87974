//! The relay port pool: which of the bound relay ports are free.

use std::collections::VecDeque;

/// A tiny deterministic PRNG (SplitMix64) for shuffling and transaction ids; seeded by the
/// caller, so the core stays reproducible.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Free relay ports. A released port goes to the back of the queue and can be handed out
/// again at once; the initial order is shuffled so relay ports are not predictable.
#[derive(Debug, Clone)]
pub struct PortPool {
    free: VecDeque<u16>,
    /// Whether each port (indexed from 0) is in `free`, for O(1) membership tests.
    is_free: Vec<bool>,
    capacity: usize,
}

impl PortPool {
    pub(crate) fn new(mut ports: Vec<u16>, rng: &mut SplitMix64) -> Self {
        ports.sort_unstable();
        ports.dedup();
        for i in (1..ports.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            ports.swap(i, j);
        }
        let mut is_free = vec![false; usize::from(u16::MAX) + 1];
        for &p in &ports {
            is_free[usize::from(p)] = true;
        }
        Self {
            capacity: ports.len(),
            free: ports.into(),
            is_free,
        }
    }

    /// Takes a free port; an even one if `even` is set.
    pub fn take(&mut self, even: bool) -> Option<u16> {
        let port = if even {
            let at = self.free.iter().position(|p| p % 2 == 0)?;
            self.free.remove(at)
        } else {
            self.free.pop_front()
        }?;
        self.is_free[usize::from(port)] = false;
        Some(port)
    }

    /// Takes a free even port whose successor is free too, and that successor (RFC 8656
    /// §7.2, EVEN-PORT with the R bit).
    pub fn take_pair(&mut self) -> Option<(u16, u16)> {
        let is_free = &self.is_free;
        let even = *self
            .free
            .iter()
            .find(|&&p| p % 2 == 0 && p < u16::MAX && is_free[usize::from(p) + 1])?;
        Some((self.take_port(even)?, self.take_port(even + 1)?))
    }

    /// Takes a specific port if it is free.
    pub fn take_port(&mut self, port: u16) -> Option<u16> {
        if !self.is_free[usize::from(port)] {
            return None;
        }
        let at = self.free.iter().position(|&p| p == port)?;
        self.is_free[usize::from(port)] = false;
        self.free.remove(at)
    }

    /// Returns a port to the pool.
    pub fn release(&mut self, port: u16) {
        self.is_free[usize::from(port)] = true;
        self.free.push_back(port);
    }

    /// Ports free now.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Ports in the pool, free or in use.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_release_even() {
        let mut rng = SplitMix64::new(1);
        let mut p = PortPool::new((10..=13).collect(), &mut rng);
        let a = p.take(true).unwrap();
        assert_eq!(a % 2, 0);
        let mut taken = vec![a];
        while let Some(x) = p.take(false) {
            taken.push(x);
        }
        taken.sort_unstable();
        assert_eq!(taken, vec![10, 11, 12, 13]);
        assert_eq!(p.take(false), None);
        p.release(11);
        assert_eq!(p.take(true), None);
        assert_eq!(p.take(false), Some(11));
    }
}
