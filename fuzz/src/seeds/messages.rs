//! Seeds built with the codec's own encoder: STUN messages as clients and servers send
//! them, the RFC 5769 vectors, each attribute alone, ChannelData, and encoder inputs.

use std::net::SocketAddr;

use tern_wire::{
    attr, frame_data_indication, Class, MessageType, MessageWriter, Method, TransactionId,
    DATA_INDICATION_HEADROOM, DATA_INDICATION_TAILROOM,
};

use crate::input::Writer;

/// The key the signed seed messages use.
const KEY: &[u8] = b"seed-key";

fn tid(n: u8) -> TransactionId {
    TransactionId([n, 0x5E, 0xED, 1, 2, 3, 4, 5, 6, 7, 8, n])
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

/// A message of `method` and `class` whose attributes `body` writes.
fn message(method: Method, class: Class, n: u8, body: impl FnOnce(&mut MessageWriter)) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, MessageType::new(method, class), tid(n));
    body(&mut w);
    w.finish();
    buf
}

fn credentials(w: &mut MessageWriter) {
    w.attr(attr::USERNAME, b"1700003600:alice")
        .attr(attr::REALM, b"example.org")
        .attr(attr::NONCE, b"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA");
}

/// The four test vectors of RFC 5769 §2.1–§2.4.
const RFC5769: [(&str, &str); 4] = [
    (
        "rfc5769-request",
        "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74\
         002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836765920202000080014\
         9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf",
    ),
    (
        "rfc5769-ipv4-response",
        "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f722000200008\
         0001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96",
    ),
    (
        "rfc5769-ipv6-response",
        "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f722000200014\
         0002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275\
         bfe3ed4180280004c8fb0b4c",
    ),
    (
        "rfc5769-long-term",
        "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe3\
         82b900000015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b\
         6578616d706c652e6f72670000080014f67024656dd64a3e02b8e0712e85c9a28ca89666",
    ),
];

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ASCII"), 16).expect("hex"))
        .collect()
}

/// STUN messages as clients and servers send them, and the RFC 5769 vectors.
pub(super) fn stun_messages() -> Vec<(&'static str, Vec<u8>)> {
    use Class::{Error, Indication, Request, Success};
    let udp = |w: &mut MessageWriter| {
        w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
    };
    let peer4 = addr("93.184.216.34:5000");
    let peer6 = addr("[2606:4700:4700::1111]:53");
    let mut m = vec![
        (
            "binding-request",
            message(Method::BINDING, Request, 1, |_| {}),
        ),
        (
            "binding-request-fingerprint",
            message(Method::BINDING, Request, 2, |w| {
                w.fingerprint();
            }),
        ),
        (
            "binding-success",
            message(Method::BINDING, Success, 3, |w| {
                w.xor_address(attr::XOR_MAPPED_ADDRESS, addr("198.51.100.2:40000"))
                    .address(attr::MAPPED_ADDRESS, addr("198.51.100.2:40000"))
                    .attr(attr::SOFTWARE, b"tern")
                    .fingerprint();
            }),
        ),
        (
            "binding-success-ipv6",
            message(Method::BINDING, Success, 4, |w| {
                w.xor_address(attr::XOR_MAPPED_ADDRESS, addr("[2001:db8::2]:40000"))
                    .address(attr::RESPONSE_ORIGIN, addr("[2001:db8::1]:3478"));
            }),
        ),
        (
            "ice-binding",
            message(Method::BINDING, Request, 5, |w| {
                w.u32(attr::PRIORITY, 0x6e0001ff)
                    .attr(attr::USE_CANDIDATE, &[])
                    .attr(attr::ICE_CONTROLLING, &[1, 2, 3, 4, 5, 6, 7, 8])
                    .attr(attr::USERNAME, b"evtj:h6vY")
                    .message_integrity(b"VOkJxbRl1RmTxUk/WvJxBt")
                    .fingerprint();
            }),
        ),
        (
            "allocate-request",
            message(Method::ALLOCATE, Request, 6, udp),
        ),
        (
            "allocate-401",
            message(Method::ALLOCATE, Error, 6, |w| {
                w.error_code(401, "Unauthorized")
                    .attr(attr::REALM, b"example.org")
                    .attr(attr::NONCE, b"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA")
                    .attr(attr::PASSWORD_ALGORITHMS, &[0, 2, 0, 0, 0, 1, 0, 0])
                    .fingerprint();
            }),
        ),
        (
            "allocate-signed",
            message(Method::ALLOCATE, Request, 7, |w| {
                udp(w);
                w.u32(attr::LIFETIME, 900);
                credentials(w);
                w.message_integrity(KEY).fingerprint();
            }),
        ),
        (
            "allocate-signed-sha256",
            message(Method::ALLOCATE, Request, 8, |w| {
                udp(w);
                credentials(w);
                w.attr(attr::PASSWORD_ALGORITHM, &[0, 2, 0, 0]);
                w.message_integrity_sha256(KEY);
            }),
        ),
        (
            "allocate-signed-both",
            message(Method::ALLOCATE, Request, 9, |w| {
                udp(w);
                credentials(w);
                w.message_integrity(KEY)
                    .message_integrity_sha256(KEY)
                    .fingerprint();
            }),
        ),
        (
            "allocate-even-port",
            message(Method::ALLOCATE, Request, 10, |w| {
                udp(w);
                w.attr(attr::EVEN_PORT, &[0x80])
                    .attr(
                        attr::REQUESTED_ADDRESS_FAMILY,
                        &[attr::FAMILY_IPV4, 0, 0, 0],
                    )
                    .attr(attr::DONT_FRAGMENT, &[]);
                credentials(w);
                w.message_integrity(KEY);
            }),
        ),
        (
            "allocate-token",
            message(Method::ALLOCATE, Request, 11, |w| {
                udp(w);
                w.attr(attr::RESERVATION_TOKEN, &[1, 2, 3, 4, 5, 6, 7, 8])
                    .attr(
                        attr::ADDITIONAL_ADDRESS_FAMILY,
                        &[attr::FAMILY_IPV6, 0, 0, 0],
                    );
                credentials(w);
                w.message_integrity(KEY);
            }),
        ),
        (
            "allocate-success",
            message(Method::ALLOCATE, Success, 7, |w| {
                w.xor_address(attr::XOR_RELAYED_ADDRESS, addr("203.0.113.1:49152"))
                    .xor_address(attr::XOR_MAPPED_ADDRESS, addr("198.51.100.2:40000"))
                    .u32(attr::LIFETIME, 600)
                    .attr(attr::RESERVATION_TOKEN, &[8, 7, 6, 5, 4, 3, 2, 1])
                    .message_integrity(KEY)
                    .fingerprint();
            }),
        ),
        (
            "allocate-address-error",
            message(Method::ALLOCATE, Success, 12, |w| {
                w.xor_address(attr::XOR_RELAYED_ADDRESS, addr("[2001:db8::1]:49153"))
                    .attr(
                        attr::ADDRESS_ERROR_CODE,
                        &[attr::FAMILY_IPV4, 0, 4, 40, b'n', b'o'],
                    )
                    .message_integrity(KEY);
            }),
        ),
        (
            "refresh-zero",
            message(Method::REFRESH, Request, 13, |w| {
                w.u32(attr::LIFETIME, 0);
                credentials(w);
                w.message_integrity(KEY);
            }),
        ),
        (
            "create-permission",
            message(Method::CREATE_PERMISSION, Request, 14, |w| {
                w.xor_address(attr::XOR_PEER_ADDRESS, peer4)
                    .xor_address(attr::XOR_PEER_ADDRESS, peer6);
                credentials(w);
                w.message_integrity(KEY);
            }),
        ),
        (
            "channel-bind",
            message(Method::CHANNEL_BIND, Request, 15, |w| {
                w.attr(attr::CHANNEL_NUMBER, &[0x40, 0x01, 0, 0])
                    .xor_address(attr::XOR_PEER_ADDRESS, peer4);
                credentials(w);
                w.message_integrity(KEY).fingerprint();
            }),
        ),
        (
            "send-indication",
            message(Method::SEND, Indication, 16, |w| {
                w.xor_address(attr::XOR_PEER_ADDRESS, peer4)
                    .attr(attr::DATA, b"hello, peer");
            }),
        ),
        (
            "error-420",
            message(Method::ALLOCATE, Error, 17, |w| {
                w.error_code(420, "Unknown Attribute")
                    .unknown_attributes(&[0x0031, 0x7FFF])
                    .message_integrity(KEY);
            }),
        ),
        (
            "error-300",
            message(Method::ALLOCATE, Error, 18, |w| {
                w.error_code(300, "Try Alternate")
                    .address(attr::ALTERNATE_SERVER, addr("192.0.2.99:3478"));
            }),
        ),
        (
            "after-integrity",
            message(Method::REFRESH, Request, 19, |w| {
                credentials(w);
                w.message_integrity(KEY)
                    .attr(attr::SOFTWARE, b"ignored")
                    .fingerprint();
            }),
        ),
    ];
    // A Data indication, framed in place as the relay does.
    let payload = b"hello, client";
    let start = DATA_INDICATION_HEADROOM;
    let mut frame = vec![0; start + payload.len() + DATA_INDICATION_TAILROOM];
    frame[start..start + payload.len()].copy_from_slice(payload);
    let range = frame_data_indication(
        &mut frame,
        start..start + payload.len(),
        peer6,
        &tid(20),
        true,
    );
    m.push(("data-indication", frame[range].to_vec()));
    for (name, h) in RFC5769 {
        m.push((name, hex(h)));
    }
    m
}

/// Each attribute of the messages as an `attribute` input, one per type and length.
pub(super) fn attribute_values(messages: &[(&str, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (_, data) in messages {
        let msg = tern_wire::Message::parse(data).expect("a seed message parses");
        for a in msg.attributes() {
            if seen.contains(&(a.typ, a.value.len())) {
                continue;
            }
            seen.push((a.typ, a.value.len()));
            let mut v = a.typ.to_be_bytes().to_vec();
            v.extend_from_slice(&msg.transaction_id().0);
            v.extend_from_slice(a.value);
            out.push(v);
        }
    }
    out
}

fn channel_data_bytes(channel: u16, length: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = channel.to_be_bytes().to_vec();
    v.extend_from_slice(&length.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub(super) fn channel_data() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", channel_data_bytes(0x4000, 0, b"")),
        ("hello", channel_data_bytes(0x4001, 5, b"hello")),
        ("padded", channel_data_bytes(0x4001, 5, b"hello\0\0\0")),
        ("highest", channel_data_bytes(0x4FFF, 2, b"hi")),
        ("rfc5766", channel_data_bytes(0x7FFF, 2, b"hi")),
        ("overrun", channel_data_bytes(0x4002, 10, b"ab")),
    ]
}

pub(super) fn writer() -> Vec<(&'static str, Vec<u8>)> {
    let mut signed = Writer::default();
    signed.u16(0x0003).raw(&tid(21).0).u8(3);
    signed.u16(attr::REQUESTED_TRANSPORT).bytes(&[17, 0, 0, 0]);
    signed.u16(attr::USERNAME).bytes(b"alice");
    signed.u16(attr::SOFTWARE).bytes(b"odd");
    signed.u8(7).u16(138).bytes(b"Unauthorized");
    signed.u8(1).u16(5000).raw(&[
        0x26, 0x06, 0x47, 0, 0x47, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x11,
    ]);
    signed.bytes(b"payload").u8(1);
    let mut plain = Writer::default();
    plain
        .u16(0x0001)
        .raw(&tid(22).0)
        .u8(0)
        .u8(0)
        .u16(0)
        .bytes(b"");
    plain
        .u8(0)
        .u16(3478)
        .raw(&[198, 51, 100, 2])
        .bytes(b"")
        .u8(0);
    vec![("signed", signed.out), ("plain", plain.out)]
}
