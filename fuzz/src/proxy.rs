//! The PROXY protocol header decoder (tern-wire's `proxy` module).

use std::net::SocketAddr;

use tern_wire::proxy::{
    decode_header, Command, Decoded, Family, Limits, ProxyError, ProxyHeader, Transport, Version,
    V1_MAX_LEN, V2_FIXED_LEN, V2_SIGNATURE,
};

/// Two bytes of limit (the longest version 2 header accepted), then what a connection
/// received first.
///
/// Checked: as bytes arrive, the answer is "need more" until it is a header or an error,
/// and then it stays the same; "need more" never asks past the header; a header is what its
/// bytes say, within its limits; and a header written again from what was decoded decodes
/// to the same addresses.
pub fn proxy(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let limits = Limits {
        max_v2_len: usize::from(u16::from_be_bytes([data[0], data[1]])),
    };
    let buf = &data[2..];
    let whole = decode_header(buf, limits);
    let mut settled: Option<(usize, Result<Decoded, ProxyError>)> = None;
    for n in prefixes(buf.len()) {
        let part = decode_header(&buf[..n], limits);
        match (&settled, &part) {
            (None, Ok(Decoded::NeedMore { missing })) => {
                assert!(*missing > 0);
                if let Ok(Decoded::Header(h)) = &whole {
                    assert!(n + missing <= h.consumed, "{n} + {missing} past the header");
                }
            }
            (None, _) => settled = Some((n, part)),
            (Some((at, first)), _) => {
                assert_eq!(&part, first, "settled at {at} bytes, changed at {n}")
            }
        }
    }
    if let Ok(Decoded::Header(h)) = whole {
        check_header(buf, limits, &h);
    }
}

fn check_header(buf: &[u8], limits: Limits, h: &ProxyHeader) {
    assert!(h.consumed <= buf.len());
    assert!(h.tlvs.start <= h.tlvs.end && h.tlvs.end <= h.consumed);
    if h.command == Command::Local {
        assert_eq!(
            (h.family, h.transport, h.addresses),
            (Family::Unspecified, Transport::Unspecified, None)
        );
    }
    if let Some(a) = h.addresses {
        assert_eq!(a.source.is_ipv4(), a.destination.is_ipv4());
        assert_eq!(
            h.family,
            if a.source.is_ipv4() {
                Family::Inet
            } else {
                Family::Inet6
            }
        );
        assert_ne!(h.transport, Transport::Unspecified);
    }
    match h.version {
        Version::V1 => {
            assert!(h.consumed <= V1_MAX_LEN);
            assert!(buf.starts_with(b"PROXY "));
            assert_eq!(&buf[h.consumed - 2..h.consumed], b"\r\n");
            assert!(h.tlvs.is_empty());
            if let Some(a) = h.addresses {
                let again = v1_line(a.source, a.destination);
                let back = decoded(&again, limits);
                assert_eq!(back.addresses, h.addresses);
                assert_eq!(back.consumed, again.len());
            }
        }
        Version::V2 => {
            assert!(buf.starts_with(&V2_SIGNATURE));
            let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            assert_eq!(h.consumed, V2_FIXED_LEN + len);
            assert!(h.consumed <= limits.max_v2_len);
            if let Some(a) = h.addresses {
                let again = v2_block(a.source, a.destination);
                let back = decoded(&again, Limits::default());
                assert_eq!(back.addresses, h.addresses);
                assert_eq!(back.consumed, again.len());
            }
        }
    }
}

fn decoded(buf: &[u8], limits: Limits) -> ProxyHeader {
    match decode_header(buf, limits) {
        Ok(Decoded::Header(h)) => h,
        other => panic!("a header written from decoded addresses decodes as {other:?}"),
    }
}

/// A version 1 line for two addresses of one family.
fn v1_line(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let protocol = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {protocol} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// A version 2 `PROXY` block over TCP for two addresses of one family, without TLVs.
fn v2_block(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut b = V2_SIGNATURE.to_vec();
    b.push(0x21);
    let mut block = Vec::new();
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            b.push(0x11);
            block.extend_from_slice(&s.ip().octets());
            block.extend_from_slice(&d.ip().octets());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            b.push(0x21);
            block.extend_from_slice(&s.ip().octets());
            block.extend_from_slice(&d.ip().octets());
        }
        _ => panic!("mixed families"),
    }
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&destination.port().to_be_bytes());
    b.extend_from_slice(&(block.len() as u16).to_be_bytes());
    b.extend_from_slice(&block);
    b
}

/// The prefix lengths to try: all of them for a short buffer; for a long one the first and
/// the last 256 (a version 2 header is walked whole on every call).
pub(crate) fn prefixes(len: usize) -> impl Iterator<Item = usize> {
    let head = len.min(256);
    (0..=head).chain(len.saturating_sub(256).max(head + 1)..=len)
}
