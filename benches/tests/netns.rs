//! The load generator's network rule, tested where it matters: a private address is refused
//! in the host's network namespace and in a namespace without a name (`unshare --net`), and
//! accepted inside a namespace that `ip netns add` made, where `tern-load` then relays
//! through tern over a veth pair as `benches/xdp.sh` runs it.
//!
//! The refusals need nothing; the rest needs root, `ip`, `ethtool`, `clang` and `unshare`,
//! and skips with a note without them (a failure with `CI` set). Network rule: the addresses
//! (10.201.202.0/24) exist only inside the test's two namespaces, deleted when it ends.

use std::net::SocketAddrV4;
use std::process::Command;
use std::time::Duration;

use tern_e2e::netns::{is_root, VethPair};
use tern_e2e::xdp_tern::{prerequisites, Options, XdpTern, PORT};
use tern_e2e::{prereq, run_bounded, Output};

mod common;
use common::field;

const SECRET: &str = "netns-load-secret";

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
fn start_tern(pair: &VethPair) -> XdpTern {
    let mut opts = Options::userspace(pair, SECRET, "bench");
    opts.relay_ports = 49152..=49252;
    opts.allowed_peers = vec!["10.201.202.0-10.201.202.255".into()];
    opts.more = ["--relay-threads=1", "--unauthorized-ratelimit=false"]
        .map(String::from)
        .to_vec();
    XdpTern::launch(pair, &opts).expect("tern in userspace")
}

#[test]
fn tern_load_relays_on_private_addresses_inside_namespaces_of_its_own() {
    if !prerequisites() {
        return;
    }
    let pair = VethPair::new(202);
    let tern = start_tern(&pair);
    let server = SocketAddrV4::new(pair.server_ip, PORT).to_string();
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
