//! tern on the server end of a [`VethPair`], for the suites that relay through it from the
//! generator's namespace, and the reading of its `/metrics` they share: with the XDP fast
//! path (`xdp=native`) for the XDP suites, or in userspace alone for the load generator's
//! namespace test ([`Options::userspace`]).
//!
//! Needs root and, for the fast path, a tern built with `--features xdp`; [`prerequisites`]
//! reports root, `ip`, `clang` and `ethtool`, and [`XdpTern::start`] a binary without the
//! feature (a skip with a note, a failure whenever `TERN_XDP` is set).

use std::fs::File;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{is_root, VethPair};
use crate::{http_get, prereq, tern_bin};

/// tern's listening port on the pair's server address.
pub const PORT: u16 = 3478;
/// The relay port range, `--min-port`..=`--max-port`, unless [`Options::relay_ports`] says
/// otherwise.
pub const RELAY_PORTS: RangeInclusive<u16> = 40000..=40099;
/// The admin listener, on the server namespace's own loopback.
const ADMIN: &str = "127.0.0.1:9641";

/// How [`XdpTern::launch`] starts tern: REST credentials from `secret`, listening on
/// [`PORT`] of the pair's IPv4 server address and relaying from it, no TCP, and what the
/// fields add.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--static-auth-secret` (with `--use-auth-secret`).
    pub secret: String,
    /// `--realm`.
    pub realm: String,
    /// `Some(suite)`: the fast path (`xdp=native`) on the pair's server end, `suite` naming
    /// the test target in the note when the binary lacks the feature. `None`: userspace only.
    pub xdp: Option<String>,
    /// `--min-port`..=`--max-port`.
    pub relay_ports: RangeInclusive<u16>,
    /// One `--allowed-peer-ip` each.
    pub allowed_peers: Vec<String>,
    /// Arguments put before all the others (more listening and relay addresses, flags).
    pub more: Vec<String>,
}

impl Options {
    /// The fast path, [`RELAY_PORTS`], peers allowed in the pair's `10.<net>.0.0/16`.
    pub fn xdp(pair: &VethPair, secret: &str, realm: &str, suite: &str) -> Options {
        let net = pair.server_ip.octets()[1];
        Options {
            secret: secret.into(),
            realm: realm.into(),
            xdp: Some(suite.into()),
            relay_ports: RELAY_PORTS,
            allowed_peers: vec![format!("10.{net}.0.0-10.{net}.255.255")],
            more: Vec::new(),
        }
    }

    /// [`Options::xdp`] without the fast path: tern relays in userspace alone.
    pub fn userspace(pair: &VethPair, secret: &str, realm: &str) -> Options {
        Options {
            xdp: None,
            ..Options::xdp(pair, secret, realm, "")
        }
    }

    /// Adds listening and relaying on the pair's IPv6 server address too (the fast path on
    /// both families), an Allocate that names no family getting the client's own.
    pub fn dual_stack(mut self, pair: &VethPair) -> Options {
        let ip6 = pair.server_ip6;
        self.more.splice(
            0..0,
            [format!("--listening-ip={ip6}"), format!("--relay-ip={ip6}")],
        );
        self.more
            .push("--allocation-default-address-family=keep".into());
        self
    }

    /// The command line after `serve`.
    fn args(&self, pair: &VethPair) -> Vec<String> {
        let ip = pair.server_ip.to_string();
        let mut args = self.more.clone();
        args.extend([
            format!("--listening-ip={ip}"),
            format!("--relay-ip={ip}"),
            format!("--listening-port={PORT}"),
            format!("--min-port={}", self.relay_ports.start()),
            format!("--max-port={}", self.relay_ports.end()),
            format!("--realm={}", self.realm),
            "--use-auth-secret".into(),
            format!("--static-auth-secret={}", self.secret),
        ]);
        args.extend(
            self.allowed_peers
                .iter()
                .map(|r| format!("--allowed-peer-ip={r}")),
        );
        args.extend(["--no-tcp".into(), format!("--admin-listen={ADMIN}")]);
        if self.xdp.is_some() {
            args.extend([
                "--xdp=native".into(),
                format!("--xdp-interface={}", pair.srv_dev),
            ]);
        }
        args
    }
}

/// tern running inside the pair's server namespace as its [`Options`] say (by default with
/// `xdp=native` on its veth end); killed on drop (its log printed if the test failed).
pub struct XdpTern {
    child: Child,
    log: PathBuf,
    srv: String,
}

impl XdpTern {
    /// Starts tern with [`Options::xdp`] and waits for `/healthz` and its attach line;
    /// `None` (after [`prereq::note_skip`]) when the binary was built without the feature, a
    /// panic instead when `TERN_XDP` is set. `suite` names the test target in the note.
    pub fn start(pair: &VethPair, secret: &str, realm: &str, suite: &str) -> Option<XdpTern> {
        XdpTern::launch(pair, &Options::xdp(pair, secret, realm, suite))
    }

    /// Starts tern as `opts` says and waits for `/healthz` (and, with the fast path, its
    /// attach line); `None` only as [`XdpTern::start`] says, and never in userspace.
    pub fn launch(pair: &VethPair, opts: &Options) -> Option<XdpTern> {
        let log = std::env::temp_dir().join(format!("{}-tern.log", pair.srv));
        let out = File::create(&log).expect("log file");
        let child = VethPair::exec(&pair.srv, tern_bin())
            .arg("serve")
            .args(opts.args(pair))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("spawn tern");
        let mut tern = XdpTern {
            child,
            log,
            srv: pair.srv.clone(),
        };
        let start = Instant::now();
        loop {
            if let Some(status) = tern.child.try_wait().expect("try_wait") {
                let text = tern.output();
                if let Some(suite) = opts
                    .xdp
                    .as_deref()
                    .filter(|_| text.contains("built without the xdp feature"))
                {
                    // `cargo test --workspace` builds tern without the feature, so there the
                    // suite only notes the skip; `.ci/run` runs it again on a feature build
                    // with TERN_XDP=1, where a binary without it is a failure (CI or not).
                    let what = "tern was built without the xdp feature";
                    let how = format!(
                        "cargo build -p tern --features xdp, then TERN_XDP=1 cargo test -p tern-e2e --test {suite}"
                    );
                    assert!(
                        std::env::var_os("TERN_XDP").is_none(),
                        "TERN_XDP is set but {what} ({}); {how}",
                        tern_bin().display()
                    );
                    prereq::note_skip(what, &how);
                    return None;
                }
                panic!("tern exited ({status}):\n{text}");
            }
            if tern.get("/healthz").is_ok_and(|(c, _)| c == 200) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "tern not healthy within 15 s:\n{}",
                tern.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            opts.xdp.is_none() || tern.output().contains("xdp fast path attached"),
            "no attach line:\n{}",
            tern.output()
        );
        Some(tern)
    }

    /// `GET path` on the admin port, from inside the server namespace.
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        VethPair::within(&self.srv, || http_get(ADMIN.parse().unwrap(), path))
    }

    /// Waits (up to 5 s: the fast path's counters are folded every second, metrics published
    /// every 100 ms) until `check` accepts `/metrics`; returns the last text.
    pub fn wait_metrics(&self, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.get("/metrics").expect("GET /metrics").1;
            if check(&text) || start.elapsed() > Duration::from_secs(5) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (up to 10 s) until at least `min` allocations were created and every one has
    /// ended; returns what their `allocation ended` lines (the usage records) counted in
    /// total: `[packets_to_peers, packets_to_client]`. Panics with the log on timeout.
    pub fn wait_allocations_ended(&self, min: usize) -> [u64; 2] {
        let start = Instant::now();
        loop {
            let log = self.output();
            let created = log.matches("allocation created").count();
            let ended: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("allocation ended"))
                .collect();
            if created >= min && ended.len() == created {
                let field = |line: &str, key: &str| -> u64 {
                    let at = line
                        .find(&format!(" {key}="))
                        .unwrap_or_else(|| panic!("{key} in {line}"));
                    line[at + key.len() + 2..]
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("{key} in {line}"))
                };
                return ended.iter().fold([0, 0], |[p, c], l| {
                    [
                        p + field(l, "packets_to_peers"),
                        c + field(l, "packets_to_client"),
                    ]
                });
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{created} allocations created, {} ended after 10 s:\n{log}",
                ended.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// tern's log so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address tern listens on.
    pub fn addr(pair: &VethPair) -> SocketAddr {
        SocketAddr::from((pair.server_ip, PORT))
    }
}

impl Drop for XdpTern {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- tern output ----\n{}\n----", self.output());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The sum of the series of `name` that carry every label in `labels` (`key="value"`).
pub fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            (rest.is_empty() || rest.starts_with('{'))
                .then_some(())
                .filter(|()| labels.iter().all(|x| rest.contains(x)))?;
            value.parse::<f64>().ok()
        })
        .sum::<f64>() as u64
}

/// Root, `ip`, `clang` and `ethtool`, or a skip note (a failure under CI).
pub fn prerequisites() -> bool {
    if !is_root() {
        prereq::missing(
            "not root (network namespaces and XDP need CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF)",
            "run as root",
        );
        return false;
    }
    prereq::tool("ip", "apt-get install -y iproute2").is_some()
        && prereq::tool("clang", "apt-get install -y clang").is_some()
        && prereq::tool("ethtool", "apt-get install -y ethtool").is_some()
}
