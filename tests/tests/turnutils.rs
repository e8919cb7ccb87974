//! coturn's own test tools against the server: `turnutils_stunclient` (Binding) and
//! `turnutils_uclient` relaying through the server to `turnutils_peer` (an echo peer).
//!
//! uclient flags (turnutils_uclient(1)): `-s` uses Send/Data indications instead of the
//! default TURN channels; `-c` skips the extra RTCP allocations (one allocation per client
//! instead of two); `-W` derives REST credentials from the shared secret and `-u`.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;
use tern_e2e::{
    for_each_server, http_get, run_bounded, turnutils_bin, EchoPeer, PortBlock, ServerKind,
    ServerOptions, Summary, TestServer,
};

mod tls_pki;

const SECRET: &str = "e2e-rest-secret";
const REALM: &str = "tern.test";
/// Messages per client, clients, bytes per message.
const MESSAGES: u32 = 50;
const CLIENTS: u32 = 2;
const LENGTH: u32 = 100;
const RUN_LIMIT: Duration = Duration::from_secs(60);

for_each_server!(
    stunclient_gets_reflexive_address,
    uclient_channels_lose_nothing,
    uclient_send_indications_lose_nothing,
    uclient_tcp_channels_lose_nothing,
    uclient_tcp_send_indications_lose_nothing
);

fn stunclient_gets_reflexive_address(kind: ServerKind) {
    let Some(stunclient) = turnutils_bin("turnutils_stunclient") else {
        return;
    };
    let mut server = TestServer::start(kind, &ServerOptions::rest(SECRET, REALM));
    let out = run_bounded(
        Command::new(stunclient).args(["-p", &server.addr().port().to_string(), "127.0.0.1"]),
        Duration::from_secs(20),
    );
    assert!(out.success(), "turnutils_stunclient failed: {out:?}");
    // e.g. "0: : IPv4. UDP reflexive addr: 127.0.0.1:56327"
    let reflexive = out
        .text
        .lines()
        .find_map(|l| {
            l.split_once("UDP reflexive addr: ")
                .map(|(_, a)| a.trim().to_owned())
        })
        .unwrap_or_else(|| {
            panic!(
                "no reflexive address in turnutils_stunclient output:\n{}",
                out.text
            )
        });
    let (ip, port) = reflexive.rsplit_once(':').expect("ip:port");
    assert_eq!(ip, "127.0.0.1", "reflexive address {reflexive}");
    assert_ne!(
        port.parse::<u16>().expect("port number"),
        0,
        "reflexive address {reflexive}"
    );
    server.assert_alive();
}

/// How uclient reaches the server; peers are UDP either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientTransport {
    Udp,
    /// `-t`: TURN over TCP (RFC 8656 §3.1).
    Tcp,
    /// `-t -S`: TURN over TLS, to the listening port (tern tells TLS by the first byte).
    Tls,
}

fn uclient_channels_lose_nothing(kind: ServerKind) {
    uclient_run(kind, ClientTransport::Udp, false);
}

fn uclient_send_indications_lose_nothing(kind: ServerKind) {
    uclient_run(kind, ClientTransport::Udp, true);
}

fn uclient_tcp_channels_lose_nothing(kind: ServerKind) {
    uclient_run(kind, ClientTransport::Tcp, false);
}

fn uclient_tcp_send_indications_lose_nothing(kind: ServerKind) {
    uclient_run(kind, ClientTransport::Tcp, true);
}

/// `-t -S` (TLS) against tern only: the harness starts coturn with `--no-tls`.
mod tern_tls {
    use super::{uclient_run, ClientTransport, ServerKind};

    #[test]
    fn uclient_tls_channels_lose_nothing() {
        uclient_run(ServerKind::Tern, ClientTransport::Tls, false);
    }

    #[test]
    fn uclient_tls_send_indications_lose_nothing() {
        uclient_run(ServerKind::Tern, ClientTransport::Tls, true);
    }
}

fn uclient_run(kind: ServerKind, transport: ClientTransport, send_indications: bool) {
    let (Some(uclient), Some(peer)) = (
        turnutils_bin("turnutils_uclient"),
        turnutils_bin("turnutils_peer"),
    ) else {
        return;
    };
    let mut options = ServerOptions::rest(SECRET, REALM);
    if kind == ServerKind::Tern {
        // turnutils_uclient picks channel numbers at random in RFC 5766's 0x4000..=0x7FFF;
        // tern accepts only RFC 8656's 0x4000..=0x4FFF unless told otherwise.
        options
            .extra_args
            .push("--rfc5766-channel-numbers".to_owned());
    }
    options.tcp = transport != ClientTransport::Udp;
    let pki = (transport == ClientTransport::Tls).then(|| {
        tls_pki::Pki::new(if send_indications {
            "uclient-s"
        } else {
            "uclient"
        })
    });
    let tls_port = PortBlock::reserve();
    if let Some(pki) = &pki {
        options.extra_args.extend([
            format!("--cert={}", pki.cert.display()),
            format!("--pkey={}", pki.key.display()),
            format!("--tls-listening-port={}", tls_port.listen_port()),
        ]);
    }
    let mut server = TestServer::start(kind, &options);
    let _peer = EchoPeer::start(&peer, Ipv4Addr::LOCALHOST.into(), server.peer_port());
    let mut cmd = Command::new(uclient);
    cmd.args(["-p", &server.addr().port().to_string()])
        .args(["-e", "127.0.0.1", "-r", &server.peer_port().to_string()])
        .args([
            "-n",
            &MESSAGES.to_string(),
            "-m",
            &CLIENTS.to_string(),
            "-l",
            &LENGTH.to_string(),
        ])
        .args(["-u", "e2e", "-W", SECRET])
        .arg("-c")
        .arg("-v"); // per-request results (e.g. "channel bind: error 400") for failure messages
    if send_indications {
        cmd.arg("-s");
    }
    if transport != ClientTransport::Udp {
        cmd.arg("-t");
    }
    if transport == ClientTransport::Tls {
        cmd.arg("-S");
    }
    cmd.arg("127.0.0.1");
    let out = run_bounded(&mut cmd, RUN_LIMIT);
    assert!(
        out.status.is_some(),
        "turnutils_uclient did not finish within {RUN_LIMIT:?}; output:\n{}",
        out.text
    );
    let summary = Summary::parse(&out);
    eprintln!(
        "{kind:?} uclient over {transport:?} (send indications: {send_indications}): {summary:?} in {:?}",
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
    assert!(
        summary.received > 0,
        "nothing received: {summary:?}\n{}",
        out.text
    );
    assert_eq!(summary.sent, expected, "{summary:?}\n{}", out.text);
    assert_eq!(summary.received, expected, "{summary:?}\n{}", out.text);
    assert!(summary.transmit_time < RUN_LIMIT.as_secs(), "{summary:?}");
    if kind == ServerKind::Tern {
        assert_counted_under(&server, transport);
    }
    server.assert_alive();
}

/// tern counted uclient's allocations under `transport` and none under the others: `-S`
/// really spoke TLS, `-t` plain TCP.
fn assert_counted_under(server: &TestServer, transport: ClientTransport) {
    let label = match transport {
        ClientTransport::Udp => "udp",
        ClientTransport::Tcp => "tcp",
        ClientTransport::Tls => "tls",
    };
    let (code, text) = http_get(server.admin_addr(), "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    let created = |t: &str| -> u64 {
        let series =
            format!("tern_allocations_created_total{{transport=\"{t}\",family=\"ipv4\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series)?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    };
    for t in ["udp", "tcp", "tls"] {
        if t == label {
            assert!(created(t) > 0, "no allocation over {t}:\n{text}");
        } else {
            assert_eq!(created(t), 0, "allocations over {t}, not {label}");
        }
    }
}
