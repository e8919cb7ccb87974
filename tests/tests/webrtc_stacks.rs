//! Real WebRTC stacks against the built tern: headless Chromium, headless Firefox and aiortc,
//! relay-only, on loopback over TURN/UDP, TURN/TCP and TURN/TLS, and aiortc over IPv6; an
//! IPv6-only and an IPv4-only aiortc client through a dual-stack tern in network namespaces;
//! aiortc, Chromium and Firefox behind NATs in network namespaces, among them a client whose
//! UDP is dropped entirely. The work is done by the
//! Python scripts in `tests/webrtc/` (see their docstrings); this file runs them with the tern
//! binary the other suites use, so `cargo test --workspace` covers them.
//!
//! Prerequisites: the virtual environment `target/webrtc-venv` with
//! `tests/webrtc/requirements.txt` installed (`TERN_WEBRTC_PYTHON` names another
//! interpreter), `chromium` and `firefox-esr` on `PATH` (`CHROMIUM_BIN`, `FIREFOX_BIN`
//! override), `certutil` (libnss3-tools) for the browsers over TLS, and root for the
//! namespaces.
//! `.ci/run` sets all of them up. When one is missing, a test fails if `CI` is set and
//! otherwise prints why it skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tern_e2e::{prereq, run_bounded, tern_bin};

/// Longest a script may run; each bounds its own waits well below this. At the limit the
/// script gets SIGTERM (coreutils `timeout`), so its `finally` still removes namespaces and
/// processes; SIGKILL follows 15 s later, and `run_bounded` is the last resort after that.
const LIMIT_S: u64 = 135;
const LIMIT: Duration = Duration::from_secs(LIMIT_S + 30);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf()
}

/// `ok`, or reports `what` as missing: a skip with a note on stderr outside CI, a failure
/// with `CI` set (see [`tern_e2e::prereq`]).
fn prerequisite(ok: bool, what: &str, install: &str) -> bool {
    if !ok {
        prereq::missing(what, install);
    }
    ok
}

const VENV_INSTALL: &str =
    "apt-get install -y python3-venv && python3 -m venv target/webrtc-venv && \
                            target/webrtc-venv/bin/pip install -r tests/webrtc/requirements.txt";

/// The venv's interpreter, if it can import aiortc.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("TERN_WEBRTC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/webrtc-venv/bin/python"));
    if !python.is_file() {
        return None; // No venv: run_bounded would panic on the spawn instead of skipping.
    }
    let out = run_bounded(
        Command::new(&python).args(["-c", "import aiortc"]),
        Duration::from_secs(60),
    );
    out.success().then_some(python)
}

/// The browser `kind` (chromium or firefox) is installed: on `PATH`, or named by
/// `CHROMIUM_BIN` / `FIREFOX_BIN` (the names tests/webrtc/browsers.py looks for).
fn browser_found(kind: &str) -> bool {
    let (var, names): (&str, &[&str]) = match kind {
        "chromium" => ("CHROMIUM_BIN", &["chromium"]),
        _ => ("FIREFOX_BIN", &["firefox-esr", "firefox"]),
    };
    std::env::var_os(var).is_some() || names.iter().any(|n| prereq::on_path(n).is_some())
}

fn install(kind: &str) -> &'static str {
    match kind {
        "chromium" => "apt-get install -y chromium",
        _ => "apt-get install -y firefox-esr",
    }
}

fn is_root() -> bool {
    let out = run_bounded(Command::new("id").arg("-u"), Duration::from_secs(10));
    out.text.trim() == "0"
}

/// `certutil` (libnss3-tools), which makes the NSS database Chromium trusts the test CA from.
fn certutil_found() -> bool {
    prereq::on_path("certutil").is_some()
}

fn has_nft() -> bool {
    Path::new("/usr/sbin/nft").is_file() || Path::new("/sbin/nft").is_file()
}

fn run_script(python: &Path, script: &str, args: &[&str]) {
    let path = workspace().join("tests/webrtc").join(script);
    let mut cmd = Command::new("timeout");
    cmd.args(["--signal=TERM", "--kill-after=15", &LIMIT_S.to_string()])
        .arg(python)
        .arg(&path)
        .arg("--tern")
        .arg(tern_bin())
        .args(args);
    let out = run_bounded(&mut cmd, LIMIT);
    eprintln!("{}", out.text);
    assert!(
        out.success(),
        "{script} {args:?} failed ({}) after {:?}; its diagnosis is above",
        out.status
            .map_or_else(|| format!("killed at {LIMIT:?}"), |s| s.to_string()),
        out.elapsed
    );
}

#[test]
fn aiortc_relay_only_loopback() {
    let python = python();
    if prerequisite(python.is_some(), "no Python venv with aiortc", VENV_INSTALL) {
        run_script(&python.unwrap(), "aiortc_test.py", &[]);
    }
}

/// aiortc reaching tern at `[::1]` and relaying from `::1` (tern dual-stack,
/// `allocation-default-address-family=keep`), over UDP and over TCP.
#[test]
fn aiortc_relay_only_ipv6_loopback() {
    let python = python();
    if prerequisite(python.is_some(), "no Python venv with aiortc", VENV_INSTALL) {
        let python = python.unwrap();
        run_script(&python, "aiortc_test.py", &["--ipv6"]);
        run_script(&python, "aiortc_test.py", &["--ipv6", "--transport", "tcp"]);
    }
}

/// `kind` (chromium or firefox) relay-only through tern over `transport`: browser_test.py,
/// with the test CA in a fresh NSS database for TLS (Chromium's `$HOME/.pki/nssdb`, Firefox's
/// profile).
fn browser_over(kind: &str, transport: &str) {
    let python = python();
    if prerequisite(python.is_some(), "no Python venv with aiortc", VENV_INSTALL)
        && prerequisite(
            browser_found(kind),
            &format!("{kind} not on PATH"),
            install(kind),
        )
        && (transport != "tls"
            || prerequisite(
                certutil_found(),
                "certutil not on PATH",
                "apt-get install -y libnss3-tools",
            ))
    {
        run_script(
            &python.unwrap(),
            "browser_test.py",
            &["--browser", kind, "--transport", transport],
        );
    }
}

#[test]
fn chromium_relay_only_loopback() {
    browser_over("chromium", "udp");
}

#[test]
fn firefox_relay_only_loopback() {
    browser_over("firefox", "udp");
}

#[test]
fn firefox_relay_only_tcp_loopback() {
    browser_over("firefox", "tcp");
}

/// Also: Firefox refuses tern's certificate without the CA, and gets no relay candidate from
/// `turns:` with an IP literal (the README's note on `turns:` URLs rests on this).
#[test]
fn firefox_relay_only_tls_loopback() {
    browser_over("firefox", "tls");
}

/// Symmetric NAT: direct ICE fails, relay-only through tern works, aiortc to aiortc and aiortc
/// to Chromium and to Firefox behind the symmetric NAT (nat_test.py; the browser parts fail
/// in CI when a browser is missing).
#[test]
fn aiortc_behind_nats() {
    let python = python();
    if prerequisite(python.is_some(), "no Python venv with aiortc", VENV_INSTALL)
        && prerequisite(
            is_root(),
            "not root: network namespaces need it",
            "run as root (sudo -E cargo test)",
        )
        && prerequisite(
            has_nft(),
            "nft (nftables) missing",
            "apt-get install -y nftables",
        )
    {
        run_script(&python.unwrap(), "nat_test.py", &[]);
    }
}

/// A dual-stack tern between an IPv6-only and an IPv4-only aiortc client, in namespaces with
/// documentation prefixes and `allowed-peer-ip` (dualstack_test.py).
#[test]
fn ipv6_only_and_ipv4_only_clients_through_a_dual_stack_tern() {
    let python = python();
    if prerequisite(python.is_some(), "no Python venv with aiortc", VENV_INSTALL)
        && prerequisite(
            is_root(),
            "not root: network namespaces need it",
            "run as root (sudo -E cargo test)",
        )
    {
        run_script(&python.unwrap(), "dualstack_test.py", &[]);
    }
}

/// aiortc with a test CA trusted through `SSL_CERT_FILE` (or with none, for plain TCP).
fn aiortc_over(transport: &str) {
    let python = python();
    if prerequisite(python.is_some(), "no Python venv with aiortc", VENV_INSTALL) {
        run_script(
            &python.unwrap(),
            "aiortc_test.py",
            &["--transport", transport],
        );
    }
}

#[test]
fn aiortc_relay_only_tcp_loopback() {
    aiortc_over("tcp");
}

#[test]
fn aiortc_relay_only_tls_loopback() {
    aiortc_over("tls");
}

#[test]
fn chromium_relay_only_tcp_loopback() {
    browser_over("chromium", "tcp");
}

#[test]
fn chromium_relay_only_tls_loopback() {
    browser_over("chromium", "tls");
}

/// The UDP-blocked client: relay-only over TCP and TLS works where UDP TURN and direct ICE
/// fail, for aiortc, Chromium and Firefox (nat_tcp_test.py; its browser parts fail in CI
/// without the browser or certutil).
#[test]
fn udp_blocked_client_behind_nat() {
    let python = python();
    if prerequisite(python.is_some(), "no Python venv with aiortc", VENV_INSTALL)
        && prerequisite(
            is_root(),
            "not root: network namespaces need it",
            "run as root (sudo -E cargo test)",
        )
        && prerequisite(
            has_nft(),
            "nft (nftables) missing",
            "apt-get install -y nftables",
        )
    {
        run_script(&python.unwrap(), "nat_tcp_test.py", &[]);
    }
}
