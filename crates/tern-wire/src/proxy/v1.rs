//! Version 1: one line of US-ASCII text, `PROXY <protocol> <source> <destination>
//! <source port> <destination port>\r\n`, or `PROXY UNKNOWN` and anything up to the CRLF.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    agrees_with, Addresses, Command, Decoded, Family, ProxyError, ProxyHeader, Transport, Version,
    V1_MAX_LEN, V1_MIN_LEN,
};

/// What every version 1 line starts with: `PROXY` and exactly one space.
const PREFIX: &[u8] = b"PROXY ";

/// Decodes a buffer whose first byte is `P`.
pub(super) fn decode(buf: &[u8]) -> Result<Decoded, ProxyError> {
    if !agrees_with(buf, PREFIX) {
        return Err(ProxyError::NotProxy);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::V1TooLong);
        }
        // At least the CRLF is still to come.
        let missing = V1_MIN_LEN.saturating_sub(buf.len()).max(2);
        return Ok(Decoded::NeedMore { missing });
    };
    if window[end] == b'\n' {
        return Err(ProxyError::V1BadLineEnd);
    }
    // The line must end by byte 107, its LF included.
    if end + 2 > V1_MAX_LEN {
        return Err(ProxyError::V1TooLong);
    }
    match buf.get(end + 1) {
        None => Ok(Decoded::NeedMore { missing: 1 }),
        Some(b'\n') => parse_line(&buf[PREFIX.len()..end], end + 2).map(Decoded::Header),
        Some(_) => Err(ProxyError::V1BadLineEnd),
    }
}

/// Reads the fields after `PROXY `, up to (not including) the CRLF.
fn parse_line(fields: &[u8], consumed: usize) -> Result<ProxyHeader, ProxyError> {
    let mut fields = fields.split(|&b| b == b' ');
    let protocol = fields.next().unwrap_or_default();
    let family = match protocol {
        b"TCP4" => Family::Inet,
        b"TCP6" => Family::Inet6,
        // The receiver must ignore whatever follows UNKNOWN before the CRLF.
        b"UNKNOWN" => {
            return Ok(header(
                Family::Unspecified,
                Transport::Unspecified,
                None,
                consumed,
            ))
        }
        _ => return Err(ProxyError::V1BadProtocol),
    };
    let mut next = || match fields.next() {
        Some(field) if !field.is_empty() => Ok(field),
        _ => Err(ProxyError::V1BadSyntax),
    };
    let (source, destination) = (next()?, next()?);
    let (source_port, destination_port) = (next()?, next()?);
    if fields.next().is_some() {
        return Err(ProxyError::V1BadSyntax);
    }
    let addresses = Addresses {
        source: SocketAddr::new(address(source, family)?, port(source_port)?),
        destination: SocketAddr::new(address(destination, family)?, port(destination_port)?),
    };
    Ok(header(family, Transport::Stream, Some(addresses), consumed))
}

fn header(
    family: Family,
    transport: Transport,
    addresses: Option<Addresses>,
    consumed: usize,
) -> ProxyHeader {
    ProxyHeader {
        version: Version::V1,
        command: Command::Proxy,
        family,
        transport,
        addresses,
        consumed,
        tlvs: 0..0,
    }
}

/// An address of `family`. The standard library's parsers already refuse what the
/// specification refuses: IPv4 numbers with leading zeros, and IPv6 text with more or fewer
/// than 128 bits or a zone.
fn address(field: &[u8], family: Family) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(field).map_err(|_| ProxyError::V1BadAddress)?;
    let ip = match family {
        Family::Inet => text.parse::<Ipv4Addr>().map(IpAddr::V4),
        _ => text.parse::<Ipv6Addr>().map(IpAddr::V6),
    };
    ip.map_err(|_| ProxyError::V1BadAddress)
}

/// A port: one to five decimal digits, no leading zero, at most 65535. (`u16::from_str`
/// alone would take a `+` sign and leading zeros.)
fn port(field: &[u8]) -> Result<u16, ProxyError> {
    let digits = field.iter().all(u8::is_ascii_digit);
    let leading_zero = field.len() > 1 && field[0] == b'0';
    if !digits || leading_zero || field.len() > 5 {
        return Err(ProxyError::V1BadPort);
    }
    let value = field.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| ProxyError::V1BadPort)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(port(b"0"), Ok(0));
        assert_eq!(port(b"65535"), Ok(65535));
        for bad in [
            &b"65536"[..],
            b"080",
            b"+80",
            b"-1",
            b"1a",
            b"123456",
            b"00",
        ] {
            assert_eq!(port(bad), Err(ProxyError::V1BadPort), "{bad:?}");
        }
    }

    #[test]
    fn addresses_follow_the_family() {
        assert!(address(b"192.0.2.1", Family::Inet).is_ok());
        assert!(address(b"2001:DB8::1", Family::Inet6).is_ok());
        for (bad, family) in [
            (&b"2001:db8::1"[..], Family::Inet),
            (b"192.0.2.1", Family::Inet6),
            (b"192.0.2.01", Family::Inet),
            (b"192.0.2", Family::Inet),
            (b"fe80::1%eth0", Family::Inet6),
            (b"1:2:3:4:5:6:7:8:9", Family::Inet6),
            (b"\xff", Family::Inet),
        ] {
            assert_eq!(
                address(bad, family),
                Err(ProxyError::V1BadAddress),
                "{bad:?}"
            );
        }
    }
}
