//! The load generator behind `tern-load`: TURN sessions over UDP, TCP or TLS against tern or
//! coturn (or the bare forwarder's framing), echo peers it runs itself, and a report of what
//! the server relayed.
//!
//! Everything runs on one thread with epoll (batched socket calls for UDP, nonblocking
//! stream sockets for TCP and TLS), so the generator can be pinned to one CPU next to the
//! server under test. Every run is bounded by `--duration` and by a packet or allocation cap,
//! and every address is on loopback.

pub mod alloc_rate;
pub mod bare;
pub mod conn;
pub mod hist;
pub mod hold;
pub mod net;
pub mod relay;
pub mod report;
pub mod setup;
pub mod stream_relay;
pub mod stun;
pub mod sys;
pub mod tls;
mod window;

use std::net::SocketAddrV4;
use std::path::PathBuf;

use tern_sys::Interest;

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
    /// TCP or TLS only: open `--sessions` connections (`--concurrency` at a time), each with
    /// its own allocation, hold them idle for `--duration` seconds, report the server's RSS
    /// growth per allocation and Refresh every one to check none was lost.
    Hold,
}

/// How clients reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Datagrams, one socket per session.
    Udp,
    /// A TCP connection per session (RFC 8656 §3.1), from 127.0.0.2 and up.
    Tcp,
    /// TLS over a TCP connection per session, a full handshake each.
    Tls,
}

/// The name used in reports and on the command line.
pub fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    }
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
    /// `bare-forwarder`: a 4-byte header like ChannelData, a hello handshake, no STUN; over
    /// UDP, or over TCP with the frames padded as TURN-over-TCP ChannelData.
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
    /// UDP, or a stream connection per session: TCP, or TLS (with `--ca` or `--insecure`;
    /// not to the bare forwarder). Over streams `--client-ports` is not used: session i
    /// connects from 127.0.0.(2 + i mod 250) on an ephemeral port; `--shape bursty` writes a
    /// closed session's window with one write instead of one per packet.
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: Transport,
    /// TLS: trust the CA certificates in this PEM file (checked for the server's IP address).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// TLS: accept any server certificate.
    #[arg(long)]
    pub insecure: bool,
    /// TLS: offer TLS 1.2 only (coturn 4.6.1 speaks no 1.3; this compares like with like).
    #[arg(long)]
    pub tls12: bool,
    /// The load.
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: Mode,
    /// Concurrent sessions (closed, open, c2c: c2c uses pairs, so an even number).
    #[arg(long, default_value_t = 10)]
    pub sessions: usize,
    /// Client ports, inclusive, one per session (outside the server's relay range).
    #[arg(long, default_value = "41000-41999", value_parser = net::parse_port_range)]
    pub client_ports: (u16, u16),
    /// First port of the echo peers (PEER_IP:PORT..PORT+peers-1).
    #[arg(long, default_value_t = 40990)]
    pub peer_port: u16,
    /// The address the UDP client sockets bind to (closed and open). Loopback, or a private
    /// address when the generator runs in a network namespace of its own (`ip netns exec`).
    #[arg(long, default_value = "127.0.0.1")]
    pub client_ip: std::net::Ipv4Addr,
    /// The address the echo peers bind to (closed and open); the same rule as `--client-ip`.
    #[arg(long, default_value = "127.0.0.1")]
    pub peer_ip: std::net::Ipv4Addr,
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
    /// Allocations in flight (alloc-rate); sessions set up at once over streams (hold and
    /// the stream set-up).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// ChannelData, Send/Data indications, or a mix (half the sessions each) (--target turn).
    #[arg(long, value_enum, default_value = "channel")]
    pub data_path: DataPath,
    /// Payload bytes per packet (at least 16).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Measured seconds (hold: seconds the allocations are held idle).
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
    /// A CPU whose busy seconds over the measured window (from `/proc/stat`, softirq
    /// included) the report gives (`stat_cpu_s`): the server's pinned CPU.
    #[arg(long)]
    pub stat_cpu: Option<usize>,
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
        for (what, ip) in [
            ("--server", *self.server.ip()),
            ("--client-ip", self.client_ip),
            ("--peer-ip", self.peer_ip),
        ] {
            if let Err(why) = net::may_use(ip) {
                return Err(format!("{what} {ip}: loopback only ({why})"));
            }
        }
        let elsewhere = !self.client_ip.is_loopback() || !self.peer_ip.is_loopback();
        if elsewhere
            && (self.transport != Transport::Udp || !matches!(self.mode, Mode::Closed | Mode::Open))
        {
            return Err("--client-ip and --peer-ip are for UDP closed and open loads".into());
        }
        if self.size < 16 || self.size > 1400 {
            return Err("--size must be 16..=1400".into());
        }
        if !(self.duration > 0.0 && self.duration <= 600.0 && (0.0..=60.0).contains(&self.warmup)) {
            return Err("--duration must be in (0, 600], --warmup in [0, 60]".into());
        }
        if let Some(e) = self.check_stream() {
            return e;
        }
        let ports = usize::from(self.client_ports.1 - self.client_ports.0) + 1;
        let need = match (self.mode, self.transport) {
            (Mode::AllocRate, _) => self.concurrency,
            (_, Transport::Udp) => self.sessions,
            _ => 0, // streams connect from ephemeral ports
        };
        if self.sessions == 0 || self.concurrency == 0 || need > ports {
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
            && self.transport == Transport::Udp
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

impl Args {
    /// The checks of `--transport` and `--mode hold`: `Some` with the verdict when they
    /// decide it.
    fn check_stream(&self) -> Option<Result<(), String>> {
        let stream = self.transport != Transport::Udp;
        if self.mode == Mode::Hold && !stream {
            return Some(Err("--mode hold needs --transport tcp or tls".into()));
        }
        if !stream {
            return None;
        }
        if matches!(self.mode, Mode::AllocRate | Mode::C2c) {
            return Some(Err(format!(
                "--transport {} runs closed, open or hold",
                transport_name(self.transport)
            )));
        }
        if self.target == Target::Bare
            && (self.transport == Transport::Tls || self.mode == Mode::Hold)
        {
            return Some(Err(
                "--target bare runs closed or open, over --transport udp or tcp".into(),
            ));
        }
        if self.transport == Transport::Tls && self.ca.is_none() && !self.insecure {
            return Some(Err("--transport tls needs --ca FILE or --insecure".into()));
        }
        None
    }
}

/// Runs the load described by `args`.
pub fn run(args: &Args) -> std::io::Result<Report> {
    args.check().map_err(std::io::Error::other)?;
    match (args.mode, args.transport) {
        (Mode::AllocRate, _) => alloc_rate::run(args),
        (Mode::Hold, _) => hold::run(args),
        (_, Transport::Udp) => relay::run(args),
        _ => stream_relay::run(args),
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
    fn streams_run_closed_open_and_hold_and_the_bare_forwarder_takes_tcp_closed_and_open() {
        assert!(args(&["--transport", "tcp", "--sessions", "5000"])
            .check()
            .is_ok());
        assert!(args(&["--transport", "tcp", "--mode", "hold"])
            .check()
            .is_ok());
        let e = args(&["--mode", "hold"]).check().unwrap_err();
        assert!(e.contains("--transport"), "{e}");
        let e = args(&["--transport", "tls"]).check().unwrap_err();
        assert!(e.contains("--ca"), "{e}");
        assert!(args(&["--transport", "tls", "--insecure"]).check().is_ok());
        for bad in [["--mode", "c2c"], ["--mode", "alloc-rate"]] {
            let mut a = vec!["--transport", "tcp"];
            a.extend_from_slice(&bad);
            assert!(args(&a).check().is_err(), "{a:?}");
        }
        for mode in ["closed", "open"] {
            let a = ["--target", "bare", "--transport", "tcp", "--mode", mode];
            assert!(args(&a).check().is_ok(), "{a:?}");
        }
        for bad in [
            &["--transport", "tls", "--insecure"][..],
            &["--transport", "tls", "--insecure", "--mode", "open"],
            &["--transport", "tcp", "--mode", "hold"],
            &["--transport", "tcp", "--mode", "c2c"],
            &["--transport", "tcp", "--data-path", "send"],
        ] {
            let mut a = vec!["--target", "bare"];
            a.extend_from_slice(bad);
            assert!(args(&a).check().is_err(), "{a:?}");
        }
        let e = args(&["--target", "bare", "--transport", "tls", "--insecure"])
            .check()
            .unwrap_err();
        assert!(e.contains("--target bare"), "{e}");
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
