//! The I/O shell of tern: binds the listening and relay sockets and drives the sans-IO core
//! from `tern-proto` with datagrams, time and timer ticks.
//!
//! One worker thread per core (coturn's `relay-threads`), each with its own epoll loop and its
//! own [`tern_proto::Server`]. The listening sockets use `SO_REUSEPORT`, so the kernel hashes
//! each client 5-tuple to one worker, which then owns that client's allocation and reads its
//! relay socket. TCP works the same way: each worker has its own `SO_REUSEPORT` member of every
//! TCP listening socket and holds the connections it accepts beside its UDP sockets, framing
//! each stream into messages for its core and closing a connection's allocation with it.
//! Workers share only the port pool and the quotas
//! ([`tern_proto::SharedState`]), touched when allocations begin and end; a relayed packet
//! takes no lock, allocates nothing and logs nothing. Sockets are read with `recvmmsg` and
//! packets to clients leave through one `sendmmsg` per batch, with a plain
//! `recvfrom`/`sendto` fallback; the system calls are `tern-sys`'s, and this crate has no
//! `unsafe`.
//!
//! A worker drives its core as the core's crate docs say: the data paths' decisions are sent
//! at once, and after a request, a timer tick or shutdown it drains
//! [`tern_proto::Server::poll_output`] in order (claim a relay socket before sending the reply
//! that names it). Its epoll events carry typed tokens, and commands
//! ([`Workers::send`]) wake it through an eventfd.

pub mod admin;
mod conn_limits;
mod control;
pub mod metrics;
mod relay_ports;
pub mod sessions;
pub mod tls;
mod token;
pub mod usage;
mod worker;
pub mod xdp;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tern_proto::{Family, PerFamily, SharedState};
use tracing::{info, warn};

use crate::conn_limits::ConnLimits;
use crate::control::WorkerPort;
pub use crate::control::{
    Command, IoErrorKind, IoErrors, Reload, Snapshot, StreamClose, StreamCloses, TlsFailure,
    TlsFailures, Totals, Workers,
};
use crate::relay_ports::RelayTable;
use crate::worker::{ListeningSockets, StreamTimeouts, TcpPort, Worker};

/// Socket buffer sizes to ask the kernel for on the listening sockets (it may grant less:
/// `net.core.rmem_max` and `net.core.wmem_max` cap them). Every client's traffic arrives on
/// the listening socket, so its receive buffer absorbs the bursts of all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketBuffers {
    /// SO_RCVBUF in bytes; `None` asks for [`SocketBuffers::DEFAULT_RECV`].
    pub recv: Option<usize>,
    /// SO_SNDBUF in bytes; `None` asks for [`SocketBuffers::DEFAULT_SEND`].
    pub send: Option<usize>,
}

impl SocketBuffers {
    /// The receive buffer asked for when none is configured.
    pub const DEFAULT_RECV: usize = 4 << 20;
    /// The send buffer asked for when none is configured.
    pub const DEFAULT_SEND: usize = 1 << 20;

    /// Applies the sizes to `sock`; with `report`, says what the kernel granted when it is
    /// less than asked (a warning when the size was configured).
    fn apply(&self, sock: &UdpSocket, report: bool) {
        let s = SockRef::from(sock);
        let sizes = [
            (
                "receive",
                self.recv,
                Self::DEFAULT_RECV,
                "net.core.rmem_max",
            ),
            ("send", self.send, Self::DEFAULT_SEND, "net.core.wmem_max"),
        ];
        for (which, configured, default, sysctl) in sizes {
            let want = configured.unwrap_or(default);
            let got = if which == "receive" {
                let _ = s.set_recv_buffer_size(want);
                s.recv_buffer_size()
            } else {
                let _ = s.set_send_buffer_size(want);
                s.send_buffer_size()
            };
            // Linux reports twice what it grants (the doubling covers its bookkeeping).
            let got = got.map_or(0, |g| g / 2);
            if report && got < want {
                if configured.is_some() {
                    warn!(
                        buffer = which,
                        asked = want,
                        granted = got,
                        "the kernel capped the UDP socket buffer; raise {sysctl}"
                    );
                } else {
                    info!(buffer = which, asked = want, granted = got, "the kernel capped the UDP socket buffer; raise {sysctl} for bursts of many clients");
                }
            }
        }
    }
}

/// What the server binds and how the core behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// UDP addresses to listen on for STUN/TURN (`listening-ip` × `listening-port`, unless
    /// `no-udp`).
    pub listen: Vec<SocketAddr>,
    /// TCP addresses to listen on for STUN/TURN over TCP (the same, unless `no-tcp`). Port 0
    /// takes the port the UDP listener of the same IP got, if there is one.
    pub tcp_listen: Vec<SocketAddr>,
    /// The IP relay sockets bind to in each family (by [`tern_proto::Family::index`]):
    /// `relay-ip`, else the private part of `external-ip`, else a specific `listening-ip`,
    /// else `None`, the family's unspecified address. Only the families the core relays in
    /// (those with a relayed IP) are bound.
    pub relay_bind_ips: PerFamily<Option<IpAddr>>,
    /// The core's configuration. `core.relay_port_range` is the range to bind in each
    /// family of `core.relayed_ips`; the server fills `core.relay_ports` with the ports it
    /// managed to bind.
    pub core: tern_proto::Config,
    /// Worker threads (coturn's `relay-threads`); 0 means one per available CPU.
    pub workers: usize,
    /// Use recvmmsg/sendmmsg (the default) or plain recvfrom/sendto.
    pub batched_io: bool,
    /// Socket buffer sizes for the listening sockets (relay sockets keep the kernel's).
    pub buffers: SocketBuffers,
    /// TCP addresses on which every connection must start with a PROXY protocol header,
    /// version 1 or 2 (coturn's `tcp-proxy-port`), beside `tcp_listen`. They take TLS too
    /// when it is on (by the first byte after the header).
    pub proxy_listen: Vec<SocketAddr>,
    /// Every TCP listening socket requires the PROXY header (`proxy-protocol`), not only
    /// `proxy_listen`.
    pub proxy_protocol: bool,
    /// A TCP connection that holds no allocation and sends nothing for this long is closed
    /// (`tcp-idle-timeout`, [`ServerConfig::DEFAULT_TCP_IDLE`]).
    pub tcp_idle_timeout: Duration,
    /// A TLS handshake, or a PROXY header, not complete this long after the connection was
    /// accepted closes it (`tls-handshake-timeout`, [`ServerConfig::DEFAULT_HANDSHAKE`]).
    pub handshake_timeout: Duration,
    /// Most stream connections open at once over all workers (`max-connections`); `None`
    /// means [`ServerConfig::DEFAULT_MAX_CONNECTIONS`]. Lowered, with a warning, when the
    /// open-file limit cannot hold them beside the relay sockets.
    pub max_connections: Option<usize>,
    /// Most stream connections open at once from one client IP over all workers
    /// (`max-connections-per-ip`); 0 means no limit. Behind a PROXY header, the IP is the
    /// one the header names.
    pub max_connections_per_ip: u32,
    /// The certificates, when TLS is on: every TCP listening socket then takes TLS too (a
    /// connection whose first byte is 0x16, a TLS handshake record) beside plain TURN.
    pub tls: Option<Arc<tls::CertStore>>,
    /// Append a usage record (a JSON line) per ended allocation to this file (`usage-log`).
    pub usage_log: Option<PathBuf>,
    /// `/readyz` fails while fewer relay ports than this are free (`ready-min-free-ports`);
    /// 0 turns the check off. More than the pool fails start.
    pub ready_min_free_ports: usize,
    /// The XDP fast path for ChannelData (`xdp`, `xdp-interface`); off by default.
    pub xdp: xdp::XdpConfig,
}

impl ServerConfig {
    /// A config with one worker per CPU, batched I/O, the default listening buffers and no
    /// TCP listener, whose relay sockets of `relay_bind_ip`'s family bind to it.
    pub fn new(listen: Vec<SocketAddr>, relay_bind_ip: IpAddr, core: tern_proto::Config) -> Self {
        let mut relay_bind_ips = [None, None];
        relay_bind_ips[Family::of(relay_bind_ip).index()] = Some(relay_bind_ip);
        Self {
            listen,
            tcp_listen: Vec::new(),
            relay_bind_ips,
            core,
            workers: 0,
            batched_io: true,
            buffers: SocketBuffers::default(),
            proxy_listen: Vec::new(),
            proxy_protocol: false,
            tcp_idle_timeout: Self::DEFAULT_TCP_IDLE,
            handshake_timeout: Self::DEFAULT_HANDSHAKE,
            max_connections: None,
            max_connections_per_ip: Self::DEFAULT_MAX_CONNECTIONS_PER_IP,
            tls: None,
            usage_log: None,
            ready_min_free_ports: 0,
            xdp: xdp::XdpConfig::default(),
        }
    }

    /// The address relay sockets of `family` bind to: the configured one, else the
    /// family's unspecified address.
    pub fn relay_bind_ip(&self, family: Family) -> IpAddr {
        self.relay_bind_ips[family.index()].unwrap_or(match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        })
    }

    /// The default [`ServerConfig::tcp_idle_timeout`]: 30 s.
    pub const DEFAULT_TCP_IDLE: Duration = Duration::from_secs(30);
    /// The default [`ServerConfig::handshake_timeout`]: 10 s.
    pub const DEFAULT_HANDSHAKE: Duration = Duration::from_secs(10);
    /// The default [`ServerConfig::max_connections`]: 20,000.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
    /// The default [`ServerConfig::max_connections_per_ip`]: 64.
    pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 64;
}

/// Open files kept free beside the relay sockets and client connections: listening sockets,
/// epoll and eventfds, the admin port's connections, log and configuration files.
const SPARE_FILES: u64 = 256;

/// Open files tern needs at least beside the relay sockets and listening sockets to start
/// (epoll, eventfds, the admin listener, a few connections, log and configuration files).
const MIN_SPARE_FILES: u64 = 64;

/// Raises the open-file limit for `relay_ports` relay sockets, `listeners` listening sockets
/// and the connections asked for, and returns how many connections fit (fewer, with a
/// warning, when the hard limit is too low). Fails, naming `ulimit -n` and the number
/// needed, when even the relay ports and listeners do not fit: a pool bound only in part
/// would fail allocations later for no visible reason.
fn fit_connections(relay_ports: u64, listeners: u64, asked: Option<usize>) -> io::Result<usize> {
    let want = asked.unwrap_or(ServerConfig::DEFAULT_MAX_CONNECTIONS) as u64;
    let others = relay_ports + listeners + SPARE_FILES;
    let limit = tern_sys::raise_nofile_limit(others + want);
    let needed = relay_ports + listeners + MIN_SPARE_FILES;
    if limit < needed {
        return Err(io::Error::other(format!(
            "the open-file limit is {limit}, too low for {relay_ports} relay ports and \
             {listeners} listening sockets: tern needs at least {needed} open files \
             ({needed_conns} to also take max-connections). Raise it before starting tern: \
             `ulimit -n {needed}` in the shell, LimitNOFILE={needed} in a systemd unit, \
             `docker run --ulimit nofile={needed}`; or narrow min-port..max-port",
            needed_conns = others + want,
        )));
    }
    let fit = limit.saturating_sub(others).min(want);
    if fit < want {
        let message = "the open-file limit cannot hold max-connections beside the relay \
                       ports; fewer connections are accepted (raise the hard limit, ulimit -Hn \
                       or LimitNOFILE=, or lower max-connections)";
        if asked.is_some() {
            warn!(
                limit,
                relay_ports,
                asked = want,
                accepted = fit,
                "{message}"
            );
        } else {
            info!(
                limit,
                relay_ports,
                default = want,
                accepted = fit,
                "{message}"
            );
        }
    }
    Ok(fit as usize)
}

/// A running server: its worker threads and what they share.
#[derive(Debug)]
pub struct RunningServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    shared: SharedState,
    listen: Vec<SocketAddr>,
    tcp_listen: Vec<SocketAddr>,
    workers: Workers,
    usage: Option<usage::UsageWriter>,
}

impl RunningServer {
    /// The addresses actually listened on (with the port filled in when 0 was asked).
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen
    }

    /// The TCP addresses actually listened on (those that require a PROXY header too).
    pub fn tcp_listen_addrs(&self) -> &[SocketAddr] {
        &self.tcp_listen
    }

    /// The handle on the workers: metrics, heartbeats, drain and reload.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// What the workers share: pool and quota counters.
    pub fn shared(&self) -> &SharedState {
        &self.shared
    }

    /// Reopens the usage log's path (SIGHUP: logrotate moved the file); nothing without
    /// `usage-log`.
    pub fn reopen_usage_log(&self) {
        if let Some(u) = &self.usage {
            u.reopen();
        }
    }

    /// Tells the workers to end their allocations and stop, and waits for them (and for
    /// the usage log to take their last records).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.workers.wake_all();
        for t in self.threads {
            let _ = t.join();
        }
        if let Some(u) = self.usage {
            u.join();
        }
        info!("tern stopped");
    }
}

/// A socket of `addr`'s family; an IPv6 one is IPv6-only (`IPV6_V6ONLY`), so `::` and
/// `0.0.0.0` on one port are two sockets, each for its own family, as on a host where the
/// kernel's default (`net.ipv6.bindv6only`) says otherwise.
fn socket_for(addr: SocketAddr, ty: Type, protocol: Protocol) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    Ok(sock)
}

fn listener(addr: SocketAddr, buffers: &SocketBuffers, report: bool) -> io::Result<UdpSocket> {
    let sock = socket_for(addr, Type::DGRAM, Protocol::UDP)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on udp {addr}: {e}")))?;
    let sock: UdpSocket = sock.into();
    buffers.apply(&sock, report);
    Ok(sock)
}

/// A TCP listening socket of one worker, in the `SO_REUSEPORT` group of `addr`.
fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = socket_for(addr, Type::STREAM, Protocol::TCP)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on tcp {addr}: {e}")))?;
    sock.listen(1024)?;
    Ok(sock.into())
}

/// Starts the XDP fast path if the config asks for it. `Ok(None)` when it is off or could
/// not start in `auto` (logged); an error when an explicit mode cannot be had.
#[cfg(feature = "xdp")]
fn start_xdp(config: &ServerConfig) -> io::Result<Option<xdp::Shared>> {
    xdp_outcome(config, xdp::start(&config.xdp, xdp_context(config)))
}

#[cfg(not(feature = "xdp"))]
fn start_xdp(config: &ServerConfig) -> io::Result<Option<()>> {
    xdp_outcome(config, xdp::start(&config.xdp, xdp_context(config)))
}

fn xdp_context(config: &ServerConfig) -> xdp::Context {
    xdp::Context {
        relay_ips: xdp::RelayIps::new(config.relay_bind_ips),
        advertised: xdp::RelayIps::new(Family::ALL.map(|f| config.core.relayed_ip(f))),
        max_bps: config.core.max_bps,
    }
}

fn xdp_outcome<T: std::fmt::Debug>(
    config: &ServerConfig,
    started: Result<Option<T>, xdp::NotStarted>,
) -> io::Result<Option<T>> {
    match started {
        Ok(Some(a)) => {
            info!(xdp = config.xdp.mode.label(), attached = ?a, "xdp fast path attached (ChannelData over UDP)");
            Ok(Some(a))
        }
        Ok(None) => Ok(None),
        Err(e) if e.fatal => Err(io::Error::other(format!(
            "xdp={}: {}",
            config.xdp.mode.label(),
            e.reason
        ))),
        Err(e) => {
            warn!(xdp = config.xdp.mode.label(), reason = %e.reason, "xdp fast path not started; relaying in userspace only");
            Ok(None)
        }
    }
}

/// Binds every socket and starts the workers; returns at once.
pub fn start(mut config: ServerConfig) -> io::Result<RunningServer> {
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // The first worker's sockets fix the ports (port 0 becomes a real one); the others join
    // their SO_REUSEPORT groups.
    let mut first = Vec::new();
    for addr in &config.listen {
        first.push(listener(*addr, &config.buffers, true)?);
    }
    let listen: Vec<SocketAddr> = first
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<io::Result<_>>()?;
    let mut per_worker = vec![first];
    for _ in 1..workers {
        per_worker.push(
            listen
                .iter()
                .map(|a| listener(*a, &config.buffers, false))
                .collect::<io::Result<_>>()?,
        );
    }
    // TCP listens on the port UDP got when port 0 was asked, so both share one port.
    let tcp_asked: Vec<SocketAddr> = config
        .tcp_listen
        .iter()
        .map(|a| match listen.iter().find(|u| u.ip() == a.ip()) {
            Some(u) if a.port() == 0 => SocketAddr::new(a.ip(), u.port()),
            _ => *a,
        })
        .collect();
    // Each TCP port with whether it requires a PROXY header.
    let tcp_asked: Vec<(SocketAddr, bool)> = tcp_asked
        .into_iter()
        .map(|a| (a, config.proxy_protocol))
        .chain(config.proxy_listen.iter().map(|a| (*a, true)))
        .collect();
    let mut tcp_first = Vec::new();
    for (addr, _) in &tcp_asked {
        tcp_first.push(tcp_listener(*addr)?);
    }
    let tcp_ports: Vec<(SocketAddr, bool)> = tcp_first
        .iter()
        .zip(&tcp_asked)
        .map(|(l, (_, proxy))| Ok((l.local_addr()?, *proxy)))
        .collect::<io::Result<_>>()?;
    let mut tcp_per_worker = vec![tcp_first];
    for _ in 1..workers {
        tcp_per_worker.push(
            tcp_ports
                .iter()
                .map(|(a, _)| tcp_listener(*a))
                .collect::<io::Result<_>>()?,
        );
    }
    let range = config.core.relay_port_range.clone();
    let listeners = (listen.len() + tcp_ports.len()) * workers;
    let relay_families = config.core.relay_families().count() as u64;
    let max_connections = fit_connections(
        (u64::from(*range.end()) - u64::from(*range.start()) + 1) * relay_families,
        listeners as u64,
        config.max_connections,
    )?;
    let limits = Arc::new(ConnLimits::new(
        max_connections,
        config.max_connections_per_ip,
    ));
    let bind_ips = Family::ALL.map(|f| config.core.relayed_ip(f).map(|_| config.relay_bind_ip(f)));
    let relays = Arc::new(RelayTable::bind(bind_ips, range.clone())?);
    config.core.relay_ports = Family::ALL.map(|f| relays.ports(f));
    let pool: usize = config.core.relay_ports.iter().map(Vec::len).sum();
    if config.ready_min_free_ports > pool {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "ready-min-free-ports={} is more than the {pool} relay ports of the pool                  (min-port..max-port in each relayed family): /readyz would never pass",
                config.ready_min_free_ports
            ),
        ));
    }
    let fast_path = start_xdp(&config)?;
    let usage_stats = Arc::new(usage::UsageStats::default());
    let (usage_sink, usage_writer) =
        usage::start(config.usage_log.as_deref(), usage_stats.clone())?;
    for addr in &listen {
        info!(listen = %addr, workers, batched_io = config.batched_io, "tern listening (udp)");
    }
    for (addr, proxy) in &tcp_ports {
        if *proxy {
            info!(listen = %addr, workers, "tern listening (tcp, PROXY protocol header required)");
        } else {
            info!(listen = %addr, workers, "tern listening (tcp)");
        }
    }
    info!(
        max_connections,
        max_connections_per_ip = config.max_connections_per_ip,
        "stream connection limits"
    );
    for family in config.core.relay_families() {
        info!(
            family = family.label(),
            relay_ip = %config.relay_bind_ip(family),
            advertised = ?config.core.relayed_ip(family),
            ports = config.core.relay_ports[family.index()].len(),
            min_port = range.start(),
            max_port = range.end(),
            "relay ports bound"
        );
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
    let shared = SharedState::new(
        config.core.relay_ports.clone(),
        u64::from_le_bytes(seed[16..24].try_into().expect("8 bytes")),
    );
    let guard = config.core.guard;
    info!(
        unauthorized_per_second = guard.unauthorized_per_second,
        unauthorized_burst = guard.unauthorized_per_second * tern_proto::UNAUTHORIZED_BURST_SECONDS,
        auth_failure_limit = guard.auth_failures,
        auth_failure_window_s = guard.auth_failure_window.as_secs(),
        auth_lockout_s = guard.lockout.as_secs(),
        tables_kib = shared.guard_footprint() / 1024,
        "flood and brute-force limits (0: off)"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::with_capacity(workers);
    let snapshots = Arc::new((0..workers).map(|_| Default::default()).collect::<Vec<_>>());
    let mut commands = Vec::with_capacity(workers);
    let mut wakers = Vec::with_capacity(workers);
    for (id, (sockets, tcp_sockets)) in per_worker.into_iter().zip(tcp_per_worker).enumerate() {
        let core = tern_proto::Server::with_shared(
            config.core.clone(),
            Instant::now(),
            seed,
            shared.clone(),
            id as u32,
        );
        let worker = Worker::new(
            id as u32,
            core,
            ListeningSockets {
                udp: listen.iter().copied().zip(sockets).collect(),
                tcp: tcp_ports
                    .iter()
                    .zip(tcp_sockets)
                    .map(|(&(_, proxy), listener)| TcpPort { listener, proxy })
                    .collect(),
                timeouts: StreamTimeouts {
                    idle: config.tcp_idle_timeout,
                    handshake: config.handshake_timeout,
                },
                limits: limits.clone(),
                tls: config.tls.clone(),
            },
            relays.clone(),
            #[cfg(feature = "xdp")]
            fast_path.clone(),
            config.batched_io,
            stop.clone(),
            {
                let (tx, rx) = std::sync::mpsc::channel();
                let waker = Arc::new(tern_sys::Waker::new()?);
                commands.push(tx);
                wakers.push(waker.clone());
                WorkerPort {
                    snapshots: snapshots.clone(),
                    index: id,
                    commands: rx,
                    waker,
                    usage: usage_sink.clone(),
                }
            },
        )?;
        threads.push(
            std::thread::Builder::new()
                .name(format!("tern-worker-{id}"))
                .spawn(move || worker.run())?,
        );
    }
    let workers = Workers {
        snapshots,
        commands,
        wakers,
        shared: shared.clone(),
        usage: usage_stats,
    };
    drop(usage_sink);
    // The attachment lives as long as a worker holds it; nothing else needs it.
    #[cfg(feature = "xdp")]
    drop(fast_path);
    #[cfg(not(feature = "xdp"))]
    let _ = fast_path;
    Ok(RunningServer {
        stop,
        threads,
        shared,
        listen,
        tcp_listen: tcp_ports.into_iter().map(|(a, _)| a).collect(),
        workers,
        usage: usage_writer,
    })
}

/// Binds every socket, then serves until `shutdown` completes; allocations end and their
/// ports are released before it returns.
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let server = start(config)?;
    shutdown.await;
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .map_err(io::Error::other)
}

/// Builds a current-thread runtime and runs [`run`] on it until `shutdown` completes.
pub fn run_blocking(config: ServerConfig, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(config, shutdown))
}
