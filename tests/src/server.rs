//! Starting a TURN server (tern or coturn) on loopback for one test.

use crate::bin::{coturn_bin, tern_bin};
use crate::ports::PortBlock;
use crate::process::Capture;
use crate::stun::binding_request_once;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which server binary a test runs against. Both take coturn's turnserver.conf keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// `tern serve` (see [`crate::tern_bin`]).
    Tern,
    /// coturn's `turnserver`, to check the tests themselves (and for comparisons).
    Coturn,
}

impl ServerKind {
    /// Whether this kind's binary can run here. coturn's `turnserver` may be missing: then
    /// the test is reported as skipped (or fails with `CI` set; see [`crate::prereq`]).
    /// [`crate::for_each_server`] asks before each test.
    pub fn available(self) -> bool {
        match self {
            ServerKind::Tern => true,
            ServerKind::Coturn => coturn_bin().is_some(),
        }
    }
}

/// How clients authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// TURN REST API: `--use-auth-secret --static-auth-secret SECRET`.
    RestSecret(String),
    /// Static long-term users: `--lt-cred-mech --user name:password` for each.
    Users(Vec<(String, String)>),
    /// TURN REST API secrets read from a file, one a line (tern only:
    /// `--static-auth-secret-file PATH`; tern re-reads it when it changes).
    SecretFile(PathBuf),
}

/// The knobs the suites turn; everything else is fixed (loopback, UDP only).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Authentication mechanism.
    pub auth: Auth,
    /// `--realm`.
    pub realm: String,
    /// `--allow-loopback-peers` (needed to relay to peers on 127.0.0.1).
    pub allow_loopback_peers: bool,
    /// `--fingerprint`.
    pub fingerprint: bool,
    /// Listen on TCP too. tern always does (its default); coturn is started with `--no-tcp`
    /// unless this is set.
    pub tcp: bool,
    /// Dual-stack: listen and relay on `::1` too (`--listening-ip=::1`,
    /// `--relay-ip=::1`), beside 127.0.0.1 ([`TestServer::addr6`]).
    pub ipv6: bool,
    /// More `--key=value` or bare `--flag` arguments, passed to either kind as is.
    pub extra_args: Vec<String>,
    /// Environment variables for the server process (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl ServerOptions {
    /// REST-secret auth, loopback peers allowed, FINGERPRINT on.
    pub fn rest(secret: &str, realm: &str) -> ServerOptions {
        ServerOptions {
            auth: Auth::RestSecret(secret.to_owned()),
            realm: realm.to_owned(),
            allow_loopback_peers: true,
            fingerprint: true,
            tcp: false,
            ipv6: false,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// One static long-term user, loopback peers allowed, FINGERPRINT on.
    pub fn user(name: &str, password: &str, realm: &str) -> ServerOptions {
        ServerOptions {
            auth: Auth::Users(vec![(name.to_owned(), password.to_owned())]),
            ..ServerOptions::rest("", realm)
        }
    }
}

/// How long a server gets to answer its first Binding request.
const STARTUP_LIMIT: Duration = Duration::from_secs(15);

/// A running server. Killed on drop, also when the test panics; then its output is printed
/// so the test failure shows it.
pub struct TestServer {
    kind: ServerKind,
    ports: PortBlock,
    options: ServerOptions,
    child: Child,
    output: Capture,
    readers: Vec<JoinHandle<()>>,
    command_line: String,
}

impl TestServer {
    /// Starts a server of `kind` on a fresh loopback port block and waits until it answers a
    /// STUN Binding request. Panics (with the server's output) if it does not within 15 s.
    pub fn start(kind: ServerKind, opts: &ServerOptions) -> TestServer {
        let ports = PortBlock::reserve();
        let (mut child, command_line) = spawn(kind, &ports, opts);
        let (output, readers) = Capture::attach(&mut child);
        let mut server = TestServer {
            kind,
            ports,
            options: opts.clone(),
            child,
            output,
            readers,
            command_line,
        };
        server.wait_ready(server.addr());
        if opts.ipv6 {
            server.wait_ready(server.addr6());
        }
        server
    }

    /// `kill -9`, then at once the same server again: same ports, same arguments. Waits
    /// until it answers a Binding (panics after 15 s, with the output of both runs). The
    /// output keeps the first run's, then a marker line, then the new run's.
    pub fn kill_and_restart(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        let status = self.child.wait().expect("wait for the killed server");
        for t in self.readers.drain(..) {
            let _ = t.join();
        }
        self.output
            .push(format!("---- killed ({status}); started again ----\n").as_bytes());
        let (mut child, command_line) = spawn(self.kind, &self.ports, &self.options);
        self.readers = self.output.attach_more(&mut child);
        self.child = child;
        self.command_line = command_line;
        self.wait_ready(self.addr());
        if self.options.ipv6 {
            self.wait_ready(self.addr6());
        }
    }

    fn wait_ready(&mut self, addr: SocketAddr) {
        let start = Instant::now();
        let mut exited = None;
        while start.elapsed() < STARTUP_LIMIT {
            if binding_request_once(addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                exited = Some(status);
                break;
            }
        }
        let why = exited.map_or_else(|| "timed out".to_owned(), |s| format!("exited: {s}"));
        panic!(
            "{:?} did not answer a STUN Binding on {} within {:?} ({why})\ncommand: {}\noutput:\n{}",
            self.kind,
            addr,
            start.elapsed(),
            self.command_line,
            self.output()
        );
    }

    /// Which server this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The server's process id (for /proc readings: CPU, resident memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The STUN/TURN listening address (UDP, and TCP for tern or with
    /// [`ServerOptions::tcp`]; 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.listen_port()))
    }

    /// The STUN/TURN listening address on `::1`, for a server started with
    /// [`ServerOptions::ipv6`].
    pub fn addr6(&self) -> SocketAddr {
        SocketAddr::from((Ipv6Addr::LOCALHOST, self.ports.listen_port()))
    }

    /// tern's admin HTTP address (/metrics, /healthz, /readyz); loopback.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.admin_port()))
    }

    /// Sends a signal (`"TERM"`, `"HUP"`, `"USR1"`, ...) to the server process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg("-s")
            .arg(name)
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits up to `limit` for the server to exit by itself; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The configured relay port range.
    pub fn relay_range(&self) -> RangeInclusive<u16> {
        self.ports.relay_range()
    }

    /// A loopback port reserved for a test peer, outside the relay range.
    pub fn peer_port(&self) -> u16 {
        self.ports.peer_port()
    }

    /// The server's stdout and stderr so far.
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Waits until the admin port's `/healthz` answers 200 (tern only: its workers have
    /// reported); panics after `limit`.
    pub fn wait_healthy(&self, limit: Duration) {
        let start = Instant::now();
        while !crate::http_get(self.admin_addr(), "/healthz").is_ok_and(|(code, _)| code == 200) {
            assert!(
                start.elapsed() < limit,
                "/healthz never answered 200 within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of one series on tern's `/metrics`, e.g.
    /// `tern_allocations_ended_total{reason="connection_closed",transport="tcp"}`; panics if
    /// it is missing.
    pub fn metric(&self, series: &str) -> f64 {
        let (code, text) = crate::http_get(self.admin_addr(), "/metrics").expect("GET /metrics");
        assert_eq!(code, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    }

    /// Waits (up to 3 s; workers publish every 100 ms) until `series` reads `want`.
    pub fn wait_metric(&self, series: &str, want: f64) {
        let start = Instant::now();
        loop {
            let got = self.metric(series);
            if got == want {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{series} is {got}, not {want}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics (with the output) if the server has exited, e.g. crashed during the test.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "{:?} exited during the test: {status}\ncommand: {}\noutput:\n{}",
                self.kind,
                self.command_line,
                self.output()
            );
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for t in self.readers.drain(..) {
            let _ = t.join();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {:?} server output ({}) ----\n{}\n---- end of server output ----",
                self.kind,
                self.command_line,
                self.output()
            );
        }
    }
}

/// Starts a server of `kind` on `ports` with `opts`, its output piped; returns the child and
/// its command line (for messages).
fn spawn(kind: ServerKind, ports: &PortBlock, opts: &ServerOptions) -> (Child, String) {
    let mut cmd = match kind {
        ServerKind::Tern => {
            let mut cmd = Command::new(tern_bin());
            cmd.arg("serve");
            // Each server its own admin port (the default, 9641, is shared by all).
            cmd.arg(format!("--admin-listen=127.0.0.1:{}", ports.admin_port()));
            if std::env::var_os("RUST_LOG").is_none() {
                // Error responses are logged at debug; failure messages want them.
                cmd.env("RUST_LOG", "debug");
            }
            cmd
        }
        ServerKind::Coturn => {
            let bin = coturn_bin().expect("coturn's turnserver (ask ServerKind::available)");
            let mut cmd = Command::new(bin);
            let pidfile = std::env::temp_dir().join(format!(
                "tern-e2e-coturn-{}-{}.pid",
                std::process::id(),
                ports.listen_port()
            ));
            cmd.arg("-n"); // no config file
            if !opts.tcp {
                cmd.arg("--no-tcp");
            }
            cmd.args([
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--no-rfc5780",
                "--log-file=stdout",
                "--simple-log",
            ]);
            cmd.arg(format!("--pidfile={}", pidfile.display()));
            cmd
        }
    };
    cmd.args(conf_args(ports, opts));
    cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
    let command_line = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command_line}: {e}"));
    (child, command_line)
}

/// turnserver.conf keys as `--key=value` arguments; both tern and coturn accept them.
fn conf_args(ports: &PortBlock, opts: &ServerOptions) -> Vec<String> {
    let relay = ports.relay_range();
    let mut args = vec![
        "--listening-ip=127.0.0.1".to_owned(),
        format!("--listening-port={}", ports.listen_port()),
        "--relay-ip=127.0.0.1".to_owned(),
        format!("--min-port={}", relay.start()),
        format!("--max-port={}", relay.end()),
        format!("--realm={}", opts.realm),
    ];
    match &opts.auth {
        Auth::RestSecret(secret) => {
            args.push("--use-auth-secret".to_owned());
            args.push(format!("--static-auth-secret={secret}"));
        }
        Auth::Users(users) => {
            args.push("--lt-cred-mech".to_owned());
            for (name, password) in users {
                args.push(format!("--user={name}:{password}"));
            }
        }
        Auth::SecretFile(path) => {
            args.push("--use-auth-secret".to_owned());
            args.push(format!("--static-auth-secret-file={}", path.display()));
        }
    }
    if opts.ipv6 {
        args.push("--listening-ip=::1".to_owned());
        args.push("--relay-ip=::1".to_owned());
    }
    if opts.allow_loopback_peers {
        args.push("--allow-loopback-peers".to_owned());
    }
    if opts.fingerprint {
        args.push("--fingerprint".to_owned());
    }
    args.extend(opts.extra_args.iter().cloned());
    args
}
