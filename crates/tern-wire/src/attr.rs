//! Attribute types (RFC 8489 §18.3, RFC 8656 §18) and decoders for their values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{TransactionId, WireError, MAGIC_COOKIE};

/// MAPPED-ADDRESS (RFC 8489 §14.1).
pub const MAPPED_ADDRESS: u16 = 0x0001;
/// USERNAME (RFC 8489 §14.3).
pub const USERNAME: u16 = 0x0006;
/// MESSAGE-INTEGRITY (RFC 8489 §14.5).
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
/// ERROR-CODE (RFC 8489 §14.8).
pub const ERROR_CODE: u16 = 0x0009;
/// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
/// CHANNEL-NUMBER (RFC 8656 §18.1).
pub const CHANNEL_NUMBER: u16 = 0x000C;
/// LIFETIME (RFC 8656 §18.2).
pub const LIFETIME: u16 = 0x000D;
/// XOR-PEER-ADDRESS (RFC 8656 §18.3).
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
/// DATA (RFC 8656 §18.4).
pub const DATA: u16 = 0x0013;
/// REALM (RFC 8489 §14.9).
pub const REALM: u16 = 0x0014;
/// NONCE (RFC 8489 §14.10).
pub const NONCE: u16 = 0x0015;
/// XOR-RELAYED-ADDRESS (RFC 8656 §18.5).
pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
/// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6).
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
/// EVEN-PORT (RFC 8656 §18.7).
pub const EVEN_PORT: u16 = 0x0018;
/// REQUESTED-TRANSPORT (RFC 8656 §18.8).
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
/// DONT-FRAGMENT (RFC 8656 §18.9).
pub const DONT_FRAGMENT: u16 = 0x001A;
/// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
/// PASSWORD-ALGORITHM (RFC 8489 §14.12).
pub const PASSWORD_ALGORITHM: u16 = 0x001D;
/// USERHASH (RFC 8489 §14.4).
pub const USERHASH: u16 = 0x001E;
/// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// RESERVATION-TOKEN (RFC 8656 §18.10).
pub const RESERVATION_TOKEN: u16 = 0x0022;
/// PRIORITY (RFC 8445 §16.1).
pub const PRIORITY: u16 = 0x0024;
/// USE-CANDIDATE (RFC 8445 §16.1).
pub const USE_CANDIDATE: u16 = 0x0025;
/// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11).
pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
/// ADDRESS-ERROR-CODE (RFC 8656 §18.12).
pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
/// ADDITIONAL-ADDRESS-FAMILY at the codepoint coturn uses (0x8032, from the draft that
/// became RFC 8656, before IANA assigned 0x8000); its `turnutils_uclient -Z` sends it and its
/// `turnserver` reads it. Same value layout as [`ADDITIONAL_ADDRESS_FAMILY`].
pub const ADDITIONAL_ADDRESS_FAMILY_DRAFT: u16 = 0x8032;
/// ADDRESS-ERROR-CODE at the codepoint coturn uses (0x8033; RFC 8656 assigned 0x8001). Same
/// value layout as [`ADDRESS_ERROR_CODE`].
pub const ADDRESS_ERROR_CODE_DRAFT: u16 = 0x8033;
/// PASSWORD-ALGORITHMS (RFC 8489 §14.11).
pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
/// SOFTWARE (RFC 8489 §14.14).
pub const SOFTWARE: u16 = 0x8022;
/// ALTERNATE-SERVER (RFC 8489 §14.15).
pub const ALTERNATE_SERVER: u16 = 0x8023;
/// FINGERPRINT (RFC 8489 §14.7).
pub const FINGERPRINT: u16 = 0x8028;
/// ICE-CONTROLLED (RFC 8445 §16.1).
pub const ICE_CONTROLLED: u16 = 0x8029;
/// ICE-CONTROLLING (RFC 8445 §16.1).
pub const ICE_CONTROLLING: u16 = 0x802A;
/// RESPONSE-ORIGIN (RFC 5780 §7.3).
pub const RESPONSE_ORIGIN: u16 = 0x802B;

/// Attribute types 0x0000..=0x7FFF must be understood by the receiver (RFC 8489 §14).
#[inline]
pub fn is_comprehension_required(attr_type: u16) -> bool {
    attr_type < 0x8000
}

/// REQUESTED-TRANSPORT protocol number for UDP.
pub const TRANSPORT_UDP: u8 = 17;
/// Address family byte for IPv4 in address attributes.
pub const FAMILY_IPV4: u8 = 0x01;
/// Address family byte for IPv6 in address attributes.
pub const FAMILY_IPV6: u8 = 0x02;

/// Decodes a MAPPED-ADDRESS-style value (family, port, address; no XOR).
pub fn decode_address(value: &[u8], attr_type: u16) -> Result<SocketAddr, WireError> {
    if value.len() < 4 {
        return Err(WireError::BadAttributeLength {
            attr_type,
            len: value.len(),
        });
    }
    let port = u16::from_be_bytes([value[2], value[3]]);
    let ip = match (value[1], value.len()) {
        (FAMILY_IPV4, 8) => IpAddr::V4(Ipv4Addr::new(value[4], value[5], value[6], value[7])),
        (FAMILY_IPV6, 20) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&value[4..20]);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        (FAMILY_IPV4 | FAMILY_IPV6, len) => {
            return Err(WireError::BadAttributeLength { attr_type, len })
        }
        (family, _) => return Err(WireError::BadAddressFamily { family }),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Decodes an XOR-MAPPED-ADDRESS-style value (RFC 8489 §14.2).
pub fn decode_xor_address(
    value: &[u8],
    attr_type: u16,
    tid: &TransactionId,
) -> Result<SocketAddr, WireError> {
    let plain = decode_address(value, attr_type)?;
    Ok(xor_addr(plain, tid))
}

/// XORs an address with the magic cookie and transaction id; the operation is its own inverse.
pub fn xor_addr(addr: SocketAddr, tid: &TransactionId) -> SocketAddr {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match addr.ip() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::V4(Ipv4Addr::new(
                o[0] ^ cookie[0],
                o[1] ^ cookie[1],
                o[2] ^ cookie[2],
                o[3] ^ cookie[3],
            ))
        }
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            for (i, b) in o.iter_mut().enumerate() {
                *b ^= if i < 4 { cookie[i] } else { tid.0[i - 4] };
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
    };
    SocketAddr::new(ip, port)
}

/// Encodes an address value (family, port, address) into `out`; returns the bytes written.
pub fn encode_address(addr: SocketAddr, out: &mut [u8; 20]) -> usize {
    out[0] = 0;
    out[2..4].copy_from_slice(&addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(v4) => {
            out[1] = FAMILY_IPV4;
            out[4..8].copy_from_slice(&v4.octets());
            8
        }
        IpAddr::V6(v6) => {
            out[1] = FAMILY_IPV6;
            out[4..20].copy_from_slice(&v6.octets());
            20
        }
    }
}

/// Decodes a 32-bit value such as LIFETIME.
pub fn decode_u32(value: &[u8], attr_type: u16) -> Result<u32, WireError> {
    match value {
        [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(WireError::BadAttributeLength {
            attr_type,
            len: value.len(),
        }),
    }
}

/// Decodes a text value such as USERNAME, REALM, NONCE or SOFTWARE.
pub fn decode_str(value: &[u8], attr_type: u16) -> Result<&str, WireError> {
    std::str::from_utf8(value).map_err(|_| WireError::NotUtf8 { attr_type })
}

/// Decodes CHANNEL-NUMBER: the number in the first two bytes, two bytes RFFU.
pub fn decode_channel_number(value: &[u8]) -> Result<u16, WireError> {
    match value {
        [a, b, _, _] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(WireError::BadAttributeLength {
            attr_type: CHANNEL_NUMBER,
            len: value.len(),
        }),
    }
}

/// Decodes REQUESTED-TRANSPORT: the protocol number in the first byte.
pub fn decode_requested_transport(value: &[u8]) -> Result<u8, WireError> {
    match value {
        [p, _, _, _] => Ok(*p),
        _ => Err(WireError::BadAttributeLength {
            attr_type: REQUESTED_TRANSPORT,
            len: value.len(),
        }),
    }
}

/// Decodes REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.6, §18.11):
/// the family byte, then three bytes RFFU. The byte is returned as sent, so the caller can
/// answer a family it does not know (RFC 8656: 440) apart from a malformed attribute (400).
pub fn decode_address_family(value: &[u8], attr_type: u16) -> Result<u8, WireError> {
    match value {
        [f, _, _, _] => Ok(*f),
        _ => Err(WireError::BadAttributeLength {
            attr_type,
            len: value.len(),
        }),
    }
}

/// The value of REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY for `family`
/// ([`FAMILY_IPV4`] or [`FAMILY_IPV6`]).
pub fn encode_address_family(family: u8) -> [u8; 4] {
    [family, 0, 0, 0]
}

/// Decodes ADDRESS-ERROR-CODE (RFC 8656 §18.12) into (family, code, reason phrase): the
/// family byte, then an ERROR-CODE-shaped class and number, then the reason.
pub fn decode_address_error_code(value: &[u8]) -> Result<(u8, u16, &str), WireError> {
    if value.len() < 4 {
        return Err(WireError::BadAttributeLength {
            attr_type: ADDRESS_ERROR_CODE,
            len: value.len(),
        });
    }
    let class = u16::from(value[2] & 0x07);
    let number = u16::from(value[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return Err(WireError::BadErrorCode);
    }
    let reason = decode_str(&value[4..], ADDRESS_ERROR_CODE)?;
    Ok((value[0], class * 100 + number, reason))
}

/// Decodes ERROR-CODE into (code, reason phrase).
pub fn decode_error_code(value: &[u8]) -> Result<(u16, &str), WireError> {
    if value.len() < 4 {
        return Err(WireError::BadAttributeLength {
            attr_type: ERROR_CODE,
            len: value.len(),
        });
    }
    let class = u16::from(value[2] & 0x07);
    let number = u16::from(value[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return Err(WireError::BadErrorCode);
    }
    let reason = decode_str(&value[4..], ERROR_CODE)?;
    Ok((class * 100 + number, reason))
}

/// Decodes UNKNOWN-ATTRIBUTES into its list of 16-bit types.
pub fn decode_unknown_attributes(value: &[u8]) -> impl Iterator<Item = u16> + '_ {
    value
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
}
