//! `tern probe`: checks a STUN/TURN server from the outside, the way a WebRTC client uses it,
//! and says in plain words what is wrong at the first step that fails.
//!
//! Without credentials it sends a STUN Binding request and prints the reflexive address.
//! With `--secret` (TURN REST API) or `--user`/`--password` it also allocates a relay, plays
//! the peer from a second local socket, moves data both ways with Send/Data indications and
//! over a channel, and releases the allocation.
//!
//! The client speaks UDP, TCP or TLS (`--transport`, or a `turn:`/`turns:` URI); the steps
//! are the same over each ([`link::Link`]), and the peer always speaks UDP. Over TLS the
//! certificate is checked first ([`tls`]).
mod client;
mod connect;
mod link;
mod relay;
mod report;
mod target;
mod tls;
mod tls_diagnosis;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tern_proto::peer_filter::not_publicly_routable;
use tern_proto::Family;
use tern_wire::{attr, Method};

use client::{Credentials, Session};
use report::Report;
use target::Transport;

/// Arguments of `tern probe`.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The server: HOST, HOST:PORT, IP, [IPv6]:PORT, or a TURN URI (`turn:HOST[:PORT]`,
    /// `turn:HOST[:PORT]?transport=tcp`, `turns:HOST[:PORT]`). The port defaults to 3478, and
    /// to 5349 over TLS.
    pub server: String,
    /// How the client reaches the server: udp, tcp, or tls (TURN over TLS; the certificate is
    /// checked). Default: what a TURN URI names, else udp. Peers are reached over UDP.
    #[arg(long, value_enum)]
    pub transport: Option<Transport>,
    /// Over TLS: trust the CA certificates in this PEM file instead of Mozilla's root store
    /// (a private CA, or a test).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Over TLS: the name sent as SNI and checked against the certificate (default: the
    /// host in the server argument; an IP address sends no SNI and needs an IP SAN).
    #[arg(long, value_name = "NAME")]
    pub tls_name: Option<String>,
    /// The server's UDP port the peer's Binding request goes to, which shows how the server
    /// sees the peer (default: the server's port, and 3478 over TLS).
    #[arg(long, value_name = "PORT")]
    pub stun_port: Option<u16>,
    /// TURN REST API shared secret (the server's static-auth-secret); also tests relaying.
    #[arg(
        long,
        env = "TERN_PROBE_SECRET",
        hide_env_values = true,
        conflicts_with = "user"
    )]
    pub secret: Option<String>,
    /// Validity of the REST credentials made from --secret, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub ttl: u64,
    /// Long-term credential username; with --password, also tests relaying.
    #[arg(long, requires = "password")]
    pub user: Option<String>,
    /// Long-term credential password.
    #[arg(
        long,
        env = "TERN_PROBE_PASSWORD",
        hide_env_values = true,
        requires = "user"
    )]
    pub password: Option<String>,
    /// How long to wait for each answer, datagram, connection or handshake, in seconds (0.1
    /// to 60).
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub timeout: f64,
    /// Local IP of the socket that plays the peer (default: this host's address toward the
    /// relayed address, of its family).
    #[arg(long, value_name = "IP")]
    pub peer_bind: Option<IpAddr>,
    /// The relayed address family to ask for with REQUESTED-ADDRESS-FAMILY: 4 or 6 (RFC
    /// 8656 §7.2). Default: ask for none, as browsers do, and get the server's default.
    #[arg(long, value_name = "4|6", value_parser = parse_family)]
    pub family: Option<Family>,
}

/// `--family`: 4 or 6 (`ipv4`/`ipv6` too).
fn parse_family(s: &str) -> Result<Family, String> {
    match s.to_ascii_lowercase().as_str() {
        "4" | "ipv4" => Ok(Family::V4),
        "6" | "ipv6" => Ok(Family::V6),
        _ => Err(format!("`{s}` is not an address family: give 4 or 6")),
    }
}

/// "IPv4" or "IPv6".
fn family_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

/// Runs the probe, printing one `[ok]`/`[warn]`/`[FAIL]` line per step. Exit code 0 when
/// every step passed, 1 otherwise; `Err` only for bad arguments or when a local socket
/// cannot be opened.
pub fn run(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    if !(0.1..=60.0).contains(&args.timeout) {
        bail!("--timeout must be between 0.1 and 60 seconds");
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let target = target::parse(&args.server, args.transport)?;
    if target.transport != Transport::Tls && (args.ca.is_some() || args.tls_name.is_some()) {
        bail!("--ca and --tls-name apply to TLS: add --transport tls, or give a turns: URI");
    }
    let creds = match (&args.secret, &args.user, &args.password) {
        (Some(secret), _, _) => Some(Credentials::rest(secret, Duration::from_secs(args.ttl))),
        (None, Some(user), Some(password)) => Some(Credentials {
            username: user.clone(),
            password: password.clone(),
        }),
        _ => None,
    };
    let mut report = Report::new(
        target.addr,
        target.transport,
        timeout,
        args.secret.is_some(),
    );
    let tls = tls::TlsOptions {
        name: args.tls_name.as_deref().unwrap_or(&target.host),
        ca: args.ca.as_deref(),
    };
    let Some(link) = connect::open(&target, &tls, timeout, &mut report)? else {
        return Ok(report.exit());
    };
    let local_ip = link
        .local_ip()
        .context("reading the client socket's address")?;
    let mut session = Session::new(link, timeout, creds.clone());

    if binding(&mut session, &mut report).is_none() {
        return Ok(report.exit());
    }
    if creds.is_none() {
        println!("       (pass --secret, or --user and --password, to test relaying too)");
        return Ok(report.exit());
    }
    let Some(relayed) = allocate(&mut session, &mut report, args.family) else {
        return Ok(report.exit());
    };
    // The peer speaks the relayed address's family: the relay reaches peers of its own
    // family only (RFC 8656 §9: 443 otherwise).
    let peer_ip = match args.peer_bind {
        Some(ip) => ip,
        None if relayed.is_ipv4() == local_ip.is_ipv4() => local_ip,
        None => target::local_ip_toward(relayed)
            .context("no local address of the relayed address's family to play the peer")?,
    };
    let stun_port = args.stun_port.unwrap_or(match target.transport {
        Transport::Tls => target::TURN_PORT,
        Transport::Udp | Transport::Tcp => target.addr.port(),
    });
    // The peer asks the server how it sees it at the address the client reached, when that
    // is of the peer's family.
    let stun = SocketAddr::new(target.addr.ip(), stun_port);
    let stun = (stun.is_ipv4() == peer_ip.is_ipv4()).then_some(stun);
    relay::exchange(&mut session, &mut report, relayed, peer_ip, stun);
    refresh_zero(&mut session, &mut report);
    if args.family.is_none() && target.addr.is_ipv6() && relayed.is_ipv4() {
        ipv6_relay_check(&target, &tls, timeout, creds, &mut report)?;
    }
    Ok(report.exit())
}

/// Reached over IPv6, the server handed out an IPv4 relayed address by default: asks, on a
/// second connection, whether it relays in IPv6 at all (REQUESTED-ADDRESS-FAMILY IPv6), and
/// says what an IPv4-only relay means for IPv6 clients and peers.
fn ipv6_relay_check(
    target: &target::Target,
    tls: &tls::TlsOptions<'_>,
    timeout: Duration,
    creds: Option<Credentials>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let step = "ipv6";
    let Some(link) = connect::open(target, tls, timeout, report)? else {
        return Ok(());
    };
    let mut session = Session::new(link, timeout, creds);
    let build = |w: &mut tern_wire::MessageWriter<'_>| {
        w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &attr::encode_address_family(attr::FAMILY_IPV6),
        );
    };
    let reply = match session.request(Method::ALLOCATE, &build) {
        Ok(reply) => reply,
        Err(e) => {
            report.no_answer(step, e);
            return Ok(());
        }
    };
    match (
        reply.answer.error(),
        reply.answer.xor_address(attr::XOR_RELAYED_ADDRESS),
    ) {
        // A warning, not a failure: relaying works, for peers that have IPv4.
        (Some((440, _)), _) => report.warn(
            step,
            format!(
                "the server listens on IPv6 but its relayed addresses are IPv4 only: an \
                 Allocate asking for IPv6 gets 440 Address Family not Supported. \
                 {V4_ONLY_RELAY_CAP}"
            ),
        ),
        (Some((code, reason)), _) => {
            report.error_response(step, code, &reason, reply.with_credentials)
        }
        (None, Some(v6)) if v6.is_ipv6() => {
            report.ok(
                step,
                format!(
                    "asked for IPv6 (REQUESTED-ADDRESS-FAMILY), the server relays from {v6} too; \
                     clients that ask for nothing (browsers) get IPv4 \
                     (allocation-default-address-family; keep gives an IPv6 client IPv6)"
                ),
            );
            refresh_zero(&mut session, report);
        }
        (None, other) => report.fail(
            step,
            format!(
                "asked for IPv6 (REQUESTED-ADDRESS-FAMILY), the server answered with the \
                 relayed address {}",
                other.map_or_else(|| "none".to_owned(), |a| a.to_string())
            ),
            "the server ignores REQUESTED-ADDRESS-FAMILY",
        ),
    }
    Ok(())
}

/// What an IPv6 listener with IPv4-only relayed addresses means, and the fix.
const V4_ONLY_RELAY: &str = "clients on IPv6-only networks (mobile carriers, NAT64) reach \
    the server, but their peers that have only IPv6 cannot be reached through it. On tern, \
    give the relay an IPv6 address (relay-ip=IPv6, or external-ip=IPv6[/PRIVATE] beside the \
    IPv4 one); on coturn, relay-ip or external-ip for IPv6";
/// [`V4_ONLY_RELAY`] as a sentence of its own.
const V4_ONLY_RELAY_CAP: &str = "Clients on IPv6-only networks (mobile carriers, NAT64) \
    reach the server, but their peers that have only IPv6 cannot be reached through it. On \
    tern, give the relay an IPv6 address (relay-ip=IPv6, or external-ip=IPv6[/PRIVATE] beside \
    the IPv4 one); on coturn, relay-ip or external-ip for IPv6";

/// Step 1: Binding request; returns the reflexive address.
fn binding(session: &mut Session, report: &mut Report) -> Option<SocketAddr> {
    let step = "binding";
    let answer = match session.request(Method::BINDING, &|_| {}) {
        Ok(reply) => reply.answer,
        Err(e) => {
            report.no_answer(step, e);
            return None;
        }
    };
    if let Some((code, reason)) = answer.error() {
        let hint = if code == 401 {
            " (the server wants credentials for Binding)"
        } else {
            ""
        };
        let what = format!("the server answered {code} {reason}{hint}");
        report.fail(
            step,
            what,
            "the server does not answer plain STUN Binding requests",
        );
        return None;
    }
    let Some(reflexive) = answer.xor_address(attr::XOR_MAPPED_ADDRESS) else {
        let diagnosis = "the server is not a STUN server, or something rewrote its answer";
        report.fail(step, "the answer has no XOR-MAPPED-ADDRESS", diagnosis);
        return None;
    };
    let software = answer
        .text(attr::SOFTWARE)
        .map(|s| format!(", software \"{s}\""))
        .unwrap_or_default();
    let fp = if answer.msg().check_fingerprint() == Some(true) {
        "valid"
    } else {
        "no"
    };
    let ms = answer.rtt.as_secs_f64() * 1000.0;
    let what = format!(
        "{} answered in {ms:.1} ms ({fp} FINGERPRINT{software})",
        session.link.to()
    );
    report.ok(step, what);
    report.ok(
        step,
        format!("reflexive address (XOR-MAPPED-ADDRESS) {reflexive}"),
    );
    Some(reflexive)
}

/// Step 2: Allocate a UDP relay, of `family` when given; returns the relayed address.
fn allocate(
    session: &mut Session,
    report: &mut Report,
    family: Option<Family>,
) -> Option<SocketAddr> {
    let step = "allocate";
    let build = |w: &mut tern_wire::MessageWriter<'_>| {
        w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
        if let Some(f) = family {
            w.attr(
                attr::REQUESTED_ADDRESS_FAMILY,
                &attr::encode_address_family(f.to_wire()),
            );
        }
    };
    let reply = match session.request(Method::ALLOCATE, &build) {
        Ok(reply) => reply,
        Err(e) => {
            report.no_answer(step, e);
            return None;
        }
    };
    let answer = &reply.answer;
    match (answer.error(), family) {
        (Some((440, reason)), Some(f)) => {
            let what = format!(
                "asked for an {} relayed address (--family), the server answered 440 {reason}",
                family_name(f)
            );
            let diagnosis = match f {
                Family::V6 if session.link.to().is_ipv6() => {
                    format!("the server listens on IPv6 but relays in IPv4 only: {V4_ONLY_RELAY}")
                }
                Family::V6 => format!("the server relays in IPv4 only: {V4_ONLY_RELAY}"),
                Family::V4 => "the server relays in IPv6 only: give it an IPv4 relay address \
                    (relay-ip or external-ip), or let clients ask for IPv6"
                    .to_owned(),
            };
            report.fail(step, what, diagnosis);
            return None;
        }
        (Some((code, reason)), _) => {
            report.error_response(step, code, &reason, reply.with_credentials);
            return None;
        }
        (None, _) => {}
    }
    let Some(relayed) = answer.xor_address(attr::XOR_RELAYED_ADDRESS) else {
        let diagnosis = "the server is not a TURN server, or something rewrote its answer";
        report.fail(step, "the answer has no XOR-RELAYED-ADDRESS", diagnosis);
        return None;
    };
    if let Some(f) = family.filter(|f| *f != Family::of(relayed.ip())) {
        let what = format!(
            "asked for an {} relayed address, the server gave {relayed}",
            family_name(f)
        );
        report.fail(step, what, "the server ignores REQUESTED-ADDRESS-FAMILY");
        return None;
    }
    let msg = answer.msg();
    let lifetime = msg
        .get(attr::LIFETIME)
        .and_then(|a| attr::decode_u32(a.value, attr::LIFETIME).ok());
    let realm = session
        .realm()
        .map(|r| format!(", realm \"{r}\""))
        .unwrap_or_default();
    let lifetime = lifetime.map_or("no LIFETIME".to_owned(), |s| format!("lifetime {s} s"));
    report.ok(
        step,
        format!("relayed address (XOR-RELAYED-ADDRESS) {relayed}, {lifetime}{realm}"),
    );
    if let Some(what) = unreachable_relayed_address(session.link.to().ip(), relayed.ip()) {
        report.warn(step, what);
    }
    if family.is_none() && session.link.to().is_ipv6() && relayed.is_ipv4() {
        report.warn(
            step,
            "the server was reached over IPv6 and, asked for no family (as browsers ask), \
             relays from IPv4: the peers of this client must have IPv4 (checked below whether \
             it relays in IPv6 when asked)",
        );
    }
    Some(relayed)
}

/// The warning for a server reached at a public address that hands out a relayed address
/// clients on the internet cannot reach (the server's `external-ip` is missing or wrong).
/// `None` when the server itself was reached at a non-public address (a LAN or loopback
/// test, where a private relayed address is expected) or the relayed address is public.
fn unreachable_relayed_address(server: IpAddr, relayed: IpAddr) -> Option<String> {
    if not_publicly_routable(server).is_some() {
        return None;
    }
    let kind = not_publicly_routable(relayed)?;
    Some(format!(
        "the server was reached at the public address {server}, but its relayed address {relayed} \
         is not publicly routable ({kind}): clients outside the server's network will get a \
         relay candidate they cannot reach. On the server, set external-ip=PUBLIC[/PRIVATE] \
         (TERN_EXTERNAL_IP in a container), e.g. external-ip={server}/{relayed}"
    ))
}

/// Last step: Refresh with LIFETIME 0 releases the allocation (RFC 8656 §8).
fn refresh_zero(session: &mut Session, report: &mut Report) {
    let step = "refresh";
    match session.request(Method::REFRESH, &|w| {
        w.u32(attr::LIFETIME, 0);
    }) {
        Ok(reply) => match reply.answer.error() {
            None => report.ok(step, "allocation released (LIFETIME 0)"),
            Some((code, reason)) => {
                report.error_response(step, code, &reason, reply.with_credentials)
            }
        },
        Err(e) => report.no_answer(step, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_argument() {
        assert_eq!(parse_family("4"), Ok(Family::V4));
        assert_eq!(parse_family("IPv6"), Ok(Family::V6));
        assert!(parse_family("5").unwrap_err().contains("give 4 or 6"));
    }

    #[test]
    fn private_relayed_address_behind_a_public_server_is_flagged() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let w = unreachable_relayed_address(ip("93.184.216.34"), ip("172.17.0.2"))
            .expect("a public server handing out a private relayed address");
        for part in [
            "93.184.216.34",
            "172.17.0.2",
            "private-use",
            "external-ip=93.184.216.34/172.17.0.2",
        ] {
            assert!(w.contains(part), "{part:?} missing: {w}");
        }
        assert!(unreachable_relayed_address(ip("2a00:1450::1"), ip("fd00::2")).is_some());
        assert!(unreachable_relayed_address(ip("93.184.216.34"), ip("100.64.0.1")).is_some());
        // Public relayed address, or a server reached on loopback or a LAN: nothing to say.
        assert_eq!(
            unreachable_relayed_address(ip("93.184.216.34"), ip("93.184.216.34")),
            None
        );
        assert_eq!(
            unreachable_relayed_address(ip("127.0.0.1"), ip("127.0.0.1")),
            None
        );
        assert_eq!(
            unreachable_relayed_address(ip("10.0.0.1"), ip("10.0.0.1")),
            None
        );
    }
}
