//! Which server the probe talks to, and over what: `HOST[:PORT]` with `--transport`, or a
//! TURN URI (RFC 7065) that names the transport itself.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use anyhow::{bail, Context as _};

/// The port of `turn:` and plain STUN/TURN (RFC 8489 §9).
pub const TURN_PORT: u16 = 3478;
/// The port of `turns:` (RFC 7065 §3).
pub const TURNS_PORT: u16 = 5349;

/// How the probe's client reaches the server. Peers are always reached over UDP.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// STUN/TURN over UDP (`turn:HOST?transport=udp`).
    Udp,
    /// TURN over TCP (`turn:HOST?transport=tcp`).
    Tcp,
    /// TURN over TLS over TCP (`turns:HOST?transport=tcp`).
    Tls,
}

impl Transport {
    /// How reports name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }

    /// Whether messages go over a byte stream (framed, never retransmitted).
    pub fn is_stream(self) -> bool {
        self != Self::Udp
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Udp | Self::Tcp => TURN_PORT,
            Self::Tls => TURNS_PORT,
        }
    }
}

/// The server to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as given, without brackets: the name a TLS certificate must cover.
    pub host: String,
    /// Where the client connects or sends.
    pub addr: SocketAddr,
    /// Over what.
    pub transport: Transport,
}

/// Reads `server` (`HOST`, `HOST:PORT`, `IP`, `[IPv6]:PORT`, or a `turn:`/`turns:` URI) and
/// resolves it. `flag` is `--transport`, which must agree with a URI's own.
pub fn parse(server: &str, flag: Option<Transport>) -> anyhow::Result<Target> {
    let (rest, from_uri) = match server.split_once(':') {
        Some(("turn", rest)) => uri_transport(rest, Transport::Udp)?,
        Some(("turns", rest)) => uri_transport(rest, Transport::Tls)?,
        Some(("stun" | "stuns", _)) => {
            bail!("{server}: give a turn: or turns: URI, or HOST[:PORT] with --transport")
        }
        _ => (server, None),
    };
    let transport = match (from_uri, flag) {
        (Some(u), Some(f)) if u != f => bail!(
            "--transport {} conflicts with {server}, which means {}",
            f.label().to_lowercase(),
            u.label().to_lowercase()
        ),
        (u, f) => u.or(f).unwrap_or(Transport::Udp),
    };
    let (host, addr) = resolve(rest, transport.default_port())?;
    Ok(Target {
        host,
        addr,
        transport,
    })
}

/// The host part of a TURN URI and the transport its scheme and query name.
fn uri_transport(rest: &str, scheme: Transport) -> anyhow::Result<(&str, Option<Transport>)> {
    let (host, query) = match rest.split_once('?') {
        Some((host, query)) => (host, Some(query)),
        None => (rest, None),
    };
    let transport = match (scheme, query) {
        (_, None) => scheme,
        (Transport::Udp, Some("transport=udp")) => Transport::Udp,
        (Transport::Udp, Some("transport=tcp")) => Transport::Tcp,
        (Transport::Tls, Some("transport=tcp")) => Transport::Tls,
        (Transport::Tls, Some("transport=udp")) => {
            bail!("turns:{rest} is TURN over DTLS, which the probe does not speak")
        }
        (_, Some(q)) => bail!("unknown query `{q}`: expected transport=udp or transport=tcp"),
    };
    Ok((host, Some(transport)))
}

/// `HOST`, `HOST:PORT`, `IP`, `IPv4:PORT` or `[IPv6]:PORT` to the host (no brackets) and one
/// socket address.
fn resolve(server: &str, default_port: u16) -> anyhow::Result<(String, SocketAddr)> {
    if server.is_empty() {
        bail!("no server given");
    }
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), addr));
    }
    let bare = server.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok((ip.to_string(), SocketAddr::new(ip, default_port)));
    }
    let (host, port) = match server.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse()
                .with_context(|| format!("bad port in {server}"))?,
        ),
        None => (server, default_port),
    };
    let mut addrs = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?;
    let addr = addrs
        .next()
        .with_context(|| format!("{host} has no address"))?;
    Ok((host.to_owned(), addr))
}

/// The local IP the kernel would send from to reach `server`. Connecting a UDP socket only
/// looks up a route; no packet is sent.
pub fn local_ip_toward(server: SocketAddr) -> std::io::Result<IpAddr> {
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

    fn t(s: &str, flag: Option<Transport>) -> (String, String, Transport) {
        let t = parse(s, flag).unwrap();
        (t.host, t.addr.to_string(), t.transport)
    }

    #[test]
    fn host_forms() {
        let a = |s: &str| t(s, None).1;
        assert_eq!(a("127.0.0.1"), "127.0.0.1:3478");
        assert_eq!(a("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(a("::1"), "[::1]:3478");
        assert_eq!(a("[::1]"), "[::1]:3478");
        assert_eq!(a("[::1]:5000"), "[::1]:5000");
        assert_eq!(t("[::1]:5000", None).0, "::1");
        assert_eq!(t("localhost:7", None).0, "localhost");
        assert!(parse("127.0.0.1:x", None).is_err());
        assert!(parse("", None).is_err());
    }

    #[test]
    fn transports_and_uris() {
        use Transport::*;
        assert_eq!(t("127.0.0.1", Some(Tls)).1, "127.0.0.1:5349");
        assert_eq!(t("127.0.0.1", Some(Tcp)).1, "127.0.0.1:3478");
        assert_eq!(t("127.0.0.1", None).2, Udp);
        assert_eq!(
            t("turns:127.0.0.1:443", None),
            ("127.0.0.1".into(), "127.0.0.1:443".into(), Tls)
        );
        assert_eq!(t("turns:127.0.0.1?transport=tcp", None).1, "127.0.0.1:5349");
        assert_eq!(t("turn:127.0.0.1?transport=tcp", None).2, Tcp);
        assert_eq!(
            t("turn:[::1]:3479?transport=udp", Some(Udp)).1,
            "[::1]:3479"
        );
        assert_eq!(t("turn:127.0.0.1", None).2, Udp);
        let err = |s: &str, f| parse(s, f).unwrap_err().to_string();
        assert!(err("turn:127.0.0.1?transport=tcp", Some(Udp)).contains("conflicts"));
        assert!(err("turns:127.0.0.1", Some(Tcp)).contains("means tls"));
        assert!(err("turns:127.0.0.1?transport=udp", None).contains("DTLS"));
        assert!(err("turn:127.0.0.1?transport=sctp", None).contains("unknown query"));
        assert!(err("stun:127.0.0.1", None).contains("turn: or turns:"));
    }
}
