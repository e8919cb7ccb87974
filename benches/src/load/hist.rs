//! A log-bucket latency histogram: 16 sub-buckets per power of two (about 6 % resolution),
//! fixed size, no allocation per sample.

const SUB: u32 = 16;
const LINEAR: u64 = 32;
const BUCKETS: usize = LINEAR as usize + 59 * SUB as usize;

/// Counts of nanosecond values in logarithmic buckets.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let sub = (v >> (msb - 4)) & (SUB as u64 - 1);
    LINEAR as usize + (msb as usize - 5) * SUB as usize + sub as usize
}

/// The middle of bucket `i`.
fn value(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let j = i - LINEAR as usize;
    let msb = j / SUB as usize + 5;
    let sub = (j % SUB as usize) as u64;
    let width = 1u64 << (msb - 4);
    ((SUB as u64 + sub) << (msb - 4)) + width / 2
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }

    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), or 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let want = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return value(i);
            }
        }
        value(BUCKETS - 1)
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for v in [1u64, 31, 32, 33, 100, 1_000, 65_537, 1_000_000, 123_456_789] {
            let i = index(v);
            assert!(i >= last);
            last = i;
            let mid = value(i) as f64;
            assert!(
                (mid - v as f64).abs() <= v as f64 * 0.07 + 1.0,
                "{v} -> {mid}"
            );
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() < 40_000.0, "{p50}");
        assert!(h.quantile(1.0) >= 950_000);
    }
}
