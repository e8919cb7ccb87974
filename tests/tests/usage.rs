//! Usage records and capacity-aware readiness (tern only): the `usage-log` file gets one JSON
//! line per ended allocation with the right byte counts and `relayed`, follows logrotate
//! (a moved file and SIGHUP, or a moved file alone), the never-relayed metric moves, and
//! `/readyz` fails while fewer than `ready-min-free-ports` relay ports are free. Every wait
//! is bounded.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tern_e2e::{
    http_get, run_bounded, tern_bin, PortBlock, RawClient, ServerKind, ServerOptions, TestServer,
};

const SECRET: &str = "usage-secret-7c1d";
const REALM: &str = "tern.test";

fn server(extra: &[String]) -> TestServer {
    let mut options = ServerOptions::rest(SECRET, REALM);
    options.extra_args.extend(extra.iter().cloned());
    let server = TestServer::start(ServerKind::Tern, &options);
    wait_for(Duration::from_secs(5), "/healthz answers 200", || {
        http_get(server.admin_addr(), "/healthz").is_ok_and(|(code, _)| code == 200)
    });
    server
}

/// Polls `cond` every 20 ms until it holds; panics after `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tern-e2e-usage-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Waits until `path` holds `n` lines and returns them.
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    wait_for(
        Duration::from_secs(3),
        &format!("{n} lines in {}", path.display()),
        || lines(path).len() >= n,
    );
    let got = lines(path);
    assert_eq!(got.len(), n, "{got:#?}");
    got
}

/// The raw value of `"key":` in a usage record (a number, `true`/`false`, `null` or a
/// quoted string).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let start = line
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + pat.len();
    let rest = &line[start..];
    if let Some(s) = rest.strip_prefix('"') {
        return &rest[..s.find('"').unwrap() + 2];
    }
    &rest[..rest.find([',', '}']).unwrap()]
}

fn num(line: &str, key: &str) -> u64 {
    field(line, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {line}"))
}

/// Relays `n` payloads each way over channel 0x4000 and returns the bytes each way; the
/// lengths are those of [`RawClient::relay_over_channel`].
fn relay(client: &RawClient, relayed: SocketAddr, peer: &UdpSocket, n: usize) -> u64 {
    client.relay_over_channel(relayed, peer, n);
    (0..n).map(|i| 1 + (i * 53 % 999) as u64).sum()
}

/// Allocates and deletes at once: a record with `relayed: false`.
fn allocate_and_delete(server: &TestServer) {
    let mut c = RawClient::new(server.addr(), SECRET, REALM);
    c.allocate_ok();
    assert_eq!(c.refresh(0), 0);
}

#[test]
fn usage_records_follow_allocations_and_logrotate() {
    let dir = temp_dir("records");
    let path = dir.join("usage.log");
    let mut server = server(&[format!("--usage-log={}", path.display())]);
    assert!(path.exists(), "the file is created at start");

    // One relays 7 payloads each way to a loopback peer, then is deleted.
    let mut busy = RawClient::new(server.addr(), SECRET, REALM);
    let relayed = busy.allocate_ok();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    busy.bind_channel(0x4000, peer.local_addr().unwrap());
    let bytes = relay(&busy, relayed, &peer, 7);
    assert_eq!(busy.refresh(0), 0);
    // The other never relays.
    allocate_and_delete(&server);

    let records = wait_lines(&path, 2);
    let (yes, no): (Vec<&String>, Vec<&String>) =
        records.iter().partition(|l| field(l, "relayed") == "true");
    assert_eq!((yes.len(), no.len()), (1, 1), "{records:#?}");
    let (yes, no) = (yes[0], no[0]);
    assert_eq!(num(yes, "packets_to_peers"), 7);
    assert_eq!(num(yes, "bytes_to_peers"), bytes);
    assert_eq!(num(yes, "packets_to_client"), 7);
    assert_eq!(num(yes, "bytes_to_client"), bytes);
    assert_eq!(num(yes, "peers"), 1);
    for line in [yes, no] {
        assert_eq!(field(line, "reason"), "\"deleted\"");
        assert_eq!(field(line, "transport"), "\"udp\"");
        assert_eq!(field(line, "family"), "\"ipv4\"");
        assert_eq!(field(line, "client_ip"), "\"127.0.0.1\"");
        assert!(field(line, "username").starts_with('"'));
        let start = num(line, "start");
        let now = tern_e2e::unix_now() as u64;
        assert!(
            start <= now && now - start < 120,
            "start {start}, now {now}"
        );
        assert!(num(line, "duration_s") < 60);
    }
    assert_eq!(
        (
            num(no, "bytes_to_peers"),
            num(no, "bytes_to_client"),
            num(no, "peers")
        ),
        (0, 0, 0)
    );
    let series = |relayed: &str| {
        format!("tern_allocations_ended_total{{reason=\"deleted\",relayed=\"{relayed}\",transport=\"udp\",family=\"ipv4\"}}")
    };
    server.wait_metric(&series("false"), 1.0);
    server.wait_metric(&series("true"), 1.0);
    server.wait_metric("tern_usage_records_written_total", 2.0);

    // logrotate without copytruncate: move, then SIGHUP; a new file takes the next record.
    let first = dir.join("usage.log.1");
    std::fs::rename(&path, &first).unwrap();
    server.signal("HUP");
    wait_for(Duration::from_secs(2), "a new file after SIGHUP", || {
        path.exists()
    });
    allocate_and_delete(&server);
    let after_hup = wait_lines(&path, 1);
    assert_eq!(field(&after_hup[0], "relayed"), "false");
    assert_eq!(lines(&first).len(), 2, "nothing more in the moved file");

    // Moved (or removed) without a signal: noticed within about a second.
    let second = dir.join("usage.log.2");
    std::fs::rename(&path, &second).unwrap();
    wait_for(Duration::from_secs(3), "a new file after a move", || {
        path.exists()
    });
    allocate_and_delete(&server);
    wait_lines(&path, 1);
    assert_eq!(lines(&second).len(), 1);
    server.wait_metric(&series("false"), 3.0);
    server.wait_metric(
        "tern_usage_records_dropped_total{reason=\"queue_full\"}",
        0.0,
    );

    // A graceful stop writes the records of the allocations it ends.
    let mut held = RawClient::new(server.addr(), SECRET, REALM);
    held.allocate_ok();
    server.signal("INT");
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    let last = wait_lines(&path, 2);
    assert_eq!(field(&last[1], "reason"), "\"shutdown\"");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn readiness_follows_free_relay_ports() {
    let block = PortBlock::reserve();
    let lo = *block.relay_range().start();
    let server = server(&[
        format!("--min-port={lo}"),
        format!("--max-port={}", lo + 3),
        "--ready-min-free-ports=3".to_owned(),
    ]);
    let ready = || http_get(server.admin_addr(), "/readyz").unwrap();
    assert_eq!(ready(), (200, "ready\n".to_owned()));
    let mut a = RawClient::new(server.addr(), SECRET, REALM);
    let relayed = a.allocate_ok();
    assert_eq!(ready().0, 200, "3 of 4 ports free");
    let mut b = RawClient::new(server.addr(), SECRET, REALM);
    b.allocate_ok();
    let (code, body) = ready();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("capacity") && body.contains("2 relay ports free"),
        "{body}"
    );
    assert_eq!(http_get(server.admin_addr(), "/healthz").unwrap().0, 200);

    // Existing allocations relay on, and new ones are still taken while ports remain.
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    a.bind_channel(0x4000, peer.local_addr().unwrap());
    a.relay_over_channel(relayed, &peer, 3);

    assert_eq!(b.refresh(0), 0);
    assert_eq!(ready(), (200, "ready\n".to_owned()));
}

fn bad_start(extra: &[String]) -> String {
    let block = PortBlock::reserve();
    let lo = *block.relay_range().start();
    let mut cmd = Command::new(tern_bin());
    cmd.arg("serve")
        .arg(format!("--static-auth-secret={SECRET}"))
        .arg("--listening-ip=127.0.0.1")
        .arg(format!(
            "--listening-port={}",
            block.relay_range().start() - 8
        ))
        .arg("--admin-listen=off")
        .arg(format!("--min-port={lo}"))
        .arg(format!("--max-port={}", lo + 3))
        .args(extra);
    let out = run_bounded(&mut cmd, Duration::from_secs(20));
    assert!(
        out.status.is_some_and(|s| !s.success()),
        "should fail at start: {}",
        out.text
    );
    out.text
}

#[test]
fn bad_settings_fail_at_start_naming_the_key() {
    let text = bad_start(&["--ready-min-free-ports=5".to_owned()]);
    assert!(
        text.contains("ready-min-free-ports=5") && text.contains("4 relay ports"),
        "{text}"
    );
    let text = bad_start(&["--usage-log=/nonexistent-tern-dir/usage.log".to_owned()]);
    assert!(
        text.contains("usage-log") && text.contains("/nonexistent-tern-dir/usage.log"),
        "{text}"
    );
}
