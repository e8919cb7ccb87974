//! Operating tern: the admin port's metrics move by exactly what a relay session did, a
//! graceful drain refuses new allocations while the existing ones relay without loss, a
//! rotated secret file applies live, and no secret ever reaches the logs or /metrics.
//! tern only (coturn has none of these endpoints). Every wait is bounded.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tern_e2e::{http_get, Auth, RawClient, ServerKind, ServerOptions, TestServer};

const SECRET: &str = "operations-secret-3f9a";
const REALM: &str = "tern.test";

fn server(options: ServerOptions, extra: &[&str]) -> TestServer {
    let mut options = options;
    options
        .extra_args
        .extend(extra.iter().map(|s| s.to_string()));
    let server = TestServer::start(ServerKind::Tern, &options);
    wait_for(Duration::from_secs(5), "/healthz answers 200", || {
        http_get(server.admin_addr(), "/healthz").is_ok_and(|(code, _)| code == 200)
    });
    server
}

fn peer() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// Polls `cond` every 50 ms until it holds; panics after `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One scrape, parsed by prometheus-parse: `name{k="v",...}` → value.
#[derive(Debug, Clone)]
struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("the exposition parses");
        let allowed_labels = [
            "direction",
            "path",
            "reason",
            "method",
            "result",
            "kind",
            "transport",
            "family",
            "relayed",
        ];
        let mut map = BTreeMap::new();
        for s in scrape.samples {
            assert!(s.metric.starts_with("tern_"), "{}", s.metric);
            let value = match s.value {
                prometheus_parse::Value::Counter(v) => {
                    assert!(s.metric.ends_with("_total"), "counter {}", s.metric);
                    v
                }
                prometheus_parse::Value::Gauge(v) => {
                    assert!(!s.metric.ends_with("_total"), "gauge {}", s.metric);
                    v
                }
                other => panic!("{}: unexpected type {other:?}", s.metric),
            };
            let labels: BTreeMap<_, _> = s.labels.iter().collect();
            for k in labels.keys() {
                assert!(allowed_labels.contains(&k.as_str()), "label {k}");
            }
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let key = if labels.is_empty() {
                s.metric
            } else {
                format!("{}{{{}}}", s.metric, labels.join(","))
            };
            assert!(map.insert(key.clone(), value).is_none(), "{key} twice");
        }
        Metrics(map)
    }

    /// The sum of the series of `name` that carry every one of `labels` (and maybe more:
    /// `tern_allocations` with no labels sums its `transport` series).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let matching: Vec<f64> = self
            .0
            .iter()
            .filter(|(key, _)| {
                let (metric, rest) = key.split_once('{').unwrap_or((key.as_str(), "}"));
                let have: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
                metric == name && wanted.iter().all(|w| have.contains(&w.as_str()))
            })
            .map(|(_, v)| *v)
            .collect();
        assert!(
            !matching.is_empty(),
            "no series {name} with {wanted:?} in {:#?}",
            self.0.keys()
        );
        matching.iter().sum()
    }
}

fn scrape_text(server: &TestServer) -> String {
    let (code, body) = http_get(server.admin_addr(), "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    body
}

fn scrape(server: &TestServer) -> Metrics {
    Metrics::parse(&scrape_text(server))
}

/// Scrapes until `cond` holds on a scrape (workers publish every 100 ms); returns it.
fn scrape_until(server: &TestServer, what: &str, cond: impl Fn(&Metrics) -> bool) -> Metrics {
    let start = Instant::now();
    loop {
        let m = scrape(server);
        if cond(&m) {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "metrics never showed {what}: {:#?}",
            m.0
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn payload(i: usize) -> Vec<u8> {
    (0..(1 + i * 37 % 1200)).map(|j| (i + j) as u8).collect()
}

/// Relays `n` payloads each way over channel 0x4000 between `client` and `peer_sock`,
/// asserting every one arrives intact; returns the bytes sent each way.
fn relay_channel(client: &RawClient, relayed: SocketAddr, peer_sock: &UdpSocket, n: usize) -> u64 {
    let peer_addr = peer_sock.local_addr().unwrap();
    let mut buf = [0u8; 2048];
    let mut bytes = 0;
    for i in 0..n {
        let p = payload(i);
        client.send_channel(0x4000, &p);
        let (len, from) = peer_sock
            .recv_from(&mut buf)
            .expect("peer gets the payload");
        assert_eq!((from, &buf[..len]), (relayed, &p[..]), "client → peer #{i}");
        peer_sock.send_to(&p, relayed).unwrap();
        let (ch, data) = client
            .recv_relayed(peer_addr)
            .expect("client gets the payload");
        assert_eq!((ch, data), (0x4000, p.clone()), "peer → client #{i}");
        bytes += p.len() as u64;
    }
    bytes
}

const CHANNEL_TO_PEER: [(&str, &str); 2] = [("direction", "to_peer"), ("path", "channel_data")];
const CHANNEL_TO_CLIENT: [(&str, &str); 2] = [("direction", "to_client"), ("path", "channel_data")];

fn requests(m: &Metrics, method: &str, result: &str) -> f64 {
    m.get(
        "tern_requests_total",
        &[("method", method), ("result", result)],
    )
}

#[test]
fn metrics_follow_a_relay_session() {
    let mut server = server(ServerOptions::rest(SECRET, REALM), &[]);
    let before = scrape(&server);
    assert_eq!(before.get("tern_allocations", &[]), 0.0);
    let free = before.get("tern_relay_ports_free", &[]);
    assert_eq!(free, server.relay_range().count() as f64);

    let mut client = RawClient::new(server.addr(), SECRET, REALM);
    let relayed = client.allocate_ok();
    let (chan_peer, chan_addr) = peer();
    let (ind_peer, ind_addr) = peer();
    client.bind_channel(0x4000, chan_addr);
    client.permit(ind_addr);
    let m = scrape_until(&server, "one allocation", |m| {
        m.get("tern_allocations", &[]) == 1.0 && m.get("tern_channels", &[]) == 1.0
    });
    // Permissions are per peer IP: both peers are on 127.0.0.1.
    assert_eq!(m.get("tern_permissions", &[]), 1.0);
    assert_eq!(m.get("tern_relay_ports_in_use", &[]), 1.0);
    assert_eq!(m.get("tern_relay_ports_free", &[]), free - 1.0);

    // 40 payloads each way over the channel, 10 over Send/Data indications.
    let channel_bytes = relay_channel(&client, relayed, &chan_peer, 40);
    let mut ind_bytes = 0;
    let mut buf = [0u8; 2048];
    for i in 0..10 {
        let p = payload(100 + i);
        client.send_indication(ind_addr, &p);
        let (n, _) = ind_peer.recv_from(&mut buf).expect("peer gets Send data");
        assert_eq!(&buf[..n], &p[..]);
        ind_peer.send_to(&p, relayed).unwrap();
        assert_eq!(client.recv_relayed(ind_addr), Some((0, p.clone())));
        ind_bytes += p.len() as u64;
    }
    // Two drops: an unbound channel, and a peer with no permission (permissions are per IP
    // and 127.0.0.1 has one, so the stranger sends from 127.0.0.2).
    client.send_channel(0x4001, b"nobody");
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    stranger.send_to(b"let me in", relayed).unwrap();

    let ind_to_peer = [("direction", "to_peer"), ("path", "indication")];
    let ind_to_client = [("direction", "to_client"), ("path", "indication")];
    let m = scrape_until(&server, "all relayed packets and drops", |m| {
        m.get("tern_relayed_packets_total", &CHANNEL_TO_CLIENT) == 40.0
            && m.get("tern_relayed_packets_total", &ind_to_client) == 10.0
            && m.get("tern_dropped_packets_total", &[("reason", "no_permission")]) == 1.0
            && m.get("tern_dropped_packets_total", &[("reason", "no_channel")]) == 1.0
    });
    let delta =
        |name: &str, labels: &[(&str, &str)]| m.get(name, labels) - before.get(name, labels);
    assert_eq!(delta("tern_relayed_packets_total", &CHANNEL_TO_PEER), 40.0);
    assert_eq!(
        delta("tern_relayed_bytes_total", &CHANNEL_TO_PEER),
        channel_bytes as f64
    );
    assert_eq!(
        delta("tern_relayed_bytes_total", &CHANNEL_TO_CLIENT),
        channel_bytes as f64
    );
    assert_eq!(delta("tern_relayed_packets_total", &ind_to_peer), 10.0);
    assert_eq!(
        delta("tern_relayed_bytes_total", &ind_to_peer),
        ind_bytes as f64
    );
    assert_eq!(
        delta("tern_relayed_bytes_total", &ind_to_client),
        ind_bytes as f64
    );
    assert_eq!(delta("tern_allocations_created_total", &[]), 1.0);
    // A UDP client: everything is under transport="udp", nothing under tcp or tls.
    let udp_to_peer = [CHANNEL_TO_PEER[0], CHANNEL_TO_PEER[1], ("transport", "udp")];
    assert_eq!(delta("tern_relayed_packets_total", &udp_to_peer), 40.0);
    for other in ["tcp", "tls"] {
        let t = [("transport", other)];
        assert_eq!(m.get("tern_relayed_packets_total", &t), 0.0, "{other}");
        assert_eq!(m.get("tern_allocations_created_total", &t), 0.0, "{other}");
        assert_eq!(m.get("tern_requests_total", &t), 0.0, "{other}");
    }
    assert_eq!(m.get("tern_allocations", &[("transport", "udp")]), 1.0);
    // Allocate: the nonce challenge (401), then success.
    assert_eq!(requests(&m, "allocate", "401"), 1.0);
    assert_eq!(requests(&m, "allocate", "success"), 1.0);
    assert_eq!(requests(&m, "channel_bind", "success"), 1.0);
    assert_eq!(requests(&m, "create_permission", "success"), 1.0);
    assert_eq!(
        m.get("tern_auth_failures_total", &[("reason", "bad_integrity")]),
        0.0
    );

    // A client with a wrong secret: one more challenge, then 401 for bad integrity.
    let mut wrong = RawClient::new(server.addr(), "not-the-secret", REALM);
    assert_eq!(wrong.allocate().0, 401);
    let m = scrape_until(&server, "the bad credential", |m| {
        m.get("tern_auth_failures_total", &[("reason", "bad_integrity")]) == 1.0
    });
    assert_eq!(requests(&m, "allocate", "401"), 3.0);
    assert_eq!(
        m.get("tern_auth_failures_total", &[("reason", "unknown_user")]),
        0.0
    );

    // Delete: allocations back down, ended by the client.
    assert_eq!(client.refresh(0), 0);
    let m = scrape_until(&server, "no allocation", |m| {
        m.get("tern_allocations", &[]) == 0.0
    });
    assert_eq!(
        m.get("tern_allocations_ended_total", &[("reason", "deleted")]),
        1.0
    );
    assert_eq!(
        (m.get("tern_channels", &[]), m.get("tern_permissions", &[])),
        (0.0, 0.0)
    );
    assert_eq!(m.get("tern_relay_ports_free", &[]), free);
    assert_eq!(requests(&m, "refresh", "success"), 1.0);
    assert_eq!(
        m.get("tern_insufficient_capacity_responses_total", &[]),
        0.0
    );
    assert_eq!(m.get("tern_draining", &[]), 0.0);
    assert_eq!(m.get("tern_workers_stalled", &[]), 0.0);
    server.assert_alive();
}

#[test]
fn admin_endpoints() {
    let server = server(ServerOptions::rest(SECRET, REALM), &[]);
    let a = server.admin_addr();
    assert_eq!(http_get(a, "/healthz").unwrap(), (200, "ok\n".to_owned()));
    assert_eq!(http_get(a, "/readyz").unwrap(), (200, "ready\n".to_owned()));
    assert_eq!(http_get(a, "/nothing").unwrap().0, 404);
    // Every series, twice: the set is fixed by construction.
    let first = scrape(&server);
    let second = scrape(&server);
    let keys = |m: &Metrics| m.0.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&first), keys(&second));
    assert_eq!(first.0.len(), 433, "{:#?}", first.0.keys());

    // The Grafana dashboard only queries metrics that exist.
    let names: Vec<&str> = first
        .0
        .keys()
        .map(|k| k.split('{').next().unwrap())
        .collect();
    let dashboard = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/tern-grafana.json");
    let json = std::fs::read_to_string(&dashboard).expect("the dashboard");
    let mut used = 0;
    for (i, _) in json.match_indices("tern_") {
        let name: String = json[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if name.len() > "tern_".len() {
            assert!(
                names.contains(&name.as_str()),
                "the dashboard queries {name}"
            );
            used += 1;
        }
    }
    assert!(used > 10);
}

/// Starts a drain-test server with one allocation relaying on channel 0x4000.
fn draining_setup(extra: &[&str]) -> (TestServer, RawClient, SocketAddr, UdpSocket) {
    let server = server(ServerOptions::rest(SECRET, REALM), extra);
    let mut client = RawClient::new(server.addr(), SECRET, REALM);
    let (code, relayed) = client.allocate();
    assert_eq!(code, 0);
    let (peer_sock, peer_addr) = peer();
    client.bind_channel(0x4000, peer_addr);
    let relayed = relayed.unwrap();
    relay_channel(&client, relayed, &peer_sock, 5);
    (server, client, relayed, peer_sock)
}

/// Waits for /readyz to fail, then for the workers to take the drain (≤ ~100 ms).
fn wait_draining(server: &TestServer) {
    wait_for(Duration::from_secs(3), "/readyz fails", || {
        http_get(server.admin_addr(), "/readyz").is_ok_and(|(code, _)| code == 503)
    });
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn drain_refuses_new_allocations_keeps_relaying_and_exits_after_the_last() {
    let (mut server, mut client, relayed, peer_sock) = draining_setup(&["--drain-timeout=15"]);
    assert_eq!(http_get(server.admin_addr(), "/readyz").unwrap().0, 200);
    server.signal("TERM");
    wait_draining(&server);
    assert_eq!(http_get(server.admin_addr(), "/healthz").unwrap().0, 200);

    // No new allocation while draining.
    let mut late = RawClient::new(server.addr(), SECRET, REALM);
    assert_eq!(late.allocate().0, 508);
    // The existing one relays every packet, both ways, and can be refreshed.
    let sent = relay_channel(&client, relayed, &peer_sock, 100);
    assert_eq!(client.refresh(600), 0);
    // Workers publish their counters every 100 ms: wait for the snapshot that has both.
    let m = scrape_until(&server, "the 508 and the relayed bytes", |m| {
        m.get("tern_insufficient_capacity_responses_total", &[]) == 1.0
            && m.get("tern_relayed_bytes_total", &CHANNEL_TO_PEER) >= sent as f64
    });
    assert_eq!(m.get("tern_draining", &[]), 1.0);
    assert_eq!(m.get("tern_allocations", &[]), 1.0);
    assert_eq!(requests(&m, "allocate", "508"), 1.0);
    assert!(m.get("tern_relayed_bytes_total", &CHANNEL_TO_PEER) >= sent as f64);
    assert!(
        server.wait_exit(Duration::from_millis(500)).is_none(),
        "exited while an allocation lives"
    );

    // The last allocation ends: the process exits cleanly.
    assert_eq!(client.refresh(0), 0);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the last allocation");
    assert!(status.success(), "{status}");
    assert!(
        server.output().contains("drain complete"),
        "{}",
        server.output()
    );
}

#[test]
fn drain_timeout_and_a_second_sigterm() {
    // The timeout: exits on its own with the allocation still live.
    let (mut server, client, relayed, peer_sock) = draining_setup(&["--drain-timeout=2"]);
    let start = Instant::now();
    server.signal("TERM");
    wait_draining(&server);
    relay_channel(&client, relayed, &peer_sock, 10);
    let status = server
        .wait_exit(Duration::from_secs(6))
        .expect("exits at the drain timeout");
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        start.elapsed()
    );
    let out = server.output();
    assert!(out.contains("drain-timeout reached"), "{out}");
    assert!(
        out.contains("reason=\"shutdown\"") || out.contains("reason=shutdown"),
        "{out}"
    );

    // SIGUSR1 drains too, answering 300 with an alternate server; SIGTERM then stops at once.
    let (mut server, _client, _, _) =
        draining_setup(&["--drain-timeout=30", "--alternate-server=127.0.0.1:3479"]);
    server.signal("USR1");
    wait_draining(&server);
    let mut late = RawClient::new(server.addr(), SECRET, REALM);
    assert_eq!(late.allocate().0, 300);
    let start = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(3))
        .expect("a SIGTERM during a drain stops at once");
    assert!(status.success(), "{status}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_300_while_draining_is_counted_as_300() {
    let (server, _client, _, _) =
        draining_setup(&["--drain-timeout=30", "--alternate-server=127.0.0.1:3479"]);
    server.signal("USR1");
    wait_draining(&server);
    let mut late = RawClient::new(server.addr(), SECRET, REALM);
    assert_eq!(late.allocate().0, 300);
    let m = scrape_until(&server, "the 300", |m| {
        requests(m, "allocate", "300") >= 1.0
    });
    assert_eq!(requests(&m, "allocate", "300"), 1.0);
    assert_eq!(
        requests(&m, "allocate", "success"),
        1.0,
        "only draining_setup's allocation succeeded"
    );
    assert_eq!(
        m.get("tern_insufficient_capacity_responses_total", &[]),
        0.0
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tern-e2e-ops-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Replaces `path` as Kubernetes does with a mounted Secret: a new file renamed over it.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn reloads(m: &Metrics, result: &str) -> f64 {
    m.get("tern_config_reloads_total", &[("result", result)])
}

#[test]
fn reload_rotates_the_secret_file_without_dropping_a_session() {
    let dir = temp_dir("reload");
    let secrets = dir.join("secrets");
    std::fs::write(&secrets, "# the first secret\nold-secret-71c2\n").unwrap();
    let options = ServerOptions {
        auth: Auth::SecretFile(secrets.clone()),
        ..ServerOptions::rest("", REALM)
    };
    let mut server = server(options, &[]);
    let (mut old, relayed, peer_sock) = {
        let mut c = RawClient::new(server.addr(), "old-secret-71c2", REALM);
        let (code, relayed) = c.allocate();
        assert_eq!(code, 0);
        let (peer_sock, peer_addr) = peer();
        c.bind_channel(0x4000, peer_addr);
        (c, relayed.unwrap(), peer_sock)
    };
    relay_channel(&old, relayed, &peer_sock, 5);

    // Rotate: the file now holds only the new secret. tern notices within ~2 s.
    replace_file(&secrets, "new-secret-9d04\n");
    scrape_until(&server, "a reload", |m| reloads(m, "success") == 1.0);
    // wait a little longer than the time it takes the workers to take the reload
    std::thread::sleep(Duration::from_millis(300));

    // The old session keeps relaying and refreshing with its old key.
    relay_channel(&old, relayed, &peer_sock, 20);
    assert_eq!(old.refresh(600), 0);
    // New credentials from the new secret work; from the removed one, not.
    let mut new = RawClient::new(server.addr(), "new-secret-9d04", REALM);
    assert_eq!(new.allocate().0, 0);
    let mut stale = RawClient::new(server.addr(), "old-secret-71c2", REALM);
    assert_eq!(stale.allocate().0, 401);

    // An invalid file (no secret in it) on SIGHUP: refused, the new secret stays.
    replace_file(&secrets, "# nothing here\n");
    server.signal("HUP");
    scrape_until(&server, "a refused reload", |m| {
        reloads(m, "failure") >= 1.0
    });
    let mut newer = RawClient::new(server.addr(), "new-secret-9d04", REALM);
    assert_eq!(newer.allocate().0, 0);
    relay_channel(&old, relayed, &peer_sock, 5);
    let out = server.output();
    assert!(out.contains("reload refused"), "{out}");
    assert!(out.contains("holds no secret"), "{out}");
    server.assert_alive();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_secret_in_logs_or_metrics() {
    let dir = temp_dir("secrets");
    let file_secret = "file-secret-b8e1f0";
    let user_password = "user-password-5a7c";
    let secrets = dir.join("secrets");
    std::fs::write(&secrets, format!("{file_secret}\n")).unwrap();
    let mut options = ServerOptions::rest(SECRET, REALM);
    // Everything at trace level, as JSON and then as text.
    options.env = vec![("RUST_LOG".into(), "trace".into())];
    let extra = [
        format!("--static-auth-secret-file={}", secrets.display()),
        "--lt-cred-mech".to_owned(),
        format!("--user=alice:{user_password}"),
        "--drain-timeout=5".to_owned(),
    ];
    for format in ["json", "text"] {
        let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
        let log_format = format!("--log-format={format}");
        args.push(&log_format);
        let mut server = server(options.clone(), &args);
        let mut passwords = Vec::new();
        let mut metrics = String::new();
        for secret in [SECRET, file_secret] {
            let mut c = RawClient::new(server.addr(), secret, REALM);
            passwords.push(c.credentials().1.to_owned());
            let (code, relayed) = c.allocate();
            assert_eq!(code, 0);
            let (peer_sock, peer_addr) = peer();
            c.bind_channel(0x4000, peer_addr);
            relay_channel(&c, relayed.unwrap(), &peer_sock, 5);
            metrics.push_str(&scrape_text(&server));
            assert_eq!(c.refresh(0), 0);
        }
        let mut wrong = RawClient::new(server.addr(), "wrong-secret-0000", REALM);
        passwords.push(wrong.credentials().1.to_owned());
        assert_eq!(wrong.allocate().0, 401);
        server.signal("HUP");
        scrape_until(&server, "a reload", |m| reloads(m, "success") == 1.0);
        metrics.push_str(&scrape_text(&server));
        server.signal("TERM");
        let status = server.wait_exit(Duration::from_secs(5)).expect("drained");
        assert!(status.success());
        let logs = server.output();
        assert!(logs.contains("allocation created"), "{logs}");
        assert!(logs.contains("allocation ended"), "{logs}");
        if format == "json" {
            assert!(logs.contains(r#""message":"allocation ended""#), "{logs}");
        }
        for needle in [SECRET, file_secret, user_password, "wrong-secret-0000"]
            .into_iter()
            .chain(passwords.iter().map(String::as_str))
        {
            assert!(
                !logs.contains(needle),
                "`{needle}` in the {format} logs:\n{logs}"
            );
            assert!(!metrics.contains(needle), "`{needle}` in /metrics");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `max-bps`: a burst over an allocation's budget is cut in each direction, what is cut shows
/// as `rate_limited` drops, and another allocation keeps its own budget.
#[test]
fn max_bps_cuts_bursts_and_counts_them() {
    let mut server = server(ServerOptions::rest(SECRET, REALM), &["--max-bps", "2000"]);
    let mut client = RawClient::new(server.addr(), SECRET, REALM);
    let relayed = client.allocate_ok();
    let (peer_sock, peer_addr) = peer();
    client.bind_channel(0x4000, peer_addr);

    // 20 datagrams of 500 B each way, as fast as they go: a full budget of 2000 B/s passes
    // one second's worth and one datagram more (5), plus what refills while the burst lasts
    // (one more per 250 ms).
    let burst = 20;
    let p = vec![0xA5u8; 500];
    for _ in 0..burst {
        client.send_channel(0x4000, &p);
    }
    for _ in 0..burst {
        peer_sock.send_to(&p, relayed).unwrap();
    }
    peer_sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut at_peer = 0;
    while let Ok((n, from)) = peer_sock.recv_from(&mut buf) {
        assert_eq!((from, &buf[..n]), (relayed, &p[..]));
        at_peer += 1;
    }
    client
        .sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut at_client = 0;
    while let Some((ch, data)) = client.recv_relayed(peer_addr) {
        assert_eq!((ch, data.len()), (0x4000, 500));
        at_client += 1;
    }
    assert!((5..=7).contains(&at_peer), "{at_peer} reached the peer");
    assert!(
        (5..=7).contains(&at_client),
        "{at_client} reached the client"
    );

    // Every datagram is either relayed or dropped as rate-limited, nothing else.
    let expected = f64::from(2 * burst - at_peer - at_client);
    let m = scrape_until(&server, "the rate-limited drops", |m| {
        m.get("tern_dropped_packets_total", &[("reason", "rate_limited")]) == expected
    });
    assert_eq!(
        m.get("tern_relayed_packets_total", &CHANNEL_TO_PEER),
        f64::from(at_peer)
    );
    assert_eq!(
        m.get("tern_relayed_packets_total", &CHANNEL_TO_CLIENT),
        f64::from(at_client)
    );

    // A second allocation starts with a full budget of its own.
    let mut other = RawClient::new(server.addr(), SECRET, REALM);
    assert_eq!(other.allocate().0, 0);
    let (other_peer, other_peer_addr) = peer();
    other.bind_channel(0x4000, other_peer_addr);
    other.send_channel(0x4000, &p);
    let (n, _) = other_peer.recv_from(&mut buf).expect("a fresh budget");
    assert_eq!(n, 500);
    server.assert_alive();
}
