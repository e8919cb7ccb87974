//! aiortc through tern with the XDP fast path on (`xdp=native`): tern on one end of a veth
//! pair in its own network namespace ([`tern_e2e::xdp_tern`]), two aiortc peers
//! (`tests/webrtc/aiortc_peer.py`, driven by `tests/webrtc/netns_pair.py`) in the other, over
//! TURN/UDP, a data channel of ping/pong round trips.
//!
//! - Both peers relay-only (the loopback suite's test, `aiortc_test.py`, in namespaces): the
//!   round trips must all arrive over a relay/relay pair with the program attached. Their
//!   relayed addresses are both tern's, so each datagram between them is ChannelData from one
//!   client to the other's relayed address: the program's hairpin turns it into the other
//!   client's ChannelData straight away, once the other side has bound its channel (before
//!   that, userspace drops it for want of a permission). The fast path must carry the data
//!   channel both ways, counted on both allocations (to the peer on the sender's, to the
//!   client on the receiver's), and each allocation's usage must add up to
//!   `tern_relayed_packets_total`.
//! - A relay-only offerer and an answerer with host candidates only (no ICE server): the
//!   nominated pair is relay ↔ host, so the peer leg crosses the veth and the fast path must
//!   carry ChannelData both ways (`tern_xdp_relayed_packets_total`), within
//!   `tern_relayed_packets_total`.
//!
//! - A relay-only aiortc offerer and a relay-only headless browser answering
//!   (`tests/webrtc/browser_peer.py`), Chromium and Firefox ESR, in the generator's namespace
//!   (given a default route towards tern's end: Firefox gathers only on the default route's
//!   interface). Chromium sends its first checks as Send indications and binds a channel
//!   with the first, so the hairpin carries the data channel both ways as for two aiortc
//!   peers. Firefox binds no channel at all (Send and Data indications only): the hairpin
//!   needs a channel on the receiving allocation, so userspace relays all of it and the test
//!   asserts the fast path carried nothing. The browser reports its nominated pair from
//!   `getStats`; it is stopped before it deletes its allocation, so the usage records are not
//!   compared with the counters here.
//!
//! aioice (aiortc's ICE) binds a channel before its first datagram to any peer and sends
//! everything as ChannelData, never a Send indication: each test checks its log line
//! ("TURN channel bound") and tern's counters (ChannelBind successes, no indication to a
//! peer).
//!
//! Needs root, `ip`, `clang`, `ethtool`, a tern built with `--features xdp`, and the venv
//! `target/webrtc-venv` with `tests/webrtc/requirements.txt` (`TERN_WEBRTC_PYTHON` names
//! another interpreter). Without them the tests skip with a note, and with `CI` set they
//! fail; a binary without the feature is a skip with a note, and a failure when `TERN_XDP` is
//! set (`.ci/run`). The generator's veth end has TX checksum offload off
//! ([`tern_e2e::netns`]): aiortc's sockets there would otherwise send frames whose UDP
//! checksum is left to the device, which the fast path carries through unfinished.
//!
//! Network rule: the addresses (10.204.x.0/24) exist only inside the two namespaces of a
//! test, which are deleted when it ends; nothing is sent outside them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tern_e2e::netns::VethPair;
use tern_e2e::xdp_tern::{metric, prerequisites, XdpTern, PORT, RELAY_PORTS};
use tern_e2e::{prereq, rest_credentials, run_bounded};

const SECRET: &str = "xdp-webrtc-secret";
const REALM: &str = "tern.test";
/// This suite's addresses: 10.204.<subnet>.0/24.
const NET: u8 = 204;
const MESSAGES: u64 = 20;
/// The peers' own bound (aiortc_peer.py `--timeout`); the script adds its signalling slack.
const PEER_TIMEOUT_S: u64 = 30;
/// Longest the script may run: SIGTERM (coreutils `timeout`) so pair.py kills both peers,
/// SIGKILL 15 s later, and `run_bounded` as the last resort.
const LIMIT_S: u64 = 90;
const LIMIT: Duration = Duration::from_secs(LIMIT_S + 30);

const VENV_INSTALL: &str = "python3 -m venv target/webrtc-venv && \
     target/webrtc-venv/bin/pip install --only-binary=:all: -r tests/webrtc/requirements.txt";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf()
}

/// The venv's interpreter, if it can import aiortc; otherwise a skip note (a failure under
/// CI).
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("TERN_WEBRTC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/webrtc-venv/bin/python"));
    let ok = python.is_file()
        && run_bounded(
            Command::new(&python).args(["-c", "import aiortc"]),
            Duration::from_secs(60),
        )
        .success();
    if !ok {
        prereq::missing("no Python venv with aiortc", VENV_INSTALL);
    }
    ok.then_some(python)
}

/// Everything the tests need, then the pair and tern; `None` after a skip note.
fn setup(subnet: u8) -> Option<(PathBuf, VethPair, XdpTern)> {
    if !prerequisites() {
        return None;
    }
    let python = python()?;
    let pair = VethPair::in_net(NET, subnet);
    let tern = XdpTern::start(&pair, SECRET, REALM, "xdp_webrtc")?;
    Some((python, pair, tern))
}

/// The one ICE server of a relay-only peer: tern over UDP, REST credentials for `name`.
fn turn_server(pair: &VethPair, name: &str) -> Value {
    let (username, credential) = rest_credentials(SECRET, name, 600);
    json!([{
        "urls": [format!("turn:{}:{PORT}?transport=udp", pair.server_ip)],
        "username": username,
        "credential": credential,
    }])
}

/// Runs the two peers in the generator's namespace, the answerer aiortc_peer.py unless
/// `answerer` names another script and its arguments (browser_peer.py); returns (offerer,
/// answerer) results.
fn run_pair(
    python: &Path,
    pair: &VethPair,
    offer: (&Value, &str),
    answer: (&Value, &str),
    answerer: &[&str],
) -> (Value, Value) {
    let mut cmd = Command::new("timeout");
    cmd.args(["--signal=TERM", "--kill-after=15", &LIMIT_S.to_string()])
        .arg(python)
        .arg(workspace().join("tests/webrtc/netns_pair.py"))
        .args(["--netns", &pair.gen])
        .args(["--offer-servers", &offer.0.to_string()])
        .args(["--offer-policy", offer.1])
        .args(["--answer-servers", &answer.0.to_string()])
        .args(["--answer-policy", answer.1])
        .args(["--messages", &MESSAGES.to_string()])
        .args(["--timeout", &PEER_TIMEOUT_S.to_string()]);
    if let Some((script, args)) = answerer.split_first() {
        cmd.args(["--answer-script", script]);
        cmd.args(args.iter().map(|a| format!("--answer-arg={a}")));
    }
    let out = run_bounded(&mut cmd, LIMIT);
    eprintln!("{}", out.text);
    assert!(
        out.success(),
        "netns_pair.py failed ({:?}) after {:?}; its diagnosis is above",
        out.status,
        out.elapsed
    );
    let line = out
        .text
        .lines()
        .find(|l| l.starts_with("{\"offer\""))
        .expect("netns_pair.py printed its result line");
    // The first JSON value on the line: stderr's text may still follow it there.
    let mut v: Value = serde_json::Deserializer::from_str(line)
        .into_iter::<Value>()
        .next()
        .expect("a result on the line")
        .expect("result line is JSON");
    (v["offer"].take(), v["answer"].take())
}

/// A candidate as aiortc_peer.py prints it, `"<type> <transport> <ip>:<port>"`.
fn candidate(s: &Value) -> (String, Ipv4Addr, u16) {
    let s = s.as_str().unwrap_or_else(|| panic!("candidate {s}"));
    let mut it = s.split(' ');
    let (typ, _, hostport) = (it.next(), it.next(), it.next().unwrap_or(""));
    let (host, port) = hostport
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("candidate {s}"));
    (
        typ.unwrap_or("").to_owned(),
        host.parse().unwrap_or_else(|_| panic!("IPv4 host in {s}")),
        port.parse().unwrap_or_else(|_| panic!("port in {s}")),
    )
}

/// The peer finished every message: the offerer its round trips, the answerer its echoes.
fn assert_done(r: &Value) {
    let (key, role) = match r["role"].as_str() {
        Some("offer") => ("round_trips", "offerer"),
        _ => ("echoed", "answerer"),
    };
    assert!(
        r["ok"] == true && r[key].as_u64() == Some(MESSAGES),
        "the {role} did not finish its {MESSAGES} messages: {r:#}"
    );
}

/// aioice bound a TURN channel (its log line, kept in the result's turn_log) to an address
/// on the pair's subnet, and returns the peers it bound channels to.
fn channel_bound(r: &Value) -> Vec<String> {
    let bound: Vec<String> = r["turn_log"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|l| {
            l.split_once("TURN channel bound ")
                .map(|(_, b)| b.to_owned())
        })
        .collect();
    assert!(
        !bound.is_empty(),
        "aioice logged no ChannelBind (\"TURN channel bound\"): {r:#}"
    );
    bound
}

/// The relayed-packet counters: (ChannelData to the peer, to the client, the fast path's
/// share of each).
fn counts(text: &str) -> [u64; 4] {
    let cd = |d: &str| {
        metric(
            text,
            "tern_relayed_packets_total",
            &["path=\"channel_data\"", &format!("direction=\"{d}\"")],
        )
    };
    let fast = |d: &str| {
        metric(
            text,
            "tern_xdp_relayed_packets_total",
            &[&format!("direction=\"{d}\"")],
        )
    };
    [
        cd("to_peer"),
        cd("to_client"),
        fast("to_peer"),
        fast("to_client"),
    ]
}

/// What aioice sends: ChannelBind requests that succeeded, and no Send indication.
fn assert_channels_only(text: &str, allocations: u64) {
    let binds = metric(
        text,
        "tern_requests_total",
        &["method=\"channel_bind\"", "result=\"success\""],
    );
    assert!(
        binds >= allocations,
        "each allocation bound a channel ({binds} ChannelBind successes):\n{text}"
    );
    let sent = metric(
        text,
        "tern_relayed_packets_total",
        &["path=\"indication\"", "direction=\"to_peer\""],
    );
    assert_eq!(
        sent, 0,
        "aioice sends ChannelData only, no Send indication:\n{text}"
    );
}

#[test]
fn aiortc_relay_only_pair_relays_with_xdp_native_on_tern_hairpin() {
    let Some((python, pair, tern)) = setup(1) else {
        return;
    };
    let (off, ans) = run_pair(
        &python,
        &pair,
        (&turn_server(&pair, "xdp-offer"), "relay"),
        (&turn_server(&pair, "xdp-answer"), "relay"),
        &[],
    );
    for r in [&off, &ans] {
        assert_done(r);
        let p = &r["selected_pair"];
        for side in ["local", "remote"] {
            let (typ, ip, port) = candidate(&p[side]);
            assert!(
                typ == "relay" && ip == pair.server_ip && RELAY_PORTS.contains(&port),
                "selected pair is relay/relay on tern's relayed address: {p}"
            );
        }
        for bound in channel_bound(r) {
            assert!(
                bound.contains(&format!("'{}'", pair.server_ip)),
                "aioice bound its channel to the other peer's relayed address: {bound}"
            );
        }
    }
    // Both relay legs end in tern, so a packet that gets through is counted twice: into one
    // relay socket (to_peer) and out of the other (to_client); a connectivity check that
    // arrives before the other side's channel (and so its permission) is counted only in.
    // The hairpin counts each packet it carries on both entries, folded every second and
    // when an entry goes: the two fast-path counts meet.
    let text = tern.wait_metrics(|t| {
        let [p, c, fp, fc] = counts(t);
        c >= 2 * MESSAGES && p >= c && fc >= 2 * MESSAGES && fp == fc
    });
    let [to_peer, to_client, fast_to_peer, fast_to_client] = counts(&text);
    eprintln!(
        "relay/relay: ChannelData to_peer {to_peer} (fast path {fast_to_peer}), to_client \
         {to_client} (fast path {fast_to_client})"
    );
    assert!(
        to_client >= 2 * MESSAGES && to_peer >= to_client,
        "the pings and pongs went into one relay and out of the other as ChannelData:\n{text}"
    );
    assert!(
        fast_to_client >= 2 * MESSAGES && fast_to_peer == fast_to_client,
        "the hairpin carried the data channel both ways (every ping and pong at least), each \
         packet counted once on the sender's allocation and once on the receiver's:\n{text}"
    );
    assert!(
        to_peer >= fast_to_peer && to_client >= fast_to_client,
        "tern_relayed_packets_total counts the fast path's packets too:\n{text}"
    );
    // Exact: every allocation's own count (its usage record, the fast path's share folded
    // in when its entries went) adds up to the server's counters of relayed packets (all
    // paths: a Data indication is counted in both too) once the pair has closed, so no
    // packet was counted twice or lost between the two.
    let ended = tern.wait_allocations_ended(2);
    let relayed = |t: &str| {
        ["to_peer", "to_client"].map(|d| {
            metric(
                t,
                "tern_relayed_packets_total",
                &[&format!("direction=\"{d}\"")],
            )
        })
    };
    let text = tern.wait_metrics(|t| relayed(t) == ended);
    assert_eq!(
        relayed(&text),
        ended,
        "the allocations' usage records (packets to peers, to the client) sum to \
         tern_relayed_packets_total:\n{text}\n{}",
        tern.output()
    );
    assert_channels_only(&text, 2);
    drop(tern);
}

#[test]
fn aiortc_relay_only_to_a_host_peer_rides_the_fast_path_both_ways() {
    let Some((python, pair, tern)) = setup(2) else {
        return;
    };
    let (off, ans) = run_pair(
        &python,
        &pair,
        (&turn_server(&pair, "xdp-offer"), "relay"),
        (&json!([]), "all"),
        &[],
    );
    assert_done(&off);
    assert_done(&ans);
    let in_gen = |ip: Ipv4Addr| ip == pair.client_ip || ip == pair.peer_ip;
    let (lt, lip, lport) = candidate(&off["selected_pair"]["local"]);
    let (rt, rip, rport) = candidate(&off["selected_pair"]["remote"]);
    assert!(
        lt == "relay" && lip == pair.server_ip && RELAY_PORTS.contains(&lport),
        "the offerer relays through tern: {}",
        off["selected_pair"]
    );
    assert!(
        rt == "host" && in_gen(rip),
        "the answerer's host address in the generator's namespace: {}",
        off["selected_pair"]
    );
    let (at, aip, _) = candidate(&ans["selected_pair"]["local"]);
    assert!(
        at == "host" && aip == rip,
        "the answerer sends from that host candidate: {}",
        ans["selected_pair"]
    );
    assert!(
        channel_bound(&off)
            .iter()
            .any(|b| b.contains(&format!("('{rip}', {rport})"))),
        "aioice bound a channel to the nominated host candidate {rip}:{rport}: {off:#}"
    );
    // Counters of the fast path are folded every second and when its entry goes (the
    // offerer's Refresh 0 on close).
    let text = tern.wait_metrics(|t| {
        let [p, c, fp, fc] = counts(t);
        fp >= MESSAGES && fc >= MESSAGES && p >= fp && c >= fc
    });
    let [to_peer, to_client, fast_to_peer, fast_to_client] = counts(&text);
    eprintln!(
        "relay to host: ChannelData to_peer {to_peer} (fast path {fast_to_peer}), to_client \
         {to_client} (fast path {fast_to_client})"
    );
    assert!(
        fast_to_peer >= MESSAGES && fast_to_client >= MESSAGES,
        "the fast path carried the data channel both ways (a ping or a pong each at least):\n{text}"
    );
    assert!(
        to_peer >= fast_to_peer && to_client >= fast_to_client,
        "tern_relayed_packets_total counts the fast path's packets too:\n{text}"
    );
    assert_channels_only(&text, 1);
    drop(tern);
}

/// The browser `kind` (chromium or firefox) is installed: on `PATH`, or named by
/// `CHROMIUM_BIN` / `FIREFOX_BIN` (what tests/webrtc/browsers.py looks for); otherwise a skip
/// note (a failure under CI).
fn browser(kind: &str) -> bool {
    let (var, names, install): (&str, &[&str], &str) = match kind {
        "chromium" => ("CHROMIUM_BIN", &["chromium"], "apt-get install -y chromium"),
        _ => (
            "FIREFOX_BIN",
            &["firefox-esr", "firefox"],
            "apt-get install -y firefox-esr",
        ),
    };
    let ok = std::env::var_os(var).is_some() || names.iter().any(|n| prereq::on_path(n).is_some());
    if !ok {
        prereq::missing(&format!("{kind} not on PATH"), install);
    }
    ok
}

/// `kind` relay-only as the answerer of a relay-only aiortc offerer, both in the generator's
/// namespace: the hairpin carries the data channel, as in the aiortc pair, if the browser
/// binds channels (`binds_channels`); otherwise userspace relays it all.
fn browser_relay_only(kind: &str, binds_channels: bool, subnet: u8) {
    if !browser(kind) {
        return;
    }
    let Some((python, pair, tern)) = setup(subnet) else {
        return;
    };
    // Firefox gathers only on the interface of the default route (its default_address_only
    // without media permission: a route lookup, nothing sent), so the generator's end gets
    // one, towards tern's end; the server's namespace has no route out.
    let gw = pair.server_ip.to_string();
    let out = run_bounded(
        Command::new("ip").args([
            "-n",
            &pair.gen,
            "route",
            "add",
            "default",
            "via",
            &gw,
            "dev",
            &pair.gen_dev,
        ]),
        Duration::from_secs(10),
    );
    assert!(out.success(), "default route in {}: {out:?}", pair.gen);
    let (off, ans) = run_pair(
        &python,
        &pair,
        (&turn_server(&pair, "xdp-offer"), "relay"),
        (&turn_server(&pair, &format!("xdp-{kind}")), "relay"),
        &["browser_peer.py", "--browser", kind],
    );
    assert_done(&off);
    assert_done(&ans);
    // The browser reports its pair from getStats in aiortc_peer.py's form.
    for r in [&off, &ans] {
        let p = &r["selected_pair"];
        for side in ["local", "remote"] {
            let (typ, ip, port) = candidate(&p[side]);
            assert!(
                typ == "relay" && ip == pair.server_ip && RELAY_PORTS.contains(&port),
                "selected pair is relay/relay on tern's relayed address ({kind}): {p}"
            );
        }
    }
    for bound in channel_bound(&off) {
        assert!(
            bound.contains(&format!("'{}'", pair.server_ip)),
            "aioice bound its channel to the browser's relayed address: {bound}"
        );
    }
    let ind = |t: &str, d: &str| {
        metric(
            t,
            "tern_relayed_packets_total",
            &["path=\"indication\"", &format!("direction=\"{d}\"")],
        )
    };
    let binds = |t: &str| {
        metric(
            t,
            "tern_requests_total",
            &["method=\"channel_bind\"", "result=\"success\""],
        )
    };
    let text = tern.wait_metrics(|t| {
        let [p, c, fp, fc] = counts(t);
        if binds_channels {
            p >= 2 * MESSAGES && c >= 2 * MESSAGES && fc >= 2 * MESSAGES && fp == fc
        } else {
            c >= MESSAGES && ind(t, "to_peer") >= MESSAGES && ind(t, "to_client") >= MESSAGES
        }
    });
    let [to_peer, to_client, fast_to_peer, fast_to_client] = counts(&text);
    let (sends, datas, binds) = (ind(&text, "to_peer"), ind(&text, "to_client"), binds(&text));
    eprintln!(
        "aiortc to {kind}: ChannelData to_peer {to_peer} (fast path {fast_to_peer}), to_client \
         {to_client} (fast path {fast_to_client}); Send indications {sends}, Data indications \
         {datas}; ChannelBind successes {binds}"
    );
    if binds_channels {
        // Chromium sends its first connectivity checks as Send indications and binds a
        // channel with the first: those, and what reaches its allocation before the
        // ChannelBind, take the userspace path; the data channel rides the hairpin.
        assert!(
            binds >= 2,
            "aioice and {kind} each bound a channel ({binds} ChannelBind successes):\n{text}"
        );
        assert!(
            sends >= 1,
            "{kind} sends Send indications before its channel is bound:\n{text}"
        );
        assert!(
            to_peer >= 2 * MESSAGES && to_client >= 2 * MESSAGES,
            "the pings and pongs went into one relay and out of the other as ChannelData (the \
             Send indications come out as ChannelData too):\n{text}"
        );
        assert!(
            fast_to_client >= 2 * MESSAGES && fast_to_peer == fast_to_client,
            "the hairpin carried the data channel both ways (every ping and pong at least), \
             each packet counted once on the sender's allocation and once on the \
             receiver's:\n{text}"
        );
    } else {
        // Firefox binds no channel: it sends Send indications and receives Data indications
        // only. The hairpin needs a channel on the receiving allocation and carries no Send
        // indication, so userspace relays everything: aiortc's ChannelData to the browser's
        // relayed address goes out as Data indications, the browser's Send indications reach
        // aiortc as ChannelData.
        assert_eq!(
            binds, 1,
            "only aioice bound a channel; {kind} sends indications:\n{text}"
        );
        assert!(
            sends >= MESSAGES && datas >= MESSAGES && to_client >= MESSAGES && to_peer >= MESSAGES,
            "the pongs left {kind} as Send indications and reached aiortc as ChannelData, the \
             pings went the other way:\n{text}"
        );
        assert!(
            fast_to_peer == 0 && fast_to_client == 0,
            "the fast path cannot carry a pair without a channel on both sides:\n{text}"
        );
    }
    assert!(
        to_peer >= fast_to_peer && to_client >= fast_to_client,
        "tern_relayed_packets_total counts the fast path's packets too:\n{text}"
    );
    // All paths: every packet out of a relay went into the other one first. (The browser is
    // stopped before it deletes its allocation, so the usage records are not compared: that
    // allocation outlives the test.)
    let relayed = |d: &str| {
        metric(
            &text,
            "tern_relayed_packets_total",
            &[&format!("direction=\"{d}\"")],
        )
    };
    assert!(
        relayed("to_peer") >= relayed("to_client"),
        "tern_relayed_packets_total: nothing left a relay that did not enter the other:\n{text}"
    );
    drop(tern);
}

#[test]
fn chromium_relay_only_rides_the_fast_path_with_xdp_native() {
    browser_relay_only("chromium", true, 3);
}

#[test]
fn firefox_relay_only_binds_no_channel_so_userspace_relays_it_with_xdp_native() {
    browser_relay_only("firefox", false, 4);
}
