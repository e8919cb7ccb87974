//! The XDP fast path end to end: tern with `xdp=native` on one end of a veth pair in its own
//! network namespace, clients and peers in another ([`tern_e2e::netns`]). ChannelData must
//! arrive intact both ways, the fast path must have carried it
//! (`tern_xdp_relayed_packets_total`), and `tern_relayed_packets_total` must count exactly
//! the packets sent; coturn's `turnutils_uclient` must lose nothing.
//!
//! Needs root and a tern built with `--features xdp` (`cargo build -p tern --features xdp`).
//! Without root, `ip`, `clang` or `ethtool` the tests skip with a note, and with `CI` set they
//! fail; a binary without the feature is a skip with a note, and a failure when `TERN_XDP` is
//! set (as `.ci/run` does after building the feature).
//!
//! Network rule: the addresses (10.201.x.0/24) exist only inside the two namespaces of a
//! test, which are deleted when it ends; nothing is sent outside them.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tern_e2e::netns::{Setup, VethPair};
use tern_e2e::xdp_tern::{metric, prerequisites, Options, XdpTern, PORT};
use tern_e2e::{run_bounded, turnutils_bin, RawClient, Summary};

const SECRET: &str = "xdp-e2e-secret";
const REALM: &str = "tern.test";

/// tern with the fast path on the pair's server end, RFC 5766 channel numbers, peers
/// allowed in 10.201.0.0/16 (and no further: the hairpin's peers, tern's own relayed
/// addresses, are reached only as its own relay ports); `None` when the binary lacks the
/// feature (see [`XdpTern::start`]).
fn start(pair: &VethPair) -> Option<XdpTern> {
    XdpTern::launch(pair, &options(pair))
}

/// [`start`] listening and relaying on both families (the fast path on both), an Allocate
/// that names no family getting the client's own; peers also allowed in fd00:203::/32.
fn start_dual_stack(pair: &VethPair) -> Option<XdpTern> {
    let mut opts = options(pair).dual_stack(pair);
    opts.allowed_peers.push("fd00:203::/32".into());
    XdpTern::launch(pair, &opts)
}

fn options(pair: &VethPair) -> Options {
    let mut opts = Options::xdp(pair, SECRET, REALM, "xdp");
    opts.allowed_peers = vec!["10.201.0.0-10.201.255.255".into()];
    opts.more.push("--rfc5766-channel-numbers".into());
    opts
}

const MESSAGES: usize = 300;

/// `tern_relayed_packets_total` for ChannelData in `direction` (`to_peer`, `to_client`):
/// what userspace and the fast path relayed together.
fn channel(text: &str, direction: &str) -> u64 {
    metric(
        text,
        "tern_relayed_packets_total",
        &[
            "path=\"channel_data\"",
            &format!("direction=\"{direction}\""),
        ],
    )
}

/// `tern_xdp_relayed_packets_total` in `direction`: what the fast path carried.
fn fast(text: &str, direction: &str) -> u64 {
    metric(
        text,
        "tern_xdp_relayed_packets_total",
        &[&format!("direction=\"{direction}\"")],
    )
}

/// `count` both ways: (to the peer, to the client).
fn both_ways(count: fn(&str, &str) -> u64, text: &str) -> (u64, u64) {
    (count(text, "to_peer"), count(text, "to_client"))
}

/// `tern_relayed_bytes_total` for ChannelData, both ways.
fn channel_bytes(text: &str) -> u64 {
    metric(text, "tern_relayed_bytes_total", &["path=\"channel_data\""])
}

/// From the generator's namespace: a client at `client_ip` allocates on tern at `server`
/// (in the client's family), binds channel 0x4000 to a peer at `peer_ip` and relays
/// [`MESSAGES`] over it (lengths 1..=999, mostly not multiples of four; each checked whole,
/// from the relayed address, both ways). Returns the relayed address.
fn relay_channel_data(
    pair: &VethPair,
    client_ip: IpAddr,
    server: SocketAddr,
    peer_ip: IpAddr,
) -> SocketAddr {
    VethPair::within(&pair.gen, || {
        let mut client = RawClient::bound(client_ip, server, SECRET, REALM);
        let peer = UdpSocket::bind((peer_ip, 0)).expect("peer socket");
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let relayed = client.allocate_ok();
        assert_eq!(relayed.ip(), server.ip(), "relayed in the client's family");
        client.bind_channel(0x4000, peer.local_addr().unwrap());
        client.relay_over_channel(relayed, &peer, MESSAGES);
        relayed
    })
}

#[test]
fn channel_data_is_relayed_in_the_kernel_both_ways_and_counted() {
    if !prerequisites() {
        return;
    }
    let pair = VethPair::new(1);
    let Some(tern) = start(&pair) else {
        return;
    };
    let server = SocketAddr::from((pair.server_ip, PORT));
    let relayed = relay_channel_data(&pair, pair.client_ip.into(), server, pair.peer_ip.into());
    assert_eq!(relayed.ip(), IpAddr::from(pair.server_ip));
    let n = MESSAGES as u64;
    let text = tern.wait_metrics(|t| both_ways(fast, t) == (n, n));
    assert_eq!(
        both_ways(channel, &text),
        (n, n),
        "relayed ChannelData counts every packet sent, once:\n{text}"
    );
    assert_eq!(
        both_ways(fast, &text),
        (n, n),
        "the fast path carried every one (the neighbours are known from the start):\n{text}"
    );
    assert_eq!(
        channel_bytes(&text),
        2 * (0..MESSAGES).map(|i| 1 + i as u64 * 53 % 999).sum::<u64>(),
        "payload bytes, both ways"
    );
    drop(tern);
}

/// A sender on the same host whose veth end keeps TX checksum offload on (a pod next to
/// tern) puts only the pseudo-header sum in its UDP checksums. The fast path verifies every
/// checksum and leaves those frames to the kernel, which knows they are CHECKSUM_PARTIAL and
/// delivers them to tern's sockets: the ChannelData arrives intact both ways, through
/// userspace, and is counted once.
#[test]
fn partial_checksums_from_an_offloading_sender_take_the_userspace_path_intact() {
    if !prerequisites() {
        return;
    }
    let pair = VethPair::with(
        3,
        Setup {
            tx_checksum_offload: true,
        },
    );
    let Some(tern) = start(&pair) else {
        return;
    };
    let server = SocketAddr::from((pair.server_ip, PORT));
    relay_channel_data(&pair, pair.client_ip.into(), server, pair.peer_ip.into());
    let n = MESSAGES as u64;
    let text = tern.wait_metrics(|t| both_ways(channel, t) == (n, n));
    assert_eq!(
        both_ways(channel, &text),
        (n, n),
        "relayed ChannelData counts every packet sent, once:\n{text}"
    );
    // Every frame from that end is partial, so none may take the fast path: one that did
    // would have left with a wrong checksum and been dropped by the receiver above.
    assert_eq!(
        metric(&text, "tern_xdp_relayed_packets_total", &[]),
        0,
        "the fast path relayed nothing from an offloading sender:\n{text}"
    );
    drop(tern);
}

/// coturn's `turnutils_uclient` and `turnutils_peer`, or `None` (after a skip note).
fn coturn_tools() -> Option<(PathBuf, PathBuf)> {
    match (
        turnutils_bin("turnutils_uclient"),
        turnutils_bin("turnutils_peer"),
    ) {
        (Some(uclient), Some(peer)) => Some((uclient, peer)),
        _ => None,
    }
}

/// From the generator's namespace: `turnutils_peer` echoing on `peer_ip`, and 4 uclients
/// sending 100 messages each over channels through tern at `server_ip` (`flags` after
/// `-p`), none lost. Returns `/metrics` once tern counted them all relayed both ways
/// (asserted: the fast path's counters are folded every second and when a channel goes).
fn uclient_channels(
    pair: &VethPair,
    tern: &XdpTern,
    (uclient, peer_bin): &(PathBuf, PathBuf),
    flags: &[&str],
    peer_ip: IpAddr,
    server_ip: IpAddr,
) -> String {
    let peer_port = 41000;
    let mut peer = VethPair::exec(&pair.gen, peer_bin)
        .args(["-L", &peer_ip.to_string(), "-p", &peer_port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn turnutils_peer");
    // Bounded wait for the echo peer's socket (it cannot be probed from here).
    std::thread::sleep(Duration::from_millis(500));
    let (messages, clients) = (100u64, 4u64);
    let out = run_bounded(
        VethPair::exec(&pair.gen, uclient)
            .args(["-p", &PORT.to_string()])
            .args(flags)
            .args(["-e", &peer_ip.to_string(), "-r", &peer_port.to_string()])
            .args(["-n", &messages.to_string(), "-m", &clients.to_string()])
            .args(["-l", "120", "-u", "e2e", "-W", SECRET, "-c"])
            .arg(server_ip.to_string()),
        Duration::from_secs(60),
    );
    let _ = peer.kill();
    let _ = peer.wait();
    assert!(out.status.is_some(), "uclient ran past 60 s:\n{}", out.text);
    let summary = Summary::parse(&out);
    assert!(out.success(), "uclient failed: {summary:?}\n{}", out.text);
    assert_eq!(summary.lost, 0, "{summary:?}\n{}", out.text);
    assert_eq!(
        (summary.sent, summary.received),
        (messages * clients, messages * clients),
        "{summary:?}"
    );
    // uclient counts its own messages; the server relays each once, both ways.
    let total = 2 * messages * clients;
    let relayed = |t: &str| metric(t, "tern_relayed_packets_total", &["channel_data"]);
    let text = tern.wait_metrics(|t| relayed(t) >= total);
    assert!(relayed(&text) >= total, "{text}");
    text
}

#[test]
fn uclient_channels_lose_nothing_with_xdp_native() {
    if !prerequisites() {
        return;
    }
    let Some(tools) = coturn_tools() else {
        return;
    };
    let pair = VethPair::new(2);
    let Some(tern) = start(&pair) else {
        return;
    };
    let text = uclient_channels(
        &pair,
        &tern,
        &tools,
        &[],
        pair.peer_ip.into(),
        pair.server_ip.into(),
    );
    assert!(
        fast(&text, "to_peer") > 0 && fast(&text, "to_client") > 0,
        "the fast path carried uclient's ChannelData:\n{text}"
    );
    drop(tern);
}

/// Dual-stack: an IPv6 client relaying to an IPv6 peer and an IPv4 client to an IPv4 peer
/// through one tern, ChannelData intact both ways, every packet carried by the fast path and
/// counted once.
#[test]
fn ipv6_and_ipv4_channel_data_are_relayed_in_the_kernel_on_a_dual_stack_server() {
    if !prerequisites() {
        return;
    }
    let pair = VethPair::new(4);
    let Some(tern) = start_dual_stack(&pair) else {
        return;
    };
    let families = [
        (
            IpAddr::from(pair.client_ip6),
            IpAddr::from(pair.peer_ip6),
            SocketAddr::from((pair.server_ip6, PORT)),
        ),
        (
            pair.client_ip.into(),
            pair.peer_ip.into(),
            SocketAddr::from((pair.server_ip, PORT)),
        ),
    ];
    for (client_ip, peer_ip, server) in families {
        relay_channel_data(&pair, client_ip, server, peer_ip);
    }
    let n = 2 * MESSAGES as u64;
    let text = tern.wait_metrics(|t| both_ways(fast, t) == (n, n));
    assert_eq!(
        both_ways(fast, &text),
        (n, n),
        "the fast path carried every packet of both families:\n{text}"
    );
    assert_eq!(
        both_ways(channel, &text),
        (n, n),
        "relayed ChannelData counts every packet once:\n{text}"
    );
    drop(tern);
}

/// coturn's client over IPv6 asking for an IPv6 relayed address (`-x`), channels to its
/// echo peer on IPv6: nothing lost, and the fast path carried ChannelData.
#[test]
fn uclient_ipv6_channels_lose_nothing_with_xdp_native() {
    if !prerequisites() {
        return;
    }
    let Some(tools) = coturn_tools() else {
        return;
    };
    let pair = VethPair::new(5);
    let Some(tern) = start_dual_stack(&pair) else {
        return;
    };
    let text = uclient_channels(
        &pair,
        &tern,
        &tools,
        &["-x"],
        pair.peer_ip6.into(),
        pair.server_ip6.into(),
    );
    assert!(
        fast(&text, "to_peer") > 0 && fast(&text, "to_client") > 0,
        "the fast path carried uclient's IPv6 ChannelData:\n{text}"
    );
    drop(tern);
}

/// `GET /allocations` (no admin token is set): each allocation's client address and its
/// (packets to peers, bytes to peers, packets to the client, bytes to the client).
fn allocations(tern: &XdpTern) -> Vec<(String, [u64; 4])> {
    let (code, body) = tern.get("/allocations").expect("GET /allocations");
    assert_eq!(code, 200, "GET /allocations: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON listing");
    v["allocations"]
        .as_array()
        .expect("allocations")
        .iter()
        .map(|a| {
            let n = |k: &str| a[k].as_u64().unwrap_or_else(|| panic!("{k} in {a}"));
            (
                a["client"].as_str().expect("client").to_owned(),
                [
                    n("packets_to_peers"),
                    n("bytes_to_peers"),
                    n("packets_to_client"),
                    n("bytes_to_client"),
                ],
            )
        })
        .collect()
}

/// Two allocations on one tern bound to each other's relayed address (both ends of a call
/// relay-only: the common case): the program turns A's ChannelData into B's straight away
/// (the hairpin), and back. Every packet arrives intact on the other channel, the fast path
/// carries all of them, and each is counted once per allocation: to the peer on the
/// sender's, to the client on the receiver's, as userspace would count the two halves.
#[test]
fn relay_to_relay_on_one_tern_is_a_hairpin_in_the_kernel_counted_once_per_allocation() {
    if !prerequisites() {
        return;
    }
    let pair = VethPair::in_net(205, 1);
    let Some(tern) = start(&pair) else {
        return;
    };
    hairpin(&pair, &tern, pair.client_ip.into(), pair.server_ip.into());
    drop(tern);
}

/// The same over IPv6, on a dual-stack tern.
#[test]
fn ipv6_relay_to_relay_on_one_tern_is_a_hairpin_in_the_kernel() {
    if !prerequisites() {
        return;
    }
    let pair = VethPair::in_net(205, 2);
    let Some(tern) = start_dual_stack(&pair) else {
        return;
    };
    hairpin(&pair, &tern, pair.client_ip6.into(), pair.server_ip6.into());
    drop(tern);
}

/// Two clients at `client_ip` relaying to each other through tern at `server_ip`, with the
/// checks of the hairpin tests.
fn hairpin(pair: &VethPair, tern: &XdpTern, client_ip: IpAddr, server_ip: IpAddr) {
    let server = SocketAddr::new(server_ip, PORT);
    let payload = |i: usize, salt: usize| -> Vec<u8> {
        (0..(1 + i * 53 % 999))
            .map(|j| (i ^ j ^ salt) as u8)
            .collect()
    };
    let (a_addr, b_addr) = VethPair::within(&pair.gen, || {
        let mut a = RawClient::bound(client_ip, server, SECRET, REALM);
        let mut b = RawClient::bound(client_ip, server, SECRET, REALM);
        let (rel_a, rel_b) = (a.allocate_ok(), b.allocate_ok());
        assert_eq!((rel_a.ip(), rel_b.ip()), (server_ip, server_ip));
        a.bind_channel(0x4000, rel_b);
        b.bind_channel(0x4001, rel_a);
        for i in 0..MESSAGES {
            let p = payload(i, 0x5a);
            a.send_channel(0x4000, &p);
            assert_eq!(
                b.recv_relayed(rel_a),
                Some((0x4001, p)),
                "A -> B #{i}: ChannelData on B's channel"
            );
            let q = payload(i, 0xa5);
            b.send_channel(0x4001, &q);
            assert_eq!(
                a.recv_relayed(rel_b),
                Some((0x4000, q)),
                "B -> A #{i}: ChannelData on A's channel"
            );
        }
        (a.local_addr(), b.local_addr())
    });
    let n = MESSAGES as u64;
    let bytes: u64 = (0..MESSAGES).map(|i| payload(i, 0).len() as u64).sum();
    let text = tern.wait_metrics(|t| both_ways(fast, t) == (2 * n, 2 * n));
    assert_eq!(
        both_ways(fast, &text),
        (2 * n, 2 * n),
        "the fast path carried every packet, counted as it left A's relay and reached B's \
         client (and back):\n{text}"
    );
    assert_eq!(
        both_ways(channel, &text),
        (2 * n, 2 * n),
        "relayed ChannelData counts each packet once per allocation:\n{text}"
    );
    assert_eq!(
        channel_bytes(&text),
        4 * bytes,
        "payload bytes, both halves of both ways"
    );
    assert_eq!(
        metric(
            &text,
            "tern_relayed_packets_total",
            &["path=\"indication\""]
        ),
        0,
        "no Data indication: B's channel matched A's relayed address:\n{text}"
    );
    let mut listed = allocations(tern);
    listed.sort();
    let mut want = vec![
        (a_addr.to_string(), [n, bytes, n, bytes]),
        (b_addr.to_string(), [n, bytes, n, bytes]),
    ];
    want.sort();
    assert_eq!(
        listed, want,
        "each allocation: n packets to its peer, n to its client"
    );
}
