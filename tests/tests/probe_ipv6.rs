//! `tern probe` over IPv6 and with `--family`, against a dual-stack server and against an
//! IPv6 listener whose relay is IPv4 only; the same checks against tern and coturn.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tern_e2e::{
    assert_probe_relayed, for_each_server, run_bounded, tern_bin, Output, ServerKind,
    ServerOptions, TestServer,
};

const SECRET: &str = "e2e-rest-secret";
const REALM: &str = "tern.test";

for_each_server!(
    probe_family_6_over_ipv6_relays_every_step,
    probe_family_6_over_ipv4_relays_to_an_ipv6_peer,
    probe_over_ipv6_without_a_family_gets_ipv4_and_checks_ipv6,
    probe_names_an_ipv6_listener_whose_relay_is_ipv4_only,
);

fn probe(server: SocketAddr, extra: &[&str]) -> Output {
    let addr = server.to_string();
    let mut args = vec!["probe", &addr, "--secret", SECRET, "--timeout", "2"];
    args.extend_from_slice(extra);
    run_bounded(Command::new(tern_bin()).args(args), Duration::from_secs(60))
}

fn dual_stack(kind: ServerKind) -> TestServer {
    let mut options = ServerOptions::rest(SECRET, REALM);
    options.ipv6 = true;
    TestServer::start(kind, &options)
}

fn relayed_line(out: &Output) -> &str {
    out.text
        .lines()
        .find(|l| l.starts_with("[ok] allocate: relayed address"))
        .unwrap_or_else(|| panic!("no relayed address in:\n{}", out.text))
}

fn probe_family_6_over_ipv6_relays_every_step(kind: ServerKind) {
    let mut server = dual_stack(kind);
    let out = probe(server.addr6(), &["--family", "6"]);
    assert_probe_relayed(&out, "tern probe [::1] --family 6");
    assert!(relayed_line(&out).contains("[::1]:"), "{}", out.text);
    assert!(
        out.text.contains("a second socket [::1]:"),
        "the peer speaks IPv6:\n{}",
        out.text
    );
    assert!(!out.text.contains("[warn]"), "{}", out.text);
    server.assert_alive();
}

fn probe_family_6_over_ipv4_relays_to_an_ipv6_peer(kind: ServerKind) {
    let mut server = dual_stack(kind);
    let out = probe(server.addr(), &["--family", "6"]);
    assert_probe_relayed(&out, "tern probe 127.0.0.1 --family 6");
    assert!(relayed_line(&out).contains("[::1]:"), "{}", out.text);
    assert!(out.text.contains("a second socket [::1]:"), "{}", out.text);
    server.assert_alive();
}

fn probe_over_ipv6_without_a_family_gets_ipv4_and_checks_ipv6(kind: ServerKind) {
    let mut server = dual_stack(kind);
    let out = probe(server.addr6(), &[]);
    assert_probe_relayed(&out, "tern probe [::1]");
    // Asked for nothing, as a browser: the default family, IPv4, said so.
    assert!(relayed_line(&out).contains("127.0.0.1:"), "{}", out.text);
    assert!(
        out.text
            .contains("[warn] allocate: the server was reached over IPv6"),
        "{}",
        out.text
    );
    // Then asked for IPv6 on its own: the server relays in it.
    assert!(
        out.text.contains(
            "[ok] ipv6: asked for IPv6 (REQUESTED-ADDRESS-FAMILY), the server relays from [::1]:"
        ),
        "{}",
        out.text
    );
    server.assert_alive();
}

fn probe_names_an_ipv6_listener_whose_relay_is_ipv4_only(kind: ServerKind) {
    let mut options = ServerOptions::rest(SECRET, REALM);
    // Listening on ::1 too, relaying on 127.0.0.1 only (relay-ip names IPv4 alone).
    options.extra_args.push("--listening-ip=::1".to_owned());
    let mut server = TestServer::start(kind, &options);
    let v6 = SocketAddr::new("::1".parse().unwrap(), server.addr().port());
    let out = probe(v6, &[]);
    assert_probe_relayed(&out, "tern probe [::1] (IPv4-only relay)");
    assert!(
        out.text.contains(
            "[warn] ipv6: the server listens on IPv6 but its relayed addresses are IPv4 only"
        ),
        "{}",
        out.text
    );
    // Asked for IPv6 explicitly, it is a failure with the diagnosis.
    let out = probe(v6, &["--family", "6"]);
    assert!(!out.success(), "{}", out.text);
    assert!(
        out.text.contains("[FAIL] allocate: asked for an IPv6 relayed address (--family), the server answered 440"),
        "{}",
        out.text
    );
    assert!(
        out.text
            .contains("diagnosis: the server listens on IPv6 but relays in IPv4 only"),
        "{}",
        out.text
    );
    server.assert_alive();
}
