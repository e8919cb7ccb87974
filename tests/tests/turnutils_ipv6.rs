//! coturn's test tools against a dual-stack server on 127.0.0.1 and ::1 (RFC 8656 address
//! families), run against tern and against coturn's `turnserver` with the same checks.
//!
//! uclient flags (turnutils_uclient -h): `-x` asks for an IPv6 relayed address
//! (REQUESTED-ADDRESS-FAMILY IPv6), `-X` asks for IPv4 explicitly, `-Z` asks for a dual
//! allocation (ADDITIONAL-ADDRESS-FAMILY, at the draft codepoint coturn uses; implies `-c`),
//! `-s` relays with Send/Data indications instead of channels, `-t` reaches the server over
//! TCP. The client reaches the server over IPv6 or IPv4 (the address it is given), the relay
//! talks to a `turnutils_peer` on ::1 or 127.0.0.1, and every run must lose nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Duration;

use tern_e2e::{
    for_each_server, run_bounded, turnutils_bin, EchoPeer, ServerKind, ServerOptions, Summary,
    TestServer,
};

const SECRET: &str = "e2e-rest-secret";
const REALM: &str = "tern.test";
const MESSAGES: u32 = 40;
const CLIENTS: u32 = 2;
const LENGTH: u32 = 120;
const RUN_LIMIT: Duration = Duration::from_secs(60);

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

for_each_server!(
    stunclient_over_ipv6_gets_its_ipv6_reflexive_address,
    ipv6_relay_over_ipv6_channels,
    ipv6_relay_over_ipv6_send_indications,
    ipv6_relay_over_ipv4_channels,
    ipv6_relay_over_ipv4_send_indications,
    explicit_ipv4_relay_over_ipv6_channels,
    explicit_ipv4_relay_over_ipv6_send_indications,
    dual_allocation_to_an_ipv6_peer_channels,
    dual_allocation_to_an_ipv6_peer_send_indications,
    dual_allocation_to_an_ipv4_peer_channels,
    dual_allocation_to_an_ipv4_peer_send_indications,
    ipv6_relay_over_tcp_on_ipv6_channels,
    dual_allocation_over_tcp_on_ipv6_send_indications,
);

/// What uclient asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// `-x`: REQUESTED-ADDRESS-FAMILY IPv6.
    Ipv6,
    /// `-X`: REQUESTED-ADDRESS-FAMILY IPv4.
    Ipv4,
    /// `-Z`: a dual allocation.
    Dual,
}

fn ipv6_relay_over_ipv6_channels(kind: ServerKind) {
    run(kind, Ask::Ipv6, V6, V6, false);
}
fn ipv6_relay_over_ipv6_send_indications(kind: ServerKind) {
    run(kind, Ask::Ipv6, V6, V6, true);
}
fn ipv6_relay_over_ipv4_channels(kind: ServerKind) {
    run(kind, Ask::Ipv6, V4, V6, false);
}
fn ipv6_relay_over_ipv4_send_indications(kind: ServerKind) {
    run(kind, Ask::Ipv6, V4, V6, true);
}
fn explicit_ipv4_relay_over_ipv6_channels(kind: ServerKind) {
    run(kind, Ask::Ipv4, V6, V4, false);
}
fn explicit_ipv4_relay_over_ipv6_send_indications(kind: ServerKind) {
    run(kind, Ask::Ipv4, V6, V4, true);
}
fn dual_allocation_to_an_ipv6_peer_channels(kind: ServerKind) {
    run(kind, Ask::Dual, V6, V6, false);
}
fn dual_allocation_to_an_ipv6_peer_send_indications(kind: ServerKind) {
    run(kind, Ask::Dual, V4, V6, true);
}
fn dual_allocation_to_an_ipv4_peer_channels(kind: ServerKind) {
    run(kind, Ask::Dual, V6, V4, false);
}
fn dual_allocation_to_an_ipv4_peer_send_indications(kind: ServerKind) {
    run(kind, Ask::Dual, V4, V4, true);
}

fn ipv6_relay_over_tcp_on_ipv6_channels(kind: ServerKind) {
    run_over(kind, Ask::Ipv6, V6, V6, false, true);
}
fn dual_allocation_over_tcp_on_ipv6_send_indications(kind: ServerKind) {
    run_over(kind, Ask::Dual, V6, V4, true, true);
}

fn dual_stack_options(kind: ServerKind) -> ServerOptions {
    let mut options = ServerOptions::rest(SECRET, REALM);
    options.ipv6 = true;
    if kind == ServerKind::Tern {
        // uclient picks channel numbers in RFC 5766's 0x4000..=0x7FFF.
        options
            .extra_args
            .push("--rfc5766-channel-numbers".to_owned());
    }
    options
}

fn stunclient_over_ipv6_gets_its_ipv6_reflexive_address(kind: ServerKind) {
    let Some(stunclient) = turnutils_bin("turnutils_stunclient") else {
        return;
    };
    let mut server = TestServer::start(kind, &dual_stack_options(kind));
    let out = run_bounded(
        Command::new(stunclient).args(["-p", &server.addr6().port().to_string(), "::1"]),
        Duration::from_secs(20),
    );
    assert!(out.success(), "turnutils_stunclient failed: {out:?}");
    // e.g. "0: : IPv6. UDP reflexive addr: ::1:56327"
    let reflexive = out
        .text
        .lines()
        .find_map(|l| {
            l.split_once("UDP reflexive addr: ")
                .map(|(_, a)| a.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no reflexive address in:\n{}", out.text));
    let (ip, port) = reflexive.rsplit_once(':').expect("ip:port");
    assert_eq!(ip, "::1", "reflexive address {reflexive}");
    assert_ne!(port.parse::<u16>().expect("port"), 0);
    assert!(out.text.contains("IPv6"), "{}", out.text);
    server.assert_alive();
}

/// uclient asks for `ask`, reaching the server at `client` (127.0.0.1 or ::1), and relays to
/// an echo peer on `peer`; nothing may be lost. For tern, the metrics must show the
/// relayed families.
fn run(kind: ServerKind, ask: Ask, client: IpAddr, peer: IpAddr, send_indications: bool) {
    run_over(kind, ask, client, peer, send_indications, false);
}

/// [`run`], with the client's leg over TCP (`-t`) when `tcp` is set.
fn run_over(
    kind: ServerKind,
    ask: Ask,
    client: IpAddr,
    peer: IpAddr,
    send_indications: bool,
    tcp: bool,
) {
    let (Some(uclient), Some(peer_bin)) = (
        turnutils_bin("turnutils_uclient"),
        turnutils_bin("turnutils_peer"),
    ) else {
        return;
    };
    let mut options = dual_stack_options(kind);
    options.tcp = tcp;
    let mut server = TestServer::start(kind, &options);
    let _peer = EchoPeer::start(&peer_bin, peer, server.peer_port());
    let mut cmd = Command::new(uclient);
    cmd.args(["-p", &server.addr().port().to_string()])
        .args([
            "-e",
            &peer.to_string(),
            "-r",
            &server.peer_port().to_string(),
        ])
        .args(["-n", &MESSAGES.to_string(), "-m", &CLIENTS.to_string()])
        .args(["-l", &LENGTH.to_string()])
        .args(["-u", "e2e", "-W", SECRET])
        .arg("-c")
        .arg("-v");
    cmd.arg(match ask {
        Ask::Ipv6 => "-x",
        Ask::Ipv4 => "-X",
        Ask::Dual => "-Z",
    });
    if send_indications {
        cmd.arg("-s");
    }
    if tcp {
        cmd.arg("-t");
    }
    cmd.arg(client.to_string());
    let out = run_bounded(&mut cmd, RUN_LIMIT);
    assert!(
        out.status.is_some(),
        "turnutils_uclient did not finish within {RUN_LIMIT:?}; output:\n{}",
        out.text
    );
    let summary = Summary::parse(&out);
    eprintln!(
        "{kind:?} uclient {ask:?} over {client} to a peer on {peer} (send indications: \
         {send_indications}): {summary:?} in {:?}",
        out.elapsed
    );
    assert!(
        out.success(),
        "turnutils_uclient failed ({:?}): {summary:?}\n{}",
        out.status,
        out.text
    );
    let expected = u64::from(MESSAGES * CLIENTS);
    assert_eq!(summary.lost, 0, "lost packets: {summary:?}\n{}", out.text);
    assert_eq!(summary.sent, expected, "{summary:?}\n{}", out.text);
    assert_eq!(summary.received, expected, "{summary:?}\n{}", out.text);
    // uclient names the relayed addresses it reads: of the family it asked for, or, of a
    // dual allocation, the peer's (and the IPv4 one before it; it deletes the family it
    // does not use with a Refresh).
    let relayed: Vec<&str> = out
        .text
        .lines()
        .filter(|l| l.contains("Received relay addr"))
        .collect();
    let has = |family: &str| relayed.iter().any(|l| l.contains(family));
    assert!(!relayed.is_empty(), "no relayed address in:\n{}", out.text);
    let used = match ask {
        Ask::Ipv6 => "IPv6",
        Ask::Ipv4 => "IPv4",
        Ask::Dual if peer.is_ipv6() => "IPv6",
        Ask::Dual => "IPv4",
    };
    let unused = if used == "IPv6" { "IPv4" } else { "IPv6" };
    assert!(has(used), "{relayed:#?}");
    if ask != Ask::Dual {
        assert!(!has(unused), "{relayed:#?}");
    }
    if kind == ServerKind::Tern {
        let transport = if tcp { "tcp" } else { "udp" };
        assert_families(&server, ask, client, peer, send_indications, transport);
    }
    server.assert_alive();
}

/// tern counted the allocations under their relayed families, the clients under their
/// transport, and the relayed data under the peer's family (the relayed address that
/// talked to it).
fn assert_families(
    server: &TestServer,
    ask: Ask,
    client: IpAddr,
    peer: IpAddr,
    send: bool,
    transport: &str,
) {
    let (peer_family, other) = if peer.is_ipv6() {
        ("ipv6", "ipv4")
    } else {
        ("ipv4", "ipv6")
    };
    // Every message went to the peer from the relayed address of the peer's family, and
    // came back through it. (Workers publish every 100 ms: wait for the last of them.)
    let path = if send { "indication" } else { "channel_data" };
    let relayed = |direction: &str, family: &str| {
        format!(
            "tern_relayed_packets_total{{path=\"{path}\",direction=\"{direction}\",transport=\"{transport}\",family=\"{family}\"}}"
        )
    };
    let all = f64::from(MESSAGES * CLIENTS);
    for direction in ["to_peer", "to_client"] {
        server.wait_metric(&relayed(direction, peer_family), all);
        assert_eq!(server.metric(&relayed(direction, other)), 0.0);
    }
    let created = |family: &str| {
        server.metric(&format!(
            "tern_allocations_created_total{{transport=\"{transport}\",family=\"{family}\"}}"
        ))
    };
    let (v4, v6) = (created("ipv4"), created("ipv6"));
    match ask {
        Ask::Ipv6 => assert!(v6 > 0.0 && v4 == 0.0, "ipv4 {v4}, ipv6 {v6}"),
        Ask::Ipv4 => assert!(v4 > 0.0 && v6 == 0.0, "ipv4 {v4}, ipv6 {v6}"),
        Ask::Dual => {
            assert!(v4 > 0.0 && v4 == v6, "ipv4 {v4}, ipv6 {v6}");
            let log = server.output();
            assert!(
                log.lines().any(|l| l.contains("allocation created")
                    && l.contains("ipv4+ipv6")
                    && l.contains("additional=[::1]")),
                "no dual allocation logged"
            );
        }
    }
    // The client's family shows in the log line of its allocations.
    let client_text = if client.is_ipv6() {
        "client=[::1]"
    } else {
        "client=127.0.0.1"
    };
    assert!(
        server
            .output()
            .lines()
            .any(|l| l.contains("allocation created") && l.contains(client_text)),
        "no allocation from {client} logged"
    );
}
