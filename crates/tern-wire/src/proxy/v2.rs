//! Version 2: the 12-byte signature, version and command, family and transport, a length,
//! then the address block and TLVs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    agrees_with, Addresses, Command, Decoded, Family, Limits, ProxyError, ProxyHeader, Transport,
    Version, V2_FIXED_LEN, V2_SIGNATURE,
};

/// Source and destination IPv4 addresses and ports.
const INET_LEN: usize = 2 * 4 + 2 * 2;
/// Source and destination IPv6 addresses and ports.
const INET6_LEN: usize = 2 * 16 + 2 * 2;
/// Source and destination `sockaddr_un` paths.
const UNIX_LEN: usize = 2 * 108;
/// A TLV's type and length.
const TLV_HEADER_LEN: usize = 3;

/// Decodes a buffer whose first byte is the signature's.
pub(super) fn decode(buf: &[u8], limits: Limits) -> Result<Decoded, ProxyError> {
    if !agrees_with(buf, &V2_SIGNATURE) {
        return Err(ProxyError::NotProxy);
    }
    let command = match buf.get(12) {
        None => None,
        Some(&b) if b >> 4 != 2 => return Err(ProxyError::V2BadVersion),
        Some(&b) => Some(match b & 0x0F {
            0 => Command::Local,
            1 => Command::Proxy,
            _ => return Err(ProxyError::V2BadCommand),
        }),
    };
    // A LOCAL header's family is ignored; a PROXY header's must be assigned.
    let kind = match (command, buf.get(13)) {
        (Some(Command::Proxy), Some(&b)) => Some(family_and_transport(b)?),
        _ => None,
    };
    let (Some(command), Some(&[hi, lo])) = (command, buf.get(14..16)) else {
        return Ok(Decoded::NeedMore {
            missing: V2_FIXED_LEN - buf.len(),
        });
    };
    let len = V2_FIXED_LEN + usize::from(u16::from_be_bytes([hi, lo]));
    if len > limits.max_v2_len {
        return Err(ProxyError::V2TooLong);
    }
    let (family, transport) = kind.unwrap_or((Family::Unspecified, Transport::Unspecified));
    let address_len = match family {
        Family::Unspecified => 0,
        Family::Inet => INET_LEN,
        Family::Inet6 => INET6_LEN,
        Family::Unix => UNIX_LEN,
    };
    if V2_FIXED_LEN + address_len > len {
        return Err(ProxyError::V2ShortAddresses);
    }
    if buf.len() < len {
        return Ok(Decoded::NeedMore {
            missing: len - buf.len(),
        });
    }
    let block = &buf[V2_FIXED_LEN..len];
    let addresses = match transport {
        Transport::Unspecified => None,
        _ => addresses(block, family),
    };
    // LOCAL and AF_UNSPEC blocks are opaque: there is no telling where TLVs would start.
    let tlvs = if command == Command::Proxy && family != Family::Unspecified {
        let start = V2_FIXED_LEN + address_len;
        check_tlvs(&buf[start..len])?;
        start..len
    } else {
        len..len
    };
    Ok(Decoded::Header(ProxyHeader {
        version: Version::V2,
        command,
        family,
        transport,
        addresses,
        consumed: len,
        tlvs,
    }))
}

/// Byte 14 of a PROXY header: the family in the high nibble, the transport in the low one.
fn family_and_transport(b: u8) -> Result<(Family, Transport), ProxyError> {
    let family = match b >> 4 {
        0 => Family::Unspecified,
        1 => Family::Inet,
        2 => Family::Inet6,
        3 => Family::Unix,
        _ => return Err(ProxyError::V2BadFamily),
    };
    let transport = match b & 0x0F {
        0 => Transport::Unspecified,
        1 => Transport::Stream,
        2 => Transport::Datagram,
        _ => return Err(ProxyError::V2BadFamily),
    };
    Ok((family, transport))
}

/// The IP endpoints at the front of `block`, which holds at least the family's address
/// block; `None` for a family without IP addresses.
fn addresses(block: &[u8], family: Family) -> Option<Addresses> {
    let (source, destination, ports) = match family {
        Family::Inet => {
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::from(array::<4>(&block[at..])));
            (ip(0), ip(4), &block[8..INET_LEN])
        }
        Family::Inet6 => {
            let ip = |at: usize| IpAddr::V6(Ipv6Addr::from(array::<16>(&block[at..])));
            (ip(0), ip(16), &block[32..INET6_LEN])
        }
        Family::Unspecified | Family::Unix => return None,
    };
    let port = |at: usize| u16::from_be_bytes(array::<2>(&ports[at..]));
    Some(Addresses {
        source: SocketAddr::new(source, port(0)),
        destination: SocketAddr::new(destination, port(2)),
    })
}

/// The first `N` bytes of `b`, which has at least that many.
fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    b[..N].try_into().expect("the caller checked the length")
}

/// Walks the TLVs filling `tlvs` exactly: each a type byte, a 16-bit length and that many
/// bytes of value.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let Some(&[_, hi, lo]) = tlvs.get(..TLV_HEADER_LEN) else {
            return Err(ProxyError::V2BadTlv);
        };
        let end = TLV_HEADER_LEN + usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = tlvs.get(end..).ok_or(ProxyError::V2BadTlv)?;
    }
    Ok(())
}
