//! `tern probe`: checks a STUN/TURN server from the outside, the way a WebRTC client uses it,
//! and says in plain words what is wrong at the first step that fails.
//!
//! Without credentials it sends a STUN Binding request and prints the reflexive address.
//! With `--secret` (TURN REST API) or `--user`/`--password` it also allocates a relay, plays
//! the peer from a second local socket, moves data both ways with Send/Data indications and
//! over a channel, and releases the allocation.
mod client;
mod relay;

use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tern_proto::peer_filter::not_publicly_routable;
use tern_wire::{attr, Method};

use client::{Credentials, Endpoint, Session, TxError};

/// The port STUN and TURN listen on when none is given (RFC 8489 §9).
const DEFAULT_PORT: u16 = 3478;

/// Arguments of `tern probe`.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The server: HOST, HOST:PORT, IP, or [IPv6]:PORT. The port defaults to 3478.
    pub server: String,
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
    /// How long to wait for each answer or datagram, in seconds (0.1 to 60).
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub timeout: f64,
    /// Local IP of the socket that plays the peer (default: the client socket's IP).
    #[arg(long, value_name = "IP")]
    pub peer_bind: Option<IpAddr>,
}

/// Runs the probe, printing one `[ok]`/`[warn]`/`[FAIL]` line per step. Exit code 0 when
/// every step passed, 1 otherwise; `Err` only for bad arguments or when the client socket
/// cannot be opened.
pub fn run(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    if !(0.1..=60.0).contains(&args.timeout) {
        bail!("--timeout must be between 0.1 and 60 seconds");
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let server = resolve(&args.server)?;
    let creds = match (&args.secret, &args.user, &args.password) {
        (Some(secret), _, _) => Some(Credentials::rest(secret, Duration::from_secs(args.ttl))),
        (None, Some(user), Some(password)) => Some(Credentials {
            username: user.clone(),
            password: password.clone(),
        }),
        _ => None,
    };
    let local_ip = local_ip_toward(server).context("no local address can reach the server")?;
    let sock = UdpSocket::bind((local_ip, 0)).context("binding the client socket")?;
    sock.connect(server)
        .context("connecting the client socket")?;
    let ep = Endpoint {
        sock: &sock,
        to: server,
        connected: true,
    };
    let mut session = Session::new(ep, timeout, creds.clone());
    let mut report = Report {
        server,
        timeout,
        rest: args.secret.is_some(),
        failed: false,
    };

    if binding(&mut session, &mut report).is_none() {
        return Ok(report.exit());
    }
    if creds.is_none() {
        println!("       (pass --secret, or --user and --password, to test relaying too)");
        return Ok(report.exit());
    }
    let Some(relayed) = allocate(&mut session, &mut report) else {
        return Ok(report.exit());
    };
    let peer_ip = args.peer_bind.unwrap_or(local_ip);
    relay::exchange(&mut session, &mut report, relayed, peer_ip);
    refresh_zero(&mut session, &mut report);
    Ok(report.exit())
}

/// Prints steps; remembers whether one failed so only the first gets a diagnosis.
pub(super) struct Report {
    server: SocketAddr,
    timeout: Duration,
    /// Credentials came from --secret.
    rest: bool,
    failed: bool,
}

impl Report {
    fn ok(&self, step: &str, what: impl Display) {
        println!("[ok] {step}: {what}");
    }

    fn warn(&self, step: &str, what: impl Display) {
        println!("[warn] {step}: {what}");
    }

    fn fail(&mut self, step: &str, what: impl Display, diagnosis: impl Display) {
        println!("[FAIL] {step}: {what}");
        if !self.failed {
            println!("       diagnosis: {diagnosis}");
        }
        self.failed = true;
    }

    /// Reports a transaction that got no usable answer.
    fn no_answer(&mut self, step: &str, e: TxError) {
        let (s, secs, port) = (self.server, self.timeout.as_secs_f64(), self.server.port());
        let open = format!("is the server running, is UDP {port} open/forwarded?");
        match e {
            TxError::Timeout if step == "binding" => self.fail(
                step,
                "no answer",
                format!("no answer from {s} over UDP within {secs} s: {open}"),
            ),
            TxError::Timeout => self.fail(
                step,
                "no answer",
                format!(
                    "{s} answered Binding but not this request within {secs} s: is it a TURN \
                     server with relaying enabled, and is the request too large for the path?"
                ),
            ),
            TxError::Refused => self.fail(
                step,
                "ICMP port unreachable",
                format!("no answer from {s} over UDP: the host says nothing listens there: {open}"),
            ),
            TxError::BadFingerprint => self.fail(
                step,
                "the answer's FINGERPRINT is wrong",
                "something between you and the server alters STUN messages (an ALG or a broken proxy)",
            ),
            TxError::BadIntegrity => self.fail(
                step,
                "the answer's MESSAGE-INTEGRITY does not match our key",
                "the server signed with another key: is the realm or the password what the server uses?",
            ),
            TxError::Io(e) => self.fail(step, format!("socket error: {e}"), "a local socket failed"),
        }
    }

    /// Reports an error response to a request, diagnosing what the code means at `step`.
    fn error_response(&mut self, step: &str, code: u16, reason: &str, with_creds: bool) {
        let what = format!("the server answered {code} {reason} ({})", meaning(code));
        let peer_step = step == "create-permission" || step == "channel-bind";
        let other;
        let diagnosis = match code {
            401 if with_creds && self.rest => {
                "the server rejected the credentials: is the secret the server's \
                 static-auth-secret, and are the clocks in sync?"
            }
            401 if with_creds => {
                "the server rejected the credentials: are the username and password right for \
                 the server's realm?"
            }
            401 => "the server asks for credentials but names no realm and nonce to use",
            403 if peer_step => {
                "the server refuses this peer address (peer filtering: loopback/private peers \
                 need allow-loopback-peers or allowed-peer-ip)"
            }
            437 => "an allocation from this address and port already exists: run again",
            486 => "this user holds too many allocations (user-quota/total-quota)",
            508 => "the relay port pool is exhausted (min-port/max-port, or too many users)",
            _ => {
                other = format!("the server refused the request: {}", meaning(code));
                &other
            }
        };
        self.fail(step, what, diagnosis);
    }

    fn exit(&self) -> ExitCode {
        if self.failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// What an ERROR-CODE means (RFC 8489 §14.8, RFC 8656 §19).
fn meaning(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate: the server redirects to another one",
        400 => "Bad Request: the server found the request malformed",
        401 => "Unauthenticated: credentials missing or wrong",
        403 => "Forbidden: the request is not allowed",
        420 => "Unknown Attribute: the server does not understand an attribute",
        437 => "Allocation Mismatch: the allocation is missing or already exists",
        438 => "Stale Nonce: the nonce expired",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials: not the user that created the allocation",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        500 => "Server Error",
        508 => "Insufficient Capacity: no relay port free",
        _ => "an error code this probe does not know",
    }
}

/// Step 1: Binding request; returns the reflexive address.
fn binding(session: &mut Session<'_>, report: &mut Report) -> Option<SocketAddr> {
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
        session.ep.to
    );
    report.ok(step, what);
    report.ok(
        step,
        format!("reflexive address (XOR-MAPPED-ADDRESS) {reflexive}"),
    );
    Some(reflexive)
}

/// Step 2: Allocate a UDP relay; returns the relayed address.
fn allocate(session: &mut Session<'_>, report: &mut Report) -> Option<SocketAddr> {
    let step = "allocate";
    let build = |w: &mut tern_wire::MessageWriter<'_>| {
        w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
    };
    let reply = match session.request(Method::ALLOCATE, &build) {
        Ok(reply) => reply,
        Err(e) => {
            report.no_answer(step, e);
            return None;
        }
    };
    let answer = &reply.answer;
    if let Some((code, reason)) = answer.error() {
        report.error_response(step, code, &reason, reply.with_credentials);
        return None;
    }
    let Some(relayed) = answer.xor_address(attr::XOR_RELAYED_ADDRESS) else {
        let diagnosis = "the server is not a TURN server, or something rewrote its answer";
        report.fail(step, "the answer has no XOR-RELAYED-ADDRESS", diagnosis);
        return None;
    };
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
    if let Some(what) = unreachable_relayed_address(session.ep.to.ip(), relayed.ip()) {
        report.warn(step, what);
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
fn refresh_zero(session: &mut Session<'_>, report: &mut Report) {
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

/// `HOST`, `HOST:PORT`, `IP`, `IPv4:PORT` or `[IPv6]:PORT` to one socket address.
fn resolve(server: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = server.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let (host, port) = match server.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse()
                .with_context(|| format!("bad port in {server}"))?,
        ),
        None => (server, DEFAULT_PORT),
    };
    let mut addrs = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?;
    addrs
        .next()
        .with_context(|| format!("{host} has no address"))
}

/// The local IP the kernel would send from to reach `server`. Connecting a UDP socket only
/// looks up a route; no packet is sent.
fn local_ip_toward(server: SocketAddr) -> std::io::Result<IpAddr> {
    let any = match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let s = UdpSocket::bind((any, 0))?;
    s.connect(server)?;
    Ok(s.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_forms() {
        let a = |s: &str| resolve(s).unwrap().to_string();
        assert_eq!(a("127.0.0.1"), "127.0.0.1:3478");
        assert_eq!(a("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(a("::1"), "[::1]:3478");
        assert_eq!(a("[::1]"), "[::1]:3478");
        assert_eq!(a("[::1]:5000"), "[::1]:5000");
        assert!(resolve("127.0.0.1:x").is_err());
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
