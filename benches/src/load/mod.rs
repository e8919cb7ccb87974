//! The load generator behind `tern-load`: TURN sessions over UDP against tern or coturn (or the
//! bare forwarder's framing), echo peers it runs itself, and a report of what the server relayed.
//!
//! Everything runs on one thread with epoll and batched socket calls, so the generator can be
//! pinned to one CPU next to the server under test. Every run is bounded by `--duration` and
//! by a packet or allocation cap, and every address is on loopback.

pub mod alloc_rate;
pub mod bare;
pub mod hist;
pub mod net;
pub mod relay;
pub mod report;
pub mod stun;
pub mod sys;

use std::net::SocketAddrV4;

use clap::{Parser, ValueEnum};

pub use report::Report;

/// Which load to offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Each session keeps `--window` packets in flight through the relay to an echo peer.
    Closed,
    /// A fixed total rate (`--rate`), paced, through the relay to an echo peer; the sessions
    /// take turns, so each sends at `--rate / --sessions`, evenly spaced.
    Open,
    /// Allocate (401, then signed) and release (Refresh LIFETIME 0) on new 5-tuples.
    AllocRate,
    /// Pairs of allocations relaying to each other's relayed address over channels.
    C2c,
}

/// How a client's datagrams reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    /// As WebRTC clients send media (libwebrtc, Firefox, aioice: one datagram per system
    /// call): every datagram reaches the server as its own datagram. The generator still
    /// hands several to one `sendmmsg`, but as separate messages, never as UDP GSO segments,
    /// so a server's socket with UDP GRO on receives them one per receive entry.
    Browser,
    /// Bursty clients: runs of equal-size datagrams from one client socket leave as one UDP
    /// GSO send (up to 64 segments), which a server's socket with UDP GRO on receives as one
    /// buffer. In `closed` mode a session's window leaves as one such burst.
    Bursty,
}

/// How the data packets travel between a client and the server (`--target turn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DataPath {
    /// ChannelData over a bound channel.
    Channel,
    /// Send indications out, Data indications back (permission only, no channel).
    Send,
    /// Even sessions on ChannelData, odd sessions on Send/Data indications.
    Mix,
}

impl DataPath {
    /// Whether session `index` sends Send indications (no channel bound).
    pub fn indications_for(self, index: usize) -> bool {
        match self {
            DataPath::Channel => false,
            DataPath::Send => true,
            DataPath::Mix => index % 2 == 1,
        }
    }
}

/// What the generator talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// A TURN server (tern or coturn).
    Turn,
    /// `bare-forwarder`: a 4-byte header like ChannelData, a hello handshake, no STUN.
    Bare,
}

/// Command line of `tern-load`.
#[derive(Parser, Debug, Clone)]
#[command(name = "tern-load", about = "TURN load generator (loopback only)")]
pub struct Args {
    /// The server's UDP address (loopback only).
    #[arg(long, default_value = "127.0.0.1:3478")]
    pub server: SocketAddrV4,
    /// TURN server or the bare forwarder.
    #[arg(long, value_enum, default_value = "turn")]
    pub target: Target,
    /// The load.
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: Mode,
    /// Concurrent sessions (closed, open, c2c: c2c uses pairs, so an even number).
    #[arg(long, default_value_t = 10)]
    pub sessions: usize,
    /// Client ports, inclusive, one per session (outside the server's relay range).
    #[arg(long, default_value = "41000-41999", value_parser = net::parse_port_range)]
    pub client_ports: (u16, u16),
    /// First port of the echo peers (127.0.0.1:PORT..PORT+peers-1).
    #[arg(long, default_value_t = 40990)]
    pub peer_port: u16,
    /// How many echo peer sockets; session i talks to peer i mod this, so `--peers` equal to
    /// `--sessions` gives every session (allocation) its own peer address.
    #[arg(long, default_value_t = 1)]
    pub peers: u16,
    /// How datagrams reach the server: `browser` (one datagram each, no GSO) or `bursty`
    /// (UDP GSO bursts). The environment variable NO_GSO refuses `bursty`.
    #[arg(long, value_enum, default_value = "browser")]
    pub shape: Shape,
    /// The TURN REST shared secret (`static-auth-secret`).
    #[arg(long, default_value = "bench-secret")]
    pub secret: String,
    /// Packets in flight per session (closed, c2c).
    #[arg(long, default_value_t = 8)]
    pub window: u32,
    /// Offered packets per second in total (open).
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Allocations in flight (alloc-rate).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// ChannelData, Send/Data indications, or a mix (half the sessions each) (--target turn).
    #[arg(long, value_enum, default_value = "channel")]
    pub data_path: DataPath,
    /// Payload bytes per packet (at least 16).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before the measured window.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Stop sending after this many packets (all modes but alloc-rate).
    #[arg(long, default_value_t = 200_000_000)]
    pub max_packets: u64,
    /// Stop after this many allocation cycles (alloc-rate).
    #[arg(long, default_value_t = 10_000_000)]
    pub max_allocations: u64,
    /// Milliseconds to keep receiving after the last send, before counting loss.
    #[arg(long, default_value_t = 500)]
    pub drain_ms: u64,
    /// The server's pid, to report its CPU seconds over the measured window.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Also print one JSON line.
    #[arg(long)]
    pub json: bool,
    /// A label copied into the report.
    #[arg(long, default_value = "")]
    pub label: String,
}

impl Args {
    /// Refuses anything that is not loopback or not bounded.
    pub fn check(&self) -> Result<(), String> {
        if !net::is_loopback(self.server) {
            return Err(format!("--server {}: loopback only", self.server));
        }
        if self.size < 16 || self.size > 1400 {
            return Err("--size must be 16..=1400".into());
        }
        if !(self.duration > 0.0 && self.duration <= 600.0 && (0.0..=60.0).contains(&self.warmup)) {
            return Err("--duration must be in (0, 600], --warmup in [0, 60]".into());
        }
        let ports = usize::from(self.client_ports.1 - self.client_ports.0) + 1;
        let need = match self.mode {
            Mode::AllocRate => self.concurrency,
            _ => self.sessions,
        };
        if need == 0 || need > ports {
            return Err(format!(
                "need {need} client ports, --client-ports has {ports}"
            ));
        }
        if self.mode == Mode::C2c
            && (self.sessions & 1 == 1
                || self.target == Target::Bare
                || self.data_path != DataPath::Channel)
        {
            return Err(
                "c2c needs an even --sessions, --target turn and --data-path channel".into(),
            );
        }
        if self.mode == Mode::AllocRate && self.target == Target::Bare {
            return Err("alloc-rate needs --target turn".into());
        }
        if self.peers == 0 || self.window == 0 || self.rate == 0 {
            return Err("--peers, --window and --rate must be positive".into());
        }
        let peer_last = u32::from(self.peer_port) + u32::from(self.peers) - 1;
        if self.peer_port == 0 || peer_last > u32::from(u16::MAX) {
            return Err("--peer-port + --peers must stay within 1..=65535".into());
        }
        if self.mode != Mode::AllocRate
            && u32::from(self.client_ports.0) <= peer_last
            && u32::from(self.peer_port) <= u32::from(self.client_ports.1)
        {
            return Err(format!(
                "--peer-port {}..={peer_last} overlaps --client-ports {}-{}",
                self.peer_port, self.client_ports.0, self.client_ports.1
            ));
        }
        if self.target == Target::Bare && self.data_path != DataPath::Channel {
            return Err("--data-path send or mix needs --target turn".into());
        }
        Ok(())
    }
}

/// Runs the load described by `args`.
pub fn run(args: &Args) -> std::io::Result<Report> {
    args.check().map_err(std::io::Error::other)?;
    match args.mode {
        Mode::AllocRate => alloc_rate::run(args),
        _ => relay::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["tern-load"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("parse")
    }

    #[test]
    fn browser_shape_and_channels_are_the_defaults() {
        let a = args(&[]);
        assert_eq!(a.shape, Shape::Browser);
        assert_eq!(a.data_path, DataPath::Channel);
        assert!(a.check().is_ok());
    }

    #[test]
    fn mix_puts_odd_sessions_on_indications() {
        let on: Vec<bool> = (0..4).map(|i| DataPath::Mix.indications_for(i)).collect();
        assert_eq!(on, [false, true, false, true]);
        assert!(!DataPath::Channel.indications_for(1));
        assert!(DataPath::Send.indications_for(0));
    }

    #[test]
    fn check_refuses_overlapping_peers_and_indications_to_the_bare_forwarder() {
        // 1000 peers from 40990 run into the default client ports (41000-41999).
        let e = args(&["--peers", "1000"]).check().unwrap_err();
        assert!(e.contains("overlaps"), "{e}");
        assert!(args(&["--peers", "1000", "--peer-port", "39000"])
            .check()
            .is_ok());
        let e = args(&["--peer-port", "65535", "--peers", "2"])
            .check()
            .unwrap_err();
        assert!(e.contains("65535"), "{e}");
        let e = args(&["--target", "bare", "--data-path", "mix"])
            .check()
            .unwrap_err();
        assert!(e.contains("--target turn"), "{e}");
        let e = args(&["--mode", "c2c", "--data-path", "send"])
            .check()
            .unwrap_err();
        assert!(e.contains("c2c"), "{e}");
    }
}
