//! The load generator itself, tested: a few seconds of closed-mode relaying and of alloc-rate
//! against the real tern binary on loopback must report relayed packets (or allocations) and
//! no failures.

use std::process::Command;
use std::time::Duration;

use tern_e2e::{run_bounded, ServerKind, ServerOptions, TestServer};

const SECRET: &str = "load-test-secret";

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

fn tern() -> TestServer {
    let mut opts = ServerOptions::rest(SECRET, "bench");
    opts.fingerprint = false;
    TestServer::start(ServerKind::Tern, &opts)
}

/// Runs tern-load against `server` with `args`; returns its JSON line.
fn load(server: &TestServer, args: &[&str]) -> String {
    let base = server.addr().port();
    let client_ports = format!("{}-{}", base + 4, base + 15);
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tern-load"))
            .args(["--server", &server.addr().to_string(), "--secret", SECRET])
            .args(["--client-ports", &client_ports])
            .args(["--peer-port", &server.peer_port().to_string()])
            .args([
                "--warmup",
                "0.3",
                "--duration",
                "1.5",
                "--drain-ms",
                "300",
                "--json",
            ])
            .args(args),
        Duration::from_secs(20),
    );
    assert!(
        out.success(),
        "tern-load failed:\n{}\nserver:\n{}",
        out.text,
        server.output()
    );
    out.text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{}", out.text))
        .to_owned()
}

#[test]
fn closed_mode_relays_through_tern() {
    let server = tern();
    let json = load(
        &server,
        &["--mode", "closed", "--sessions", "4", "--window", "4"],
    );
    assert!(field(&json, "relayed") > 0.0, "{json}");
    assert!(field(&json, "round_trips") > 0.0, "{json}");
    assert_eq!(field(&json, "failures"), 0.0, "{json}");
    assert_eq!(field(&json, "loss"), 0.0, "{json}");
    assert!(field(&json, "p50_us") > 0.0, "{json}");
}

#[test]
fn alloc_rate_mode_allocates_and_releases_on_tern() {
    let server = tern();
    let json = load(&server, &["--mode", "alloc-rate", "--concurrency", "4"]);
    assert!(field(&json, "allocations") > 0.0, "{json}");
    assert_eq!(field(&json, "failures"), 0.0, "{json}");
    assert_eq!(field(&json, "e508"), 0.0, "{json}");
}
