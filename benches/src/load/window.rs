//! The measured window of a data load, for UDP and stream loads alike: a warm-up, the window
//! itself (ended early at `max_packets` sent), then a drain for the packets still in flight;
//! snapshots of the counters and of the CPU times at the window's two ends.

use super::sys::{cpu_busy_seconds, cpu_seconds, machine_busy_seconds};
use super::Args;

/// The counters and CPU times at one end of the window.
pub(super) struct Snapshot<C> {
    pub at: u64,
    pub counters: C,
    server_cpu: Option<f64>,
    own_cpu: f64,
    machine_busy: Option<f64>,
    stat_cpu_busy: Option<f64>,
}

/// Where a load is in its window; times are the load's own nanosecond clock.
pub(super) struct Window<C> {
    warm_end: u64,
    window_ns: u64,
    drain_ns: u64,
    max_packets: u64,
    server_pid: Option<u32>,
    stat_cpu: Option<usize>,
    begin: Option<Snapshot<C>>,
    end: Option<Snapshot<C>>,
    drain_end: u64,
}

/// What a finished window measured.
pub(super) struct Measured<C> {
    pub begin: Snapshot<C>,
    pub end: Snapshot<C>,
    /// The server's CPU seconds over the window (when its pid was given).
    pub server_cpu: Option<f64>,
    /// The generator's own CPU seconds over the window.
    pub generator_cpu: f64,
    /// The machine's other busy CPU seconds over the window.
    pub other_cpu: Option<f64>,
    /// Busy seconds of CPU `--stat-cpu` over the window (every process, softirq included).
    pub stat_cpu: Option<f64>,
}

impl<C: Copy> Window<C> {
    /// A window whose warm-up starts at `now`.
    pub fn new(args: &Args, now: u64) -> Self {
        Self {
            warm_end: now + (args.warmup * 1e9) as u64,
            window_ns: (args.duration * 1e9) as u64,
            drain_ns: args.drain_ms * 1_000_000,
            max_packets: args.max_packets,
            server_pid: args.server_pid,
            stat_cpu: args.stat_cpu,
            begin: None,
            end: None,
            drain_end: u64::MAX,
        }
    }

    fn snap(&self, counters: &C, at: u64) -> Snapshot<C> {
        Snapshot {
            at,
            counters: *counters,
            server_cpu: self.server_pid.and_then(cpu_seconds),
            own_cpu: cpu_seconds(std::process::id()).unwrap_or(0.0),
            machine_busy: machine_busy_seconds(),
            stat_cpu_busy: self.stat_cpu.and_then(cpu_busy_seconds),
        }
    }

    /// Moves on at `now`, with `counters` and `sent` packets so far; false once the drain
    /// after the window is over.
    pub fn tick(&mut self, now: u64, counters: &C, sent: u64) -> bool {
        if self.begin.is_none() && now >= self.warm_end {
            self.begin = Some(self.snap(counters, now));
        }
        if let (Some(b), None) = (&self.begin, &self.end) {
            if now >= b.at + self.window_ns || sent >= self.max_packets {
                self.end = Some(self.snap(counters, now));
                self.drain_end = now + self.drain_ns;
            }
        }
        now < self.drain_end
    }

    /// Whether the window is under way (latencies are recorded).
    pub fn measuring(&self) -> bool {
        self.begin.is_some() && self.end.is_none()
    }

    /// Whether the window has ended (no more packets are sent).
    pub fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// The snapshots and CPU times of a window that ended.
    pub fn finish(self) -> Measured<C> {
        let (begin, end) = (self.begin.unwrap(), self.end.unwrap());
        let server_cpu = begin.server_cpu.zip(end.server_cpu).map(|(x, y)| y - x);
        let generator_cpu = end.own_cpu - begin.own_cpu;
        let other_cpu = begin
            .machine_busy
            .zip(end.machine_busy)
            .zip(server_cpu)
            .map(|((x, y), s)| (y - x - s - generator_cpu).max(0.0));
        let stat_cpu = begin
            .stat_cpu_busy
            .zip(end.stat_cpu_busy)
            .map(|(x, y)| y - x);
        Measured {
            stat_cpu,
            begin,
            end,
            server_cpu,
            generator_cpu,
            other_cpu,
        }
    }
}
