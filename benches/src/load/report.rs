//! What a run measured: a human line and one JSON line.

use std::fmt::Write;

/// The result of one run. Rates are over the measured window only; loss is over the whole run
/// after the drain.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// `--label`.
    pub label: String,
    /// `turn` or `bare`.
    pub target: String,
    /// `--transport`: `udp`, `tcp` or `tls`.
    pub transport: String,
    /// TLS only: the version, cipher suite and key exchange group negotiated.
    pub tls: String,
    /// The mode.
    pub mode: String,
    /// `--shape`: `browser` or `bursty` (empty for alloc-rate).
    pub shape: String,
    /// `--data-path`: `channel`, `send` or `mix` (empty for alloc-rate).
    pub data_path: String,
    /// Echo peer sockets (distinct peer addresses).
    pub peers: usize,
    /// Sessions (or allocations in flight for alloc-rate).
    pub sessions: usize,
    /// Payload bytes.
    pub size: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Round trips completed in the window.
    pub round_trips: u64,
    /// Packets the server forwarded in the window (each direction counted on arrival).
    pub relayed: u64,
    /// Packets put into the server over the whole run.
    pub sent: u64,
    /// Packets that came out of the server over the whole run.
    pub received: u64,
    /// Packets the generator could not send (its own socket buffer full).
    pub generator_drops: u64,
    /// Round-trip latency quantiles in microseconds: p50, p99, p99.9.
    pub latency_us: [f64; 3],
    /// Server CPU seconds (utime + stime) over the window, with `--server-pid`.
    pub server_cpu: Option<f64>,
    /// The generator's own CPU seconds over the window.
    pub generator_cpu: f64,
    /// CPU seconds the whole machine was busy over the window beyond the server and the
    /// generator (other processes, interrupts not charged to either, steal), with
    /// `--server-pid`; data-path modes only.
    pub other_cpu: Option<f64>,
    /// Busy seconds of CPU `--stat-cpu` over the window; data-path modes only.
    pub stat_cpu: Option<f64>,
    /// Sessions or allocation cycles that failed (setup errors, timeouts, error responses);
    /// over streams also connections the server closed during the run.
    pub failures: u64,
    /// Streams only: packets back from the peer that arrived after a packet of the same
    /// session sent later (`None` where not checked).
    pub reordered: Option<u64>,
    /// hold: allocations that answered the Refresh after the hold.
    pub held: Option<u64>,
    /// hold: seconds the allocations were held idle.
    pub hold_seconds: f64,
    /// hold: the server's VmRSS in KiB before the first connection and at the end of the hold.
    pub rss_kib: Option<(u64, u64)>,
    /// alloc-rate: allocations that succeeded in the window; hold: connections opened and
    /// allocated (`seconds` is then the time they took).
    pub allocations: u64,
    /// alloc-rate: 508 Insufficient Capacity answers in the window.
    pub e508: u64,
    /// alloc-rate: per-second (successes, failures, 508s) over the window.
    pub per_second: Vec<(u64, u64, u64)>,
}

impl Report {
    /// Relayed packets per second.
    pub fn relayed_pps(&self) -> f64 {
        self.relayed as f64 / self.seconds.max(1e-9)
    }

    /// Round trips per second.
    pub fn round_trips_per_s(&self) -> f64 {
        self.round_trips as f64 / self.seconds.max(1e-9)
    }

    /// Payload Mbit/s relayed.
    pub fn mbit_per_s(&self) -> f64 {
        self.relayed_pps() * self.size as f64 * 8.0 / 1e6
    }

    /// Fraction of packets put into the server that never came out.
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            1.0 - (self.received.min(self.sent) as f64 / self.sent as f64)
        }
    }

    /// Allocations per second.
    pub fn allocations_per_s(&self) -> f64 {
        self.allocations as f64 / self.seconds.max(1e-9)
    }

    /// Whether the work counted is allocations (alloc-rate, hold), not relayed packets.
    fn counts_allocations(&self) -> bool {
        self.mode == "alloc-rate" || self.mode == "hold"
    }

    /// hold: the growth of the server's resident memory per held allocation, in KiB.
    pub fn rss_per_allocation_kib(&self) -> Option<f64> {
        let (before, after) = self.rss_kib?;
        let n = self.held.unwrap_or(self.allocations);
        (n > 0).then(|| (after as f64 - before as f64) / n as f64)
    }

    /// hold: allocations the Refresh after the hold did not reach.
    pub fn lost(&self) -> Option<u64> {
        self.held.map(|h| self.allocations.saturating_sub(h))
    }

    /// Server CPU seconds per million relayed packets (or per million allocations).
    pub fn cpu_per_million(&self) -> Option<f64> {
        let work = if self.counts_allocations() {
            self.allocations
        } else {
            self.relayed
        };
        self.server_cpu
            .filter(|_| work > 0)
            .map(|c| c * 1e6 / work as f64)
    }

    /// One line for people.
    pub fn human(&self) -> String {
        let mut s = format!(
            "{} {} {} {} sessions={} size={}: ",
            self.label, self.target, self.transport, self.mode, self.sessions, self.size
        );
        if !self.tls.is_empty() {
            let _ = write!(s, "{}: ", self.tls);
        }
        if !self.shape.is_empty() {
            let _ = write!(
                s,
                "shape={} data-path={} peers={}: ",
                self.shape, self.data_path, self.peers
            );
        }
        if self.mode == "hold" {
            let _ = write!(
                s,
                "{} allocated in {:.2} s ({:.0} connections/s), {} failures, setup p50 {:.0} us p99 {:.0} us; held {:.1} s idle: {} answered, {} lost",
                self.allocations,
                self.seconds,
                self.allocations_per_s(),
                self.failures,
                self.latency_us[0],
                self.latency_us[1],
                self.hold_seconds,
                self.held.unwrap_or(0),
                self.lost().unwrap_or(0),
            );
            if let (Some((a, b)), Some(per)) = (self.rss_kib, self.rss_per_allocation_kib()) {
                let _ = write!(
                    s,
                    ", server RSS {a} -> {b} KiB ({per:.1} KiB per allocation)"
                );
            }
        } else if self.mode == "alloc-rate" {
            let _ = write!(
                s,
                "{:.0} allocations/s, {} ok, {} failures, {} x 508 in {:.1} s, latency p50 {:.0} us p99 {:.0} us",
                self.allocations_per_s(),
                self.allocations,
                self.failures,
                self.e508,
                self.seconds,
                self.latency_us[0],
                self.latency_us[1]
            );
        } else {
            let _ = write!(
                s,
                "{:.0} round trips/s, {:.0} relayed packets/s, {:.1} Mbit/s, loss {:.4}%, rtt p50 {:.0} us p99 {:.0} us p99.9 {:.0} us, failures {}",
                self.round_trips_per_s(),
                self.relayed_pps(),
                self.mbit_per_s(),
                self.loss() * 100.0,
                self.latency_us[0],
                self.latency_us[1],
                self.latency_us[2],
                self.failures
            );
        }
        if let Some(c) = self.server_cpu {
            let _ = write!(s, ", server cpu {c:.2} s");
            if let Some(m) = self.cpu_per_million() {
                let _ = write!(s, " ({m:.2} s per million)");
            }
        }
        let _ = write!(
            s,
            ", generator cpu {:.0}%",
            100.0 * self.generator_cpu / self.seconds.max(1e-9)
        );
        if let Some(o) = self.other_cpu {
            let _ = write!(
                s,
                ", everything else {:.0}% of a CPU",
                100.0 * o / self.seconds.max(1e-9)
            );
        }
        s
    }

    /// One JSON object on one line.
    pub fn json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.6}"));
        let int = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        let per_second: Vec<String> = self
            .per_second
            .iter()
            .map(|(a, b, c)| format!("[{a},{b},{c}]"))
            .collect();
        format!(
            concat!(
                "{{\"label\":\"{}\",\"target\":\"{}\",\"transport\":\"{}\",\"tls\":\"{}\",",
                "\"mode\":\"{}\",\"shape\":\"{}\",",
                "\"data_path\":\"{}\",\"peers\":{},\"sessions\":{},\"size\":{},",
                "\"seconds\":{:.3},\"round_trips\":{},\"round_trips_per_s\":{:.1},\"relayed\":{},",
                "\"relayed_pps\":{:.1},\"mbit_per_s\":{:.3},\"sent\":{},\"received\":{},\"loss\":{:.6},",
                "\"generator_drops\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},",
                "\"server_cpu_s\":{},\"cpu_s_per_million\":{},\"generator_cpu_s\":{:.3},",
                "\"other_cpu_s\":{},\"stat_cpu_s\":{},",
                "\"failures\":{},\"allocations\":{},\"allocations_per_s\":{:.1},\"e508\":{},",
                "\"reordered\":{},\"held\":{},\"lost\":{},\"hold_seconds\":{:.1},",
                "\"rss_before_kib\":{},\"rss_after_kib\":{},\"rss_per_allocation_kib\":{},",
                "\"per_second\":[{}]}}"
            ),
            self.label.replace(['"', '\\'], "_"),
            self.target,
            self.transport,
            self.tls,
            self.mode,
            self.shape,
            self.data_path,
            self.peers,
            self.sessions,
            self.size,
            self.seconds,
            self.round_trips,
            self.round_trips_per_s(),
            self.relayed,
            self.relayed_pps(),
            self.mbit_per_s(),
            self.sent,
            self.received,
            self.loss(),
            self.generator_drops,
            self.latency_us[0],
            self.latency_us[1],
            self.latency_us[2],
            opt(self.server_cpu),
            opt(self.cpu_per_million()),
            self.generator_cpu,
            opt(self.other_cpu),
            opt(self.stat_cpu),
            self.failures,
            self.allocations,
            self.allocations_per_s(),
            self.e508,
            int(self.reordered),
            int(self.held),
            int(self.lost()),
            self.hold_seconds,
            int(self.rss_kib.map(|r| r.0)),
            int(self.rss_kib.map(|r| r.1)),
            opt(self.rss_per_allocation_kib()),
            per_second.join(",")
        )
    }
}
