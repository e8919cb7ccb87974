//! Parsers for individual values. Each returns a message without file, line or key; the
//! caller prefixes those. Messages about secret values never quote them.

use std::net::{IpAddr, SocketAddr};

use tern_proto::peer_filter::IpRange;
use tern_proto::{DefaultFamily, StaticUser, UserSecret};

/// `external-ip`: the advertised public IP and, optionally, the private IP it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalIp {
    /// Sent to clients in XOR-RELAYED-ADDRESS.
    pub public: IpAddr,
    /// The local address the public one is forwarded to (`PUBLIC/PRIVATE`).
    pub private: Option<IpAddr>,
}

/// A flag's value: absent, `1/true/yes/on` or `0/false/no/off`.
pub fn flag(value: Option<&str>) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(format!(
            "`{other}` is not a flag value (use 1/true/yes or 0/false/no)"
        )),
    }
}

/// A UDP port, 1–65535.
pub fn port(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("`{value}` is not a port number")),
    }
}

/// A non-negative count.
pub fn count(value: &str) -> Result<u32, String> {
    value
        .parse()
        .map_err(|_| format!("`{value}` is not a non-negative number"))
}

/// A positive count.
pub fn positive_count(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{value}` is not a positive number")),
    }
}

/// A bandwidth in bytes per second, as coturn's `max-bps`; 0 means no limit.
pub fn bytes_per_second(value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("`{value}` is not a number of bytes per second"))
}

/// A positive number of seconds.
pub fn seconds(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(s) if s > 0 => Ok(s),
        _ => Err(format!("`{value}` is not a positive number of seconds")),
    }
}

/// An IPv4 or IPv6 address.
pub fn ip(value: &str) -> Result<IpAddr, String> {
    value
        .parse()
        .map_err(|_| format!("`{value}` is not an IP address"))
}

/// `IP:PORT` (`[v6]:PORT` for IPv6); port 0 lets the kernel pick.
pub fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("`{value}` is not an address `IP:PORT` (`[IPv6]:PORT` for IPv6)"))
}

/// `IP:PORT`, or a bare `IP` meaning port `default_port` (coturn's `alternate-server`).
pub fn socket_addr_or_ip(value: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let addr = socket_addr(value)?;
    if addr.port() == 0 {
        return Err(format!("`{value}`: port 0 is not a server port"));
    }
    Ok(addr)
}

/// `PUBLIC` or `PUBLIC/PRIVATE`.
pub fn external_ip(value: &str) -> Result<ExternalIp, String> {
    let (public, private) = match value.split_once('/') {
        Some((public, private)) => (public.trim(), Some(ip(private.trim())?)),
        None => (value, None),
    };
    let public = ip(public)?;
    if let Some(private) = private.filter(|p| p.is_ipv4() != public.is_ipv4()) {
        return Err(format!(
            "`{value}` maps {public} to {private}, of the other address family; give one \
             external-ip per family, each PUBLIC/PRIVATE of one family"
        ));
    }
    Ok(ExternalIp { public, private })
}

/// `allocation-default-address-family`: `ipv4`, `ipv6` or `keep`.
pub fn default_family(value: &str) -> Result<DefaultFamily, String> {
    match value.to_ascii_lowercase().as_str() {
        "ipv4" => Ok(DefaultFamily::Ipv4),
        "ipv6" => Ok(DefaultFamily::Ipv6),
        "keep" => Ok(DefaultFamily::Keep),
        _ => Err(format!("`{value}` is not ipv4, ipv6 or keep")),
    }
}

/// coturn's peer range forms: one IP, `first-last`, or CIDR `net/len`.
pub fn ip_range(value: &str) -> Result<IpRange, String> {
    IpRange::parse(value).map_err(|e| e.to_string())
}

/// `name:password`, or coturn's `name:0x<32 hex digits>` precomputed long-term key.
pub fn user(value: &str) -> Result<StaticUser, String> {
    let Some((name, pass)) = value.split_once(':') else {
        return Err("expected `name:password` (value not shown)".into());
    };
    if name.is_empty() || pass.is_empty() {
        return Err("expected `name:password` with both parts non-empty (value not shown)".into());
    }
    let secret = match pass.strip_prefix("0x") {
        Some(hex) if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let mut key = [0u8; 16];
            for (i, byte) in key.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digits");
            }
            UserSecret::Key(key)
        }
        _ => UserSecret::Password(pass.to_owned()),
    };
    Ok(StaticUser {
        name: name.to_owned(),
        secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> (String, String) {
        let r = ip_range(s).unwrap();
        (r.start.to_string(), r.end.to_string())
    }

    #[test]
    fn ranges() {
        assert_eq!(
            range("10.0.0.0-10.255.255.255"),
            ("10.0.0.0".into(), "10.255.255.255".into())
        );
        assert_eq!(
            range("172.16.0.0/12"),
            ("172.16.0.0".into(), "172.31.255.255".into())
        );
        assert_eq!(
            range("192.168.1.7/16"),
            ("192.168.0.0".into(), "192.168.255.255".into())
        );
        assert_eq!(
            range("0.0.0.0/0"),
            ("0.0.0.0".into(), "255.255.255.255".into())
        );
        assert_eq!(range("1.2.3.4"), ("1.2.3.4".into(), "1.2.3.4".into()));
        assert_eq!(
            range("fc00::/7"),
            (
                "fc00::".into(),
                "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".into()
            )
        );
        assert_eq!(range("::1"), ("::1".into(), "::1".into()));
        assert!(ip_range("10.0.0.9-10.0.0.1").is_err());
        assert!(ip_range("10.0.0.0/33").is_err());
        assert!(ip_range("10.0.0.0-::1").is_err());
        assert!(ip_range("ten").is_err());
    }

    #[test]
    fn external() {
        let e = external_ip("203.0.113.7/10.0.0.7").unwrap();
        assert_eq!(e.public.to_string(), "203.0.113.7");
        assert_eq!(e.private.unwrap().to_string(), "10.0.0.7");
        assert_eq!(external_ip("203.0.113.7").unwrap().private, None);
        assert!(external_ip("host.example").is_err());
    }

    #[test]
    fn users() {
        let u = user("alice:pa:ss").unwrap();
        assert_eq!(u.name, "alice");
        assert!(matches!(u.secret, UserSecret::Password(ref p) if p == "pa:ss"));
        let k = user("bob:0x0123456789abcdef0123456789ABCDEF").unwrap();
        assert!(matches!(k.secret, UserSecret::Key(k) if k[0] == 0x01 && k[15] == 0xef));
        let err = user("nopassword").unwrap_err();
        assert!(!err.contains("nopassword"));
    }

    #[test]
    fn addresses() {
        assert_eq!(socket_addr("0.0.0.0:9641").unwrap().port(), 9641);
        assert_eq!(socket_addr("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert!(socket_addr("localhost:80").is_err());
        let alt = socket_addr_or_ip("203.0.113.9", 3478).unwrap();
        assert_eq!(alt.to_string(), "203.0.113.9:3478");
        assert_eq!(
            socket_addr_or_ip("203.0.113.9:5349", 3478).unwrap().port(),
            5349
        );
        assert!(socket_addr_or_ip("203.0.113.9:0", 3478).is_err());
    }

    #[test]
    fn scalars() {
        assert_eq!(flag(None), Ok(true));
        assert_eq!(flag(Some("No")), Ok(false));
        assert!(flag(Some("maybe")).is_err());
        assert_eq!(port("abc").unwrap_err(), "`abc` is not a port number");
        assert!(port("0").is_err());
        assert!(port("65536").is_err());
        assert!(seconds("0").is_err());
    }
}
