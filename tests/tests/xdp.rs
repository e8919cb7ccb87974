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

use std::fs::File;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tern_e2e::netns::{is_root, Setup, VethPair};
use tern_e2e::{http_get, prereq, run_bounded, tern_bin, turnutils_bin, RawClient, Summary};

const SECRET: &str = "xdp-e2e-secret";
const REALM: &str = "tern.test";
const PORT: u16 = 3478;
const ADMIN: &str = "127.0.0.1:9641";

/// tern running inside the pair's server namespace; killed on drop (its log printed if the
/// test failed).
struct Tern {
    child: Child,
    log: PathBuf,
}

impl Tern {
    /// Starts tern with the fast path on the server end and waits for `/healthz`; `None`
    /// (after [`prereq::missing`]) when the binary was built without the feature.
    fn start(pair: &VethPair) -> Option<Tern> {
        Tern::start_with(pair, &[])
    }

    /// tern listening and relaying on both families (the fast path on both), an Allocate
    /// that names no family getting the client's own.
    fn start_dual_stack(pair: &VethPair) -> Option<Tern> {
        let ip6 = pair.server_ip6.to_string();
        Tern::start_with(
            pair,
            &[
                format!("--listening-ip={ip6}"),
                format!("--relay-ip={ip6}"),
                "--allowed-peer-ip=fd00:203::/32".into(),
                "--allocation-default-address-family=keep".into(),
            ],
        )
    }

    fn start_with(pair: &VethPair, more: &[String]) -> Option<Tern> {
        let log = std::env::temp_dir().join(format!("{}-tern.log", pair.srv));
        let out = File::create(&log).expect("log file");
        let ip = pair.server_ip.to_string();
        let child = VethPair::exec(&pair.srv, tern_bin())
            .arg("serve")
            .args(more)
            .args([
                format!("--listening-ip={ip}"),
                format!("--relay-ip={ip}"),
                format!("--listening-port={PORT}"),
                "--min-port=40000".into(),
                "--max-port=40099".into(),
                format!("--realm={REALM}"),
                "--use-auth-secret".into(),
                format!("--static-auth-secret={SECRET}"),
                "--allowed-peer-ip=10.201.0.0-10.201.255.255".into(),
                "--rfc5766-channel-numbers".into(),
                "--no-tcp".into(),
                format!("--admin-listen={ADMIN}"),
                "--xdp=native".into(),
                format!("--xdp-interface={}", pair.srv_dev),
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
                let text = tern.output();
                if text.contains("built without the xdp feature") {
                    // `cargo test --workspace` builds tern without the feature, so there this
                    // suite only notes the skip; `.ci/run` runs it again on a feature build
                    // with TERN_XDP=1, where a binary without it is a failure.
                    let what = "tern was built without the xdp feature";
                    let how = "cargo build -p tern --features xdp, then TERN_XDP=1 cargo test -p tern-e2e --test xdp";
                    if std::env::var_os("TERN_XDP").is_some() {
                        prereq::missing(what, how);
                    } else {
                        prereq::note_skip(what, how);
                    }
                    return None;
                }
                panic!("tern exited ({status}):\n{text}");
            }
            let healthy = VethPair::within(&pair.srv, || {
                http_get(ADMIN.parse().unwrap(), "/healthz").is_ok_and(|(c, _)| c == 200)
            });
            if healthy {
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
            tern.output().contains("xdp fast path attached"),
            "no attach line:\n{}",
            tern.output()
        );
        Some(tern)
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

/// The sum of the series of `name` that carry every label in `labels` (`key="value"`).
fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
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

/// Waits (up to 5 s: the fast path's counters are folded every second, metrics published
/// every 100 ms) until `check` accepts `/metrics`; returns the last text.
fn wait_metrics(pair: &VethPair, check: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = VethPair::within(&pair.srv, || {
            http_get(ADMIN.parse().unwrap(), "/metrics")
                .expect("GET /metrics")
                .1
        });
        if check(&text) || start.elapsed() > Duration::from_secs(5) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Root, `ip` and `clang`, or a skip note (a failure under CI).
fn prerequisites() -> bool {
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

const MESSAGES: usize = 300;

#[test]
fn channel_data_is_relayed_in_the_kernel_both_ways_and_counted() {
    if !prerequisites() {
        return;
    }
    let pair = VethPair::new(1);
    let Some(tern) = Tern::start(&pair) else {
        return;
    };
    let server = SocketAddr::from((pair.server_ip, PORT));
    let (client_ip, peer_ip) = (pair.client_ip, pair.peer_ip);
    let relayed = VethPair::within(&pair.gen, || {
        let mut client = RawClient::bound(client_ip.into(), server, SECRET, REALM);
        let peer = UdpSocket::bind((peer_ip, 0)).expect("peer socket");
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let relayed = client.allocate_ok();
        client.bind_channel(0x4000, peer.local_addr().unwrap());
        // Lengths 1..=999, mostly not multiples of four; each checked whole, from the
        // relayed address, both ways.
        client.relay_over_channel(relayed, &peer, MESSAGES);
        relayed
    });
    assert_eq!(relayed.ip(), std::net::IpAddr::from(pair.server_ip));
    let n = MESSAGES as u64;
    let channel = |text: &str, direction: &str| {
        metric(
            text,
            "tern_relayed_packets_total",
            &[
                "path=\"channel_data\"",
                &format!("direction=\"{direction}\""),
            ],
        )
    };
    let fast = |text: &str, direction: &str| {
        metric(
            text,
            "tern_xdp_relayed_packets_total",
            &[&format!("direction=\"{direction}\"")],
        )
    };
    let text = wait_metrics(&pair, |t| {
        fast(t, "to_peer") == n && fast(t, "to_client") == n
    });
    assert_eq!(
        (channel(&text, "to_peer"), channel(&text, "to_client")),
        (n, n),
        "relayed ChannelData counts every packet sent, once:\n{text}"
    );
    assert_eq!(
        (fast(&text, "to_peer"), fast(&text, "to_client")),
        (n, n),
        "the fast path carried every one (the neighbours are known from the start):\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            "tern_relayed_bytes_total",
            &["path=\"channel_data\""]
        ),
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
    let Some(tern) = Tern::start(&pair) else {
        return;
    };
    let server = SocketAddr::from((pair.server_ip, PORT));
    let (client_ip, peer_ip) = (pair.client_ip, pair.peer_ip);
    VethPair::within(&pair.gen, || {
        let mut client = RawClient::bound(client_ip.into(), server, SECRET, REALM);
        let peer = UdpSocket::bind((peer_ip, 0)).expect("peer socket");
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let relayed = client.allocate_ok();
        client.bind_channel(0x4000, peer.local_addr().unwrap());
        client.relay_over_channel(relayed, &peer, MESSAGES);
    });
    let n = MESSAGES as u64;
    let channel = |text: &str, direction: &str| {
        metric(
            text,
            "tern_relayed_packets_total",
            &[
                "path=\"channel_data\"",
                &format!("direction=\"{direction}\""),
            ],
        )
    };
    let text = wait_metrics(&pair, |t| {
        channel(t, "to_peer") == n && channel(t, "to_client") == n
    });
    assert_eq!(
        (channel(&text, "to_peer"), channel(&text, "to_client")),
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

#[test]
fn uclient_channels_lose_nothing_with_xdp_native() {
    if !prerequisites() {
        return;
    }
    let (Some(uclient), Some(peer_bin)) = (
        turnutils_bin("turnutils_uclient"),
        turnutils_bin("turnutils_peer"),
    ) else {
        return;
    };
    let pair = VethPair::new(2);
    let Some(tern) = Tern::start(&pair) else {
        return;
    };
    let peer_port = 41000;
    let mut peer = VethPair::exec(&pair.gen, &peer_bin)
        .args([
            "-L",
            &pair.peer_ip.to_string(),
            "-p",
            &peer_port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn turnutils_peer");
    // Bounded wait for the echo peer's socket (it cannot be probed from here).
    std::thread::sleep(Duration::from_millis(500));
    let (messages, clients) = (100u64, 4u64);
    let out = run_bounded(
        VethPair::exec(&pair.gen, &uclient)
            .args(["-p", &PORT.to_string()])
            .args([
                "-e",
                &pair.peer_ip.to_string(),
                "-r",
                &peer_port.to_string(),
            ])
            .args(["-n", &messages.to_string(), "-m", &clients.to_string()])
            .args(["-l", "120", "-u", "e2e", "-W", SECRET, "-c"])
            .arg(pair.server_ip.to_string()),
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
    // uclient counts its own messages; the server relays each once, both ways (the fast
    // path's counters are folded every second and when a channel goes).
    let total = 2 * messages * clients;
    let text = wait_metrics(&pair, |t| {
        metric(t, "tern_relayed_packets_total", &["channel_data"]) >= total
    });
    let fast_to_peer = metric(&text, "tern_xdp_relayed_packets_total", &["to_peer"]);
    let fast_to_client = metric(&text, "tern_xdp_relayed_packets_total", &["to_client"]);
    assert!(
        fast_to_peer > 0 && fast_to_client > 0,
        "the fast path carried uclient's ChannelData:\n{text}"
    );
    assert!(
        metric(&text, "tern_relayed_packets_total", &["channel_data"]) >= total,
        "{text}"
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
    let Some(tern) = Tern::start_dual_stack(&pair) else {
        return;
    };
    let server6 = SocketAddr::from((pair.server_ip6, PORT));
    let server4 = SocketAddr::from((pair.server_ip, PORT));
    let families = [
        (
            IpAddr::from(pair.client_ip6),
            IpAddr::from(pair.peer_ip6),
            server6,
        ),
        (pair.client_ip.into(), pair.peer_ip.into(), server4),
    ];
    VethPair::within(&pair.gen, || {
        for (client_ip, peer_ip, server) in families {
            let mut client = RawClient::bound(client_ip, server, SECRET, REALM);
            let peer = UdpSocket::bind((peer_ip, 0)).expect("peer socket");
            peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let relayed = client.allocate_ok();
            assert_eq!(relayed.ip(), server.ip(), "relayed in the client's family");
            client.bind_channel(0x4000, peer.local_addr().unwrap());
            client.relay_over_channel(relayed, &peer, MESSAGES);
        }
    });
    let n = 2 * MESSAGES as u64;
    let count = |text: &str, name: &str, direction: &str| {
        metric(text, name, &[&format!("direction=\"{direction}\"")])
    };
    let fast = "tern_xdp_relayed_packets_total";
    let text = wait_metrics(&pair, |t| {
        count(t, fast, "to_peer") == n && count(t, fast, "to_client") == n
    });
    assert_eq!(
        (
            count(&text, fast, "to_peer"),
            count(&text, fast, "to_client")
        ),
        (n, n),
        "the fast path carried every packet of both families:\n{text}"
    );
    let channel = |direction: &str| {
        metric(
            &text,
            "tern_relayed_packets_total",
            &[
                "path=\"channel_data\"",
                &format!("direction=\"{direction}\""),
            ],
        )
    };
    assert_eq!(
        (channel("to_peer"), channel("to_client")),
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
    let (Some(uclient), Some(peer_bin)) = (
        turnutils_bin("turnutils_uclient"),
        turnutils_bin("turnutils_peer"),
    ) else {
        return;
    };
    let pair = VethPair::new(5);
    let Some(tern) = Tern::start_dual_stack(&pair) else {
        return;
    };
    let peer_port = 41000;
    let mut peer = VethPair::exec(&pair.gen, &peer_bin)
        .args([
            "-L",
            &pair.peer_ip6.to_string(),
            "-p",
            &peer_port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn turnutils_peer");
    // Bounded wait for the echo peer's socket (it cannot be probed from here).
    std::thread::sleep(Duration::from_millis(500));
    let (messages, clients) = (100u64, 4u64);
    let out = run_bounded(
        VethPair::exec(&pair.gen, &uclient)
            .args(["-p", &PORT.to_string(), "-x"])
            .args([
                "-e",
                &pair.peer_ip6.to_string(),
                "-r",
                &peer_port.to_string(),
            ])
            .args(["-n", &messages.to_string(), "-m", &clients.to_string()])
            .args(["-l", "120", "-u", "e2e", "-W", SECRET, "-c"])
            .arg(pair.server_ip6.to_string()),
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
    let total = 2 * messages * clients;
    let text = wait_metrics(&pair, |t| {
        metric(t, "tern_relayed_packets_total", &["channel_data"]) >= total
    });
    assert!(
        metric(&text, "tern_xdp_relayed_packets_total", &["to_peer"]) > 0
            && metric(&text, "tern_xdp_relayed_packets_total", &["to_client"]) > 0,
        "the fast path carried uclient's IPv6 ChannelData:\n{text}"
    );
    drop(tern);
}

/// `GET /allocations` (no admin token is set): each allocation's client address and its
/// (packets to peers, bytes to peers, packets to the client, bytes to the client).
fn allocations(pair: &VethPair) -> Vec<(String, [u64; 4])> {
    let (code, body) = VethPair::within(&pair.srv, || {
        http_get(ADMIN.parse().unwrap(), "/allocations").expect("GET /allocations")
    });
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
    let Some(tern) = Tern::start(&pair) else {
        return;
    };
    hairpin(&pair, pair.client_ip.into(), pair.server_ip.into());
    drop(tern);
}

/// The same over IPv6, on a dual-stack tern.
#[test]
fn ipv6_relay_to_relay_on_one_tern_is_a_hairpin_in_the_kernel() {
    if !prerequisites() {
        return;
    }
    let pair = VethPair::in_net(205, 2);
    let Some(tern) = Tern::start_dual_stack(&pair) else {
        return;
    };
    hairpin(&pair, pair.client_ip6.into(), pair.server_ip6.into());
    drop(tern);
}

/// Two clients at `client_ip` relaying to each other through tern at `server_ip`, with the
/// checks of the hairpin tests.
fn hairpin(pair: &VethPair, client_ip: IpAddr, server_ip: IpAddr) {
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
    let fast = |text: &str, direction: &str| {
        metric(
            text,
            "tern_xdp_relayed_packets_total",
            &[&format!("direction=\"{direction}\"")],
        )
    };
    let text = wait_metrics(pair, |t| {
        fast(t, "to_peer") == 2 * n && fast(t, "to_client") == 2 * n
    });
    assert_eq!(
        (fast(&text, "to_peer"), fast(&text, "to_client")),
        (2 * n, 2 * n),
        "the fast path carried every packet, counted as it left A's relay and reached B's \
         client (and back):\n{text}"
    );
    let channel = |direction: &str| {
        metric(
            &text,
            "tern_relayed_packets_total",
            &[
                "path=\"channel_data\"",
                &format!("direction=\"{direction}\""),
            ],
        )
    };
    assert_eq!(
        (channel("to_peer"), channel("to_client")),
        (2 * n, 2 * n),
        "relayed ChannelData counts each packet once per allocation:\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            "tern_relayed_bytes_total",
            &["path=\"channel_data\""]
        ),
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
    let mut listed = allocations(pair);
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
