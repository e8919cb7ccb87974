//! The load generator's network rule, tested where it matters: a private address is refused
//! in the host's network namespace and in a namespace without a name (`unshare --net`), and
//! accepted inside a namespace that `ip netns add` made, where `tern-load` then relays
//! through tern over a veth pair as `benches/xdp.sh` runs it.
//!
//! The refusals need nothing; the rest needs root, `ip`, `ethtool`, `clang` and `unshare`,
//! and skips with a note without them (a failure with `CI` set). Network rule: the addresses
//! (10.201.202.0/24) exist only inside the test's two namespaces, deleted when it ends.

use std::fs::File;
use std::net::SocketAddrV4;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tern_e2e::netns::{is_root, VethPair};
use tern_e2e::{http_get, prereq, run_bounded, tern_bin, Output};

const SECRET: &str = "netns-load-secret";
const ADMIN: &str = "127.0.0.1:9642";

/// A numeric field of the generator's JSON line.
fn field(json: &str, name: &str) -> f64 {
    let key = format!("\"{name}\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + key.len();
    let end = json[at..].find([',', '}']).map_or(json.len(), |e| at + e);
    json[at..end]
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e} in {json}"))
}

/// tern-load's arguments for a one-second closed load on the given addresses.
fn load_args(server: &str, client: &str, peer: &str) -> Vec<String> {
    [
        "--server",
        server,
        "--client-ip",
        client,
        "--peer-ip",
        peer,
        "--secret",
        SECRET,
        "--mode",
        "closed",
        "--sessions",
        "4",
        "--window",
        "4",
        "--warmup",
        "0.3",
        "--duration",
        "1",
        "--drain-ms",
        "300",
        "--json",
    ]
    .map(String::from)
    .to_vec()
}

/// Asserts that the generator refused its addresses (and so sent nothing).
fn assert_refused(out: &Output, why: &str) {
    assert!(
        !out.success(),
        "tern-load accepted a private address {why}:\n{}",
        out.text
    );
    assert!(
        out.text.contains("loopback only"),
        "tern-load failed {why}, but not on the network rule:\n{}",
        out.text
    );
}

#[test]
fn a_private_address_is_refused_in_the_hosts_namespace() {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tern-load")).args(load_args(
            "10.201.202.1:3478",
            "10.201.202.2",
            "10.201.202.3",
        )),
        Duration::from_secs(10),
    );
    assert_refused(&out, "in the host's namespace");
    assert!(out.text.contains("--server 10.201.202.1"), "{}", out.text);
}

#[test]
fn a_private_address_is_refused_in_a_namespace_without_a_name() {
    if !is_root() {
        prereq::missing(
            "not root (unshare --net needs CAP_SYS_ADMIN)",
            "run as root",
        );
        return;
    }
    let Some(unshare) = prereq::tool("unshare", "apt-get install -y util-linux") else {
        return;
    };
    let out = run_bounded(
        Command::new(unshare)
            .args(["--net", "--"])
            .arg(env!("CARGO_BIN_EXE_tern-load"))
            .args(load_args(
                "10.201.202.1:3478",
                "10.201.202.2",
                "10.201.202.3",
            )),
        Duration::from_secs(10),
    );
    assert_refused(&out, "in an unnamed namespace");
    assert!(
        out.text.contains("no name under /run/netns"),
        "{}",
        out.text
    );
}

/// tern (userspace) in the pair's server namespace; killed on drop.
struct Tern {
    child: Child,
    log: std::path::PathBuf,
}

impl Tern {
    fn start(pair: &VethPair) -> Tern {
        let log = std::env::temp_dir().join(format!("{}-load-tern.log", pair.srv));
        let out = File::create(&log).expect("log file");
        let ip = pair.server_ip.to_string();
        let child = VethPair::exec(&pair.srv, tern_bin())
            .arg("serve")
            .args([
                format!("--listening-ip={ip}"),
                format!("--relay-ip={ip}"),
                "--listening-port=3478".into(),
                "--min-port=49152".into(),
                "--max-port=49252".into(),
                "--realm=bench".into(),
                "--use-auth-secret".into(),
                format!("--static-auth-secret={SECRET}"),
                "--allowed-peer-ip=10.201.202.0-10.201.202.255".into(),
                "--relay-threads=1".into(),
                "--unauthorized-ratelimit=false".into(),
                "--no-tcp".into(),
                format!("--admin-listen={ADMIN}"),
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("spawn tern");
        let mut tern = Tern { child, log };
        let start = Instant::now();
        loop {
            if let Some(status) = tern.child.try_wait().expect("try_wait") {
                panic!("tern exited ({status}):\n{}", tern.output());
            }
            let healthy = VethPair::within(&pair.srv, || {
                http_get(ADMIN.parse().unwrap(), "/healthz").is_ok_and(|(c, _)| c == 200)
            });
            if healthy {
                return tern;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "tern not healthy within 15 s:\n{}",
                tern.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tern {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- tern output ----\n{}\n----", self.output());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

#[test]
fn tern_load_relays_on_private_addresses_inside_namespaces_of_its_own() {
    if !is_root() {
        prereq::missing(
            "not root (network namespaces need CAP_SYS_ADMIN, CAP_NET_ADMIN)",
            "run as root",
        );
        return;
    }
    if prereq::tool("ip", "apt-get install -y iproute2").is_none()
        || prereq::tool("clang", "apt-get install -y clang").is_none()
        || prereq::tool("ethtool", "apt-get install -y ethtool").is_none()
    {
        return;
    }
    let pair = VethPair::new(202);
    let tern = Tern::start(&pair);
    let server = SocketAddrV4::new(pair.server_ip, 3478).to_string();
    let (client, peer) = (pair.client_ip.to_string(), pair.peer_ip.to_string());
    let out = run_bounded(
        VethPair::exec(&pair.gen, env!("CARGO_BIN_EXE_tern-load"))
            .args(load_args(&server, &client, &peer)),
        Duration::from_secs(20),
    );
    assert!(
        out.success(),
        "tern-load in {} failed:\n{}\ntern:\n{}",
        pair.gen,
        out.text,
        tern.output()
    );
    let json = out
        .text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{}", out.text));
    assert!(field(json, "relayed") > 0.0, "{json}");
    assert_eq!(field(json, "failures"), 0.0, "{json}");
    drop(tern);
}
