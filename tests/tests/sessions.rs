//! The sessions API end to end against the built binary: three clients (alice twice, bob)
//! relay to a loopback peer; `GET /allocations` lists them with their users and counters;
//! filters and pagination; bearer-token auth; revocation ends exactly alice's allocations
//! while bob relays on; `for=2s` refuses her new Allocate (403) until it passes; the CLI
//! prints what the API says. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tern_e2e::{
    http_get, rest_credentials, run_bounded, tern_bin, RawClient, ServerKind, ServerOptions,
    TestServer,
};

const SECRET: &str = "sessions-secret-77c1";
const REALM: &str = "tern.test";
const TOKEN: &str = "sessions-token-5d2e9b";

/// `method path` with an optional bearer token and form body; status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.take(1 << 20).read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn client(server: &TestServer, name: &str) -> RawClient {
    let (u, p) = rest_credentials(SECRET, name, 600);
    RawClient::new(server.addr(), SECRET, REALM).as_user(&u, &p)
}

fn list(server: &TestServer, query: &str, token: Option<&str>) -> Value {
    let (code, body) = http(
        server.admin_addr(),
        "GET",
        &format!("/allocations{query}"),
        token,
        "",
    );
    assert_eq!(code, 200, "{body}");
    json(&body)
}

fn names(v: &Value) -> Vec<String> {
    v["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn token_file() -> PathBuf {
    let p = std::env::temp_dir().join(format!("tern-sessions-token-{}", std::process::id()));
    std::fs::write(&p, format!("# the sessions API token\n{TOKEN}\n")).unwrap();
    p
}

fn start(extra: &[String]) -> TestServer {
    let mut o = ServerOptions::rest(SECRET, REALM);
    o.extra_args.extend(extra.iter().cloned());
    let server = TestServer::start(ServerKind::Tern, &o);
    let start = Instant::now();
    while !http_get(server.admin_addr(), "/healthz").is_ok_and(|(c, _)| c == 200) {
        assert!(start.elapsed() < Duration::from_secs(5), "/healthz");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[test]
fn without_a_token_the_listing_is_open_and_revocation_absent() {
    let server = start(&[]);
    let mut a = client(&server, "alice");
    a.allocate_ok();
    let v = list(&server, "", None);
    assert_eq!(names(&v), vec!["alice"]);
    assert!(v["next_cursor"].is_null());
    let (code, body) = http(
        server.admin_addr(),
        "POST",
        "/allocations/revoke",
        None,
        "user=alice",
    );
    assert_eq!(code, 404);
    assert!(json(&body)["error"]
        .as_str()
        .unwrap()
        .contains("admin-token-file"));
    let (code, body) = http(server.admin_addr(), "GET", "/allocations?limit=0", None, "");
    assert_eq!(code, 400);
    assert!(json(&body)["error"].as_str().unwrap().contains("limit"));
}

#[test]
fn list_filter_page_authenticate_revoke_and_refuse() {
    let tf = token_file();
    let server = start(&[format!("--admin-token-file={}", tf.display())]);
    let admin = server.admin_addr();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut clients = [
        client(&server, "alice"),
        client(&server, "alice"),
        client(&server, "bob"),
    ];
    let mut relayed = Vec::new();
    for c in &mut clients {
        relayed.push(c.allocate_ok());
        c.permit(peer_addr);
        c.bind_channel(0x4000, peer_addr);
    }

    // The token is needed for the listing too, and a wrong one is refused.
    let (code, body) = http(admin, "GET", "/allocations", None, "");
    assert_eq!(code, 401, "{body}");
    assert!(json(&body)["error"].is_string());
    assert_eq!(http(admin, "GET", "/allocations", Some("wrong"), "").0, 401);
    assert_eq!(
        http(admin, "POST", "/allocations/revoke", None, "user=alice").0,
        401
    );
    assert_eq!(
        http_get(admin, "/metrics").unwrap().0,
        200,
        "/metrics stays open"
    );

    let t = Some(TOKEN);
    let v = list(&server, "", t);
    let mut got = names(&v);
    got.sort();
    assert_eq!(got, vec!["alice", "alice", "bob"]);
    for a in v["allocations"].as_array().unwrap() {
        assert_eq!(a["transport"], "udp");
        assert_eq!(
            (a["permissions"].as_u64(), a["channels"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(a["bytes_to_peers"], 0);
        assert!(a["expires_at"].as_i64() > a["created_at"].as_i64());
    }
    // Counters move after relaying.
    clients[2].relay_over_channel(relayed[2], &peer, 3);
    let bob = list(&server, "?user=bob", t);
    let b = &bob["allocations"][0];
    assert_eq!(names(&bob), vec!["bob"]);
    assert_eq!(
        (
            b["packets_to_peers"].as_u64(),
            b["packets_to_client"].as_u64()
        ),
        (Some(3), Some(3))
    );
    assert!(b["bytes_to_peers"].as_u64().unwrap() > 0);
    assert_eq!(b["relayed"][0], relayed[2].to_string());
    assert_eq!(b["client"], clients[2].local_addr().to_string());

    // Pages of one, following next_cursor.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let page = list(&server, &format!("?limit=1{cursor}"), t);
        let items = page["allocations"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        seen.push(items[0]["id"].as_str().unwrap().to_owned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup, seen);

    // The CLI lists the same allocations.
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(tern_bin());
        cmd.args(args).args([
            "--admin",
            &admin.to_string(),
            "--token-file",
            &tf.display().to_string(),
        ]);
        let out = run_bounded(&mut cmd, Duration::from_secs(10));
        assert!(out.success(), "{}", out.text);
        out.text
    };
    let out = cli(&["sessions", "--json"]);
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    let mut ids: Vec<String> = json(line)["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut want = seen.clone();
    want.sort();
    assert_eq!(ids, want);
    let table = cli(&["sessions", "--user", "bob"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(table.contains(&relayed[2].to_string()), "{table}");

    // Revoke alice for 2 s: exactly her two allocations end.
    let out = cli(&["revoke", "--user", "alice", "--for", "2s"]);
    assert!(out.contains("revoked 2 allocation"), "{out}");
    let refused_at = Instant::now();
    assert_eq!(names(&list(&server, "", t)), vec!["bob"]);
    assert_eq!(clients[0].refresh(600), 437, "her allocation is gone");
    clients[2].relay_over_channel(relayed[2], &peer, 3);
    let metrics = http_get(admin, "/metrics").unwrap().1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tern_allocations_ended_total")
                && l.contains("reason=\"revoked\"")
                && l.ends_with(" 2")),
        "{metrics}"
    );

    // Her new Allocate is refused until the period passes, then succeeds.
    let mut back = client(&server, "alice");
    assert_eq!(back.allocate().0, 403);
    let wait = Duration::from_millis(2300).saturating_sub(refused_at.elapsed());
    std::thread::sleep(wait);
    back.allocate_ok();

    // By id through the API, with the JSON it answers.
    let id = list(&server, "?user=alice", t)["allocations"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, body) = http(admin, "POST", "/allocations/revoke", t, &format!("id={id}"));
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(
        (v["count"].as_u64(), v["revoked"][0].as_str()),
        (Some(1), Some(id.as_str()))
    );
    assert!(v["refused_until"].is_null());
    let (code, body) = http(admin, "POST", "/allocations/revoke", t, "");
    assert_eq!(code, 400, "{body}");
    assert!(
        !server.output().contains(TOKEN),
        "the token is never logged"
    );
    let _ = std::fs::remove_file(tf);
}
