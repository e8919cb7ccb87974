//! Opening the client's link: a connected UDP socket, or a TCP connection (and over TLS the
//! handshake), each failure reported as a step with its diagnosis.
use std::io::ErrorKind;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::link::{is_timeout, Link};
use super::report::Report;
use super::target::{local_ip_toward, Target, Transport};
use super::tls::{self, TlsOptions};

/// The link to `target`; `Ok(None)` after a reported failure, `Err` for bad arguments or a
/// local socket that cannot be opened.
pub(super) fn open(
    target: &Target,
    tls: &TlsOptions<'_>,
    timeout: Duration,
    report: &mut Report,
) -> anyhow::Result<Option<Link>> {
    match target.transport {
        Transport::Udp => {
            let local_ip =
                local_ip_toward(target.addr).context("no local address can reach the server")?;
            let sock = UdpSocket::bind((local_ip, 0)).context("binding the client socket")?;
            sock.connect(target.addr)
                .context("connecting the client socket")?;
            Ok(Some(Link::udp(sock, target.addr, true)))
        }
        Transport::Tcp => Ok(tcp(target, timeout, report).map(|s| Link::tcp(s, target.addr))),
        Transport::Tls => {
            let client = tls::client(tls)?;
            let Some(stream) = tcp(target, timeout, report) else {
                return Ok(None);
            };
            let session = tls::handshake(stream, &client, timeout, report);
            Ok(session.map(|s| Link::tls(s, target.addr)))
        }
    }
}

/// Connects to `target` over TCP within `timeout`.
fn tcp(target: &Target, timeout: Duration, report: &mut Report) -> Option<TcpStream> {
    const STEP: &str = "connect";
    let (addr, port) = (target.addr, target.addr.port());
    let start = Instant::now();
    let e = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(stream) => {
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            let from = stream
                .local_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            // Small messages go out at once; writes never wait longer than an answer would.
            let _ = stream.set_nodelay(true);
            let _ = stream.set_write_timeout(Some(timeout));
            report.ok(
                STEP,
                format!("TCP connection to {addr} from {from} in {ms:.1} ms"),
            );
            return Some(stream);
        }
        Err(e) => e,
    };
    let listener = match target.transport {
        Transport::Tls => "a TLS listener (tls-listening-port; not no-tls)",
        _ => "a TCP listener (listening-port; not no-tcp)",
    };
    let (what, diagnosis) = if e.kind() == ErrorKind::ConnectionRefused {
        (
            "connection refused".to_owned(),
            format!(
                "nothing listens on TCP {port} at {} (the host answered with a reset): is the \
                 server running with {listener} on this port?",
                addr.ip()
            ),
        )
    } else if is_timeout(&e) {
        (
            format!("no answer within {} s", timeout.as_secs_f64()),
            format!(
                "the TCP connection to {addr} was neither accepted nor refused: a firewall drops \
                 it, or the host is down: is TCP {port} open and forwarded (security group, load \
                 balancer listener)?"
            ),
        )
    } else {
        (
            format!("cannot connect: {e}"),
            format!("no route to {addr} from here, or a local socket failed"),
        )
    };
    report.fail(STEP, what, diagnosis);
    None
}
