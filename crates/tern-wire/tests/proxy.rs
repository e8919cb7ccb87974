//! PROXY protocol headers (HAProxy's proxy-protocol.txt, versions 1 and 2): however the
//! first bytes of a connection are cut into reads, a valid header decodes the same once it is
//! complete and never earlier; arbitrary and corrupted input never panics; and every rule
//! refuses its crafted header as soon as the bytes that decide it are in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use tern_wire::proxy::{
    decode_header, Addresses, Command, Decoded, Family, Limits, ProxyError, ProxyHeader, Transport,
    Version, V1_MAX_LEN, V1_MIN_LEN, V2_SIGNATURE,
};

fn decode(buf: &[u8]) -> Result<Decoded, ProxyError> {
    decode_header(buf, Limits::default())
}

fn header(buf: &[u8]) -> ProxyHeader {
    match decode(buf) {
        Ok(Decoded::Header(h)) => h,
        other => panic!("expected a header from {buf:?}, got {other:?}"),
    }
}

/// A version 2 header: the signature, `ver_cmd`, `fam`, and `block` with its length.
fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[ver_cmd, fam]);
    out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    out.extend_from_slice(block);
    out
}

/// Asserts that `bytes` is refused with `error`, and that every shorter prefix is not.
fn refused_exactly_at(bytes: &[u8], error: ProxyError) {
    assert_eq!(decode(bytes), Err(error), "{bytes:?}");
    let shorter = &bytes[..bytes.len() - 1];
    assert!(
        matches!(decode(shorter), Ok(Decoded::NeedMore { .. })),
        "{error:?} decided before its last byte: {shorter:?} gives {:?}",
        decode(shorter)
    );
}

// ---- generated valid headers -------------------------------------------------------------

/// A valid header's bytes and what decoding them must give.
#[derive(Debug, Clone)]
struct Valid {
    bytes: Vec<u8>,
    expected: ProxyHeader,
}

fn expect(
    version: Version,
    command: Command,
    family: Family,
    transport: Transport,
    addresses: Option<Addresses>,
    consumed: usize,
    tlvs: std::ops::Range<usize>,
) -> ProxyHeader {
    ProxyHeader {
        version,
        command,
        family,
        transport,
        addresses,
        consumed,
        tlvs,
    }
}

fn v1_tcp() -> impl Strategy<Value = Valid> {
    let ip4 = any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b)));
    let ip6 = any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b)));
    prop_oneof![(ip4.clone(), ip4), (ip6.clone(), ip6)]
        .prop_flat_map(|ips| (Just(ips), any::<u16>(), any::<u16>()))
        .prop_map(|((s, d), sp, dp)| {
            let (proto, family) = match s {
                IpAddr::V4(_) => ("TCP4", Family::Inet),
                IpAddr::V6(_) => ("TCP6", Family::Inet6),
            };
            let bytes = format!("PROXY {proto} {s} {d} {sp} {dp}\r\n").into_bytes();
            let addresses = Addresses {
                source: SocketAddr::new(s, sp),
                destination: SocketAddr::new(d, dp),
            };
            let n = bytes.len();
            let expected = expect(
                Version::V1,
                Command::Proxy,
                family,
                Transport::Stream,
                Some(addresses),
                n,
                0..0,
            );
            Valid { bytes, expected }
        })
}

fn v1_unknown() -> impl Strategy<Value = Valid> {
    // Whatever follows UNKNOWN before the CRLF is ignored; the line ends by byte 107.
    let rest = prop::collection::vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..=V1_MAX_LEN - 16,
    );
    rest.prop_map(|rest| {
        let mut bytes = b"PROXY UNKNOWN".to_vec();
        if !rest.is_empty() {
            bytes.push(b' ');
            bytes.extend_from_slice(&rest);
        }
        bytes.extend_from_slice(b"\r\n");
        let n = bytes.len();
        let expected = expect(
            Version::V1,
            Command::Proxy,
            Family::Unspecified,
            Transport::Unspecified,
            None,
            n,
            0..0,
        );
        Valid { bytes, expected }
    })
}

fn tlvs() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..40)),
        0..4,
    )
    .prop_map(|list| {
        let mut out = Vec::new();
        for (typ, value) in list {
            out.push(typ);
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
            out.extend_from_slice(&value);
        }
        out
    })
}

fn v2_proxy() -> impl Strategy<Value = Valid> {
    (
        0u8..=3,
        0u8..=2,
        any::<[u8; 36]>(),
        prop::collection::vec(any::<u8>(), 216..=216),
        tlvs(),
    )
        .prop_map(|(fam, proto, ip, unix, tlvs)| {
            let (family, block_len) = match fam {
                0 => (Family::Unspecified, 0),
                1 => (Family::Inet, 12),
                2 => (Family::Inet6, 36),
                _ => (Family::Unix, 216),
            };
            let transport = [
                Transport::Unspecified,
                Transport::Stream,
                Transport::Datagram,
            ][usize::from(proto)];
            let mut block = match family {
                Family::Unix => unix,
                _ => ip[..block_len].to_vec(),
            };
            let start = 16 + block.len();
            block.extend_from_slice(&tlvs);
            let bytes = v2(0x21, fam << 4 | proto, &block);
            let port = |at: usize| u16::from_be_bytes([ip[at], ip[at + 1]]);
            let addresses = match (family, transport) {
                (_, Transport::Unspecified) => None,
                (Family::Inet, _) => Some(Addresses {
                    source: SocketAddr::new(
                        IpAddr::from(<[u8; 4]>::try_from(&ip[0..4]).unwrap()),
                        port(8),
                    ),
                    destination: SocketAddr::new(
                        IpAddr::from(<[u8; 4]>::try_from(&ip[4..8]).unwrap()),
                        port(10),
                    ),
                }),
                (Family::Inet6, _) => Some(Addresses {
                    source: SocketAddr::new(
                        IpAddr::from(<[u8; 16]>::try_from(&ip[0..16]).unwrap()),
                        port(32),
                    ),
                    destination: SocketAddr::new(
                        IpAddr::from(<[u8; 16]>::try_from(&ip[16..32]).unwrap()),
                        port(34),
                    ),
                }),
                _ => None,
            };
            let n = bytes.len();
            let tlvs = if family == Family::Unspecified {
                n..n
            } else {
                start..n
            };
            let expected = expect(
                Version::V2,
                Command::Proxy,
                family,
                transport,
                addresses,
                n,
                tlvs,
            );
            Valid { bytes, expected }
        })
}

fn v2_local() -> impl Strategy<Value = Valid> {
    // LOCAL: the family byte and the block are ignored, whatever they hold.
    (any::<u8>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(fam, block)| {
        let bytes = v2(0x20, fam, &block);
        let n = bytes.len();
        let expected = expect(
            Version::V2,
            Command::Local,
            Family::Unspecified,
            Transport::Unspecified,
            None,
            n,
            n..n,
        );
        Valid { bytes, expected }
    })
}

fn valid() -> impl Strategy<Value = Valid> {
    prop_oneof![v1_tcp(), v1_unknown(), v2_proxy(), v2_local()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every prefix shorter than the header needs more (and says a number of bytes that does
    /// not overshoot the header); every prefix that holds it decodes to the same header,
    /// whatever follows it.
    #[test]
    fn any_split_decodes_the_same_once_complete(
        valid in valid(),
        after in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let n = valid.bytes.len();
        let mut conn = valid.bytes.clone();
        conn.extend_from_slice(&after);
        for k in 0..n {
            match decode(&conn[..k]) {
                Ok(Decoded::NeedMore { missing }) => {
                    prop_assert!(missing >= 1);
                    prop_assert!(k + missing <= n, "prefix {} says {} missing of {}", k, missing, n);
                }
                other => prop_assert!(false, "prefix of {} bytes of {}: {:?}", k, n, other),
            }
        }
        for k in n..=conn.len() {
            prop_assert_eq!(decode(&conn[..k]), Ok(Decoded::Header(valid.expected.clone())));
        }
    }

    /// Arbitrary bytes, and arbitrary bytes after each start, never panic, and a header never
    /// claims more than the buffer holds.
    #[test]
    fn garbage_never_panics(
        start in prop_oneof![Just(Vec::new()), Just(b"PROXY ".to_vec()), Just(V2_SIGNATURE.to_vec()),
                             Just([&V2_SIGNATURE[..], &[0x21]].concat()), Just([&V2_SIGNATURE[..], &[0x21, 0x11]].concat())],
        rest in prop::collection::vec(any::<u8>(), 0..300),
        max_v2_len in prop_oneof![Just(Limits::default().max_v2_len), 0usize..300],
    ) {
        let buf = [start, rest].concat();
        if let Ok(Decoded::Header(h)) = decode_header(&buf, Limits { max_v2_len }) {
            prop_assert!(h.consumed <= buf.len());
            prop_assert!(h.tlvs.start <= h.tlvs.end && h.tlvs.end <= h.consumed);
        }
    }

    /// A valid header with one byte changed never panics either.
    #[test]
    fn corrupted_headers_never_panic(valid in valid(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut buf = valid.bytes.clone();
        let at = at.index(buf.len());
        buf[at] = byte;
        if let Ok(Decoded::Header(h)) = decode(&buf) {
            prop_assert!(h.consumed <= buf.len());
        }
    }
}

// ---- the header kinds the specification lists ---------------------------------------------

#[test]
fn v1_lines_from_the_specification() {
    let h = header(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n");
    let a = h.addresses.unwrap();
    assert_eq!(a.source, "192.168.0.1:56324".parse().unwrap());
    assert_eq!(a.destination, "192.168.0.11:443".parse().unwrap());
    assert_eq!(
        (h.family, h.transport, h.consumed),
        (Family::Inet, Transport::Stream, 47)
    );

    let longest_tcp6 = format!("PROXY TCP6 {0} {0} 65535 65535\r\n", ["ffff"; 8].join(":"));
    assert_eq!(longest_tcp6.len(), 104);
    assert_eq!(header(longest_tcp6.as_bytes()).consumed, 104);

    let h = header(b"PROXY UNKNOWN\r\n");
    assert_eq!(
        (h.family, h.addresses, h.consumed),
        (Family::Unspecified, None, V1_MIN_LEN)
    );
    let worst = format!(
        "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
        ["ffff"; 8].join(":")
    );
    assert_eq!(worst.len(), V1_MAX_LEN);
    assert_eq!(header(worst.as_bytes()).consumed, V1_MAX_LEN);
}

#[test]
fn v2_families_and_commands() {
    let inet = [192, 0, 2, 7, 198, 51, 100, 1, 0xC3, 0x50, 0x0D, 0x96];
    let h = header(&v2(0x21, 0x12, &inet));
    assert_eq!(h.transport, Transport::Datagram);
    let a = h.addresses.unwrap();
    assert_eq!(a.source, "192.0.2.7:50000".parse().unwrap());
    assert_eq!(a.destination, "198.51.100.1:3478".parse().unwrap());

    // INET with an UNSPEC transport: the addresses are to be ignored.
    assert_eq!(header(&v2(0x21, 0x10, &inet)).addresses, None);
    // AF_UNSPEC with PROXY: no addresses; any block is skipped.
    let h = header(&v2(0x21, 0x00, &[1, 2, 3]));
    assert_eq!(
        (h.family, h.addresses, h.consumed),
        (Family::Unspecified, None, 19)
    );
    // AF_UNIX: paths, not IP addresses.
    let h = header(&v2(0x21, 0x31, &[0; 216]));
    assert_eq!(
        (h.family, h.transport, h.addresses),
        (Family::Unix, Transport::Stream, None)
    );
    // LOCAL with an unassigned family and a non-empty block: accepted, block ignored.
    let h = header(&v2(0x20, 0xFF, &[9; 12]));
    assert_eq!(
        (h.command, h.family, h.addresses, h.consumed),
        (Command::Local, Family::Unspecified, None, 28)
    );
}

#[test]
fn v2_tlvs_are_located_and_checked() {
    let mut block = vec![0u8; 36];
    block.extend_from_slice(&[0x02, 0x00, 0x09]);
    block.extend_from_slice(b"turn.test");
    block.extend_from_slice(&[0x04, 0x00, 0x00]); // an empty NOOP
    let buf = v2(0x21, 0x21, &block);
    let h = header(&buf);
    assert_eq!(h.tlvs, 52..buf.len());
    assert_eq!(&buf[h.tlvs.start + 3..h.tlvs.start + 12], b"turn.test");
}

// ---- each error, decided by its last byte --------------------------------------------------

#[test]
fn not_proxy() {
    for start in [
        &b"G"[..],
        b"\x16",
        b"\x00",
        b"\x01",
        b"PROXZ",
        b"PROXY\r",
        b"p",
    ] {
        refused_exactly_at(start, ProxyError::NotProxy);
    }
    let mut sig = V2_SIGNATURE.to_vec();
    sig[11] = 0x0B;
    refused_exactly_at(&sig, ProxyError::NotProxy);
    assert_eq!(
        decode(b""),
        Ok(Decoded::NeedMore {
            missing: V1_MIN_LEN
        })
    );
}

#[test]
fn v1_too_long() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX_LEN, b'a');
    refused_exactly_at(&line, ProxyError::V1TooLong);
    // A CR as the 107th byte leaves no room for the LF.
    line[V1_MAX_LEN - 1] = b'\r';
    refused_exactly_at(&line, ProxyError::V1TooLong);
}

#[test]
fn v1_bad_line_end() {
    refused_exactly_at(
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n",
        ProxyError::V1BadLineEnd,
    );
    refused_exactly_at(b"PROXY UNKNOWN\rX", ProxyError::V1BadLineEnd);
    refused_exactly_at(b"PROXY UNKNOWN\r\r", ProxyError::V1BadLineEnd);
}

#[test]
fn v1_bad_protocol() {
    for line in [
        &b"PROXY TCP5 192.0.2.1 192.0.2.2 1 2\r\n"[..],
        b"PROXY tcp4 192.0.2.1 192.0.2.2 1 2\r\n",
        b"PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY \r\n",
    ] {
        refused_exactly_at(line, ProxyError::V1BadProtocol);
    }
}

#[test]
fn v1_bad_syntax() {
    for line in [
        &b"PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n"[..],
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2 \r\n",
        b"PROXY TCP4\r\n",
        b"PROXY TCP6 ::1\t::1 1 2\r\n",
    ] {
        refused_exactly_at(line, ProxyError::V1BadSyntax);
    }
}

#[test]
fn v1_bad_address() {
    for line in [
        &b"PROXY TCP4 ::1 192.0.2.2 1 2\r\n"[..],
        b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n",
        b"PROXY TCP4 192.0.2.01 192.0.2.2 1 2\r\n",
        b"PROXY TCP4 256.0.2.1 192.0.2.2 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2 1 2\r\n",
        b"PROXY TCP6 ::1 1:2:3:4:5:6:7:8:9 1 2\r\n",
    ] {
        refused_exactly_at(line, ProxyError::V1BadAddress);
    }
}

#[test]
fn v1_bad_port() {
    for line in [
        &b"PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n"[..],
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1 080\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.2 +1 2\r\n",
        b"PROXY TCP6 ::1 ::2 1 x\r\n",
    ] {
        refused_exactly_at(line, ProxyError::V1BadPort);
    }
}

#[test]
fn v2_bad_version_command_family() {
    let sig = V2_SIGNATURE.to_vec();
    refused_exactly_at(&[&sig[..], &[0x11]].concat(), ProxyError::V2BadVersion);
    refused_exactly_at(&[&sig[..], &[0x31]].concat(), ProxyError::V2BadVersion);
    refused_exactly_at(&[&sig[..], &[0x22]].concat(), ProxyError::V2BadCommand);
    refused_exactly_at(&[&sig[..], &[0x2F]].concat(), ProxyError::V2BadCommand);
    refused_exactly_at(&[&sig[..], &[0x21, 0x41]].concat(), ProxyError::V2BadFamily);
    refused_exactly_at(&[&sig[..], &[0x21, 0x13]].concat(), ProxyError::V2BadFamily);
}

#[test]
fn v2_too_long() {
    // Refused on the 16 fixed bytes, before any of the 65,535 announced.
    refused_exactly_at(
        &v2(0x21, 0x11, &vec![0; 65_535])[..16],
        ProxyError::V2TooLong,
    );
    let tight = Limits { max_v2_len: 28 };
    let inet = v2(0x21, 0x11, &[0; 12]);
    assert!(matches!(
        decode_header(&inet, tight),
        Ok(Decoded::Header(_))
    ));
    let over = v2(0x21, 0x11, &[0; 13]);
    assert_eq!(
        decode_header(&over[..16], tight),
        Err(ProxyError::V2TooLong)
    );
    // The limit holds for LOCAL too.
    assert_eq!(
        decode_header(&v2(0x20, 0x00, &[0; 13])[..16], tight),
        Err(ProxyError::V2TooLong)
    );
}

#[test]
fn v2_short_addresses() {
    for (fam, len) in [(0x11, 11), (0x12, 0), (0x21, 35), (0x31, 215)] {
        let buf = v2(0x21, fam, &vec![0; len]);
        refused_exactly_at(&buf[..16], ProxyError::V2ShortAddresses);
    }
}

#[test]
fn v2_bad_tlv() {
    let addrs = [0u8; 12];
    // Two bytes where a TLV's three-byte head should be.
    let buf = v2(0x21, 0x11, &[&addrs[..], &[0x04, 0x00]].concat());
    refused_exactly_at(&buf, ProxyError::V2BadTlv);
    // A value announced as 5 bytes with 4 inside the header.
    let buf = v2(
        0x21,
        0x11,
        &[&addrs[..], &[0x04, 0x00, 0x05, 1, 2, 3, 4]].concat(),
    );
    refused_exactly_at(&buf, ProxyError::V2BadTlv);
    // The header's own length decides, not the bytes after it.
    let mut buf = v2(0x21, 0x11, &[&addrs[..], &[0x04, 0x00, 0x01]].concat());
    buf.push(0xAA);
    assert_eq!(decode(&buf), Err(ProxyError::V2BadTlv));
}
