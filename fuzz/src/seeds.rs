//! The seed corpus: what each target starts from before libFuzzer mutates it.
//!
//! Two kinds of seed live in `seeds/<target>/`:
//! - `rec-*`: datagrams recorded from coturn's `turnutils_uclient` and `turnutils_stunclient`
//!   talking to tern (`tools/record.sh`), committed as they came;
//! - `gen-*`: what [`generate`] writes, built with the codec's own encoder as clients and
//!   servers send them, the four RFC 5769 test vectors, PROXY headers, configuration files,
//!   and scripts for the core target, some of them wrapping the recorded datagrams;
//! - `crash-*`: inputs on which a target found a bug, kept once the bug was fixed (each
//!   also has a regression test in the crate where the bug was).
//!
//! `examples/seeds.rs` writes the `gen-*` files; the main workspace's corpus test replays
//! every seed and fails if the committed `gen-*` files differ from what [`generate`] gives.

use std::net::SocketAddr;

use tern_wire::stream::write_channel_data;
use tern_wire::{
    attr, frame_data_indication, ChannelNumber, Class, MessageType, MessageWriter, Method,
    TransactionId, DATA_INDICATION_HEADROOM, DATA_INDICATION_TAILROOM,
};

use crate::core::ops::{Attr, Op, Request};
use crate::core::Config;
use crate::input::Writer;

/// One seed file: `seeds/<target>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// The target's name.
    pub target: &'static str,
    /// The file name (`gen-...`).
    pub name: String,
    /// The input.
    pub data: Vec<u8>,
}

/// A recorded seed the generator builds on: its target directory, file name and bytes.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `stun_message` or `channel_data`.
    pub target: String,
    /// The file name (`rec-...`).
    pub name: String,
    /// The datagram.
    pub data: Vec<u8>,
}

/// Every generated seed, given the recorded ones (in file name order).
pub fn generate(recorded: &[Recorded]) -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut add = |target, name: &str, data: Vec<u8>| {
        seeds.push(Seed {
            target,
            name: format!("gen-{name}"),
            data,
        })
    };
    let messages = stun_messages();
    for (name, data) in &messages {
        add("stun_message", name, data.clone());
    }
    for (i, data) in attribute_values(&messages).into_iter().enumerate() {
        add("attribute", &format!("{i:02}"), data);
    }
    for (name, data) in channel_data() {
        add("channel_data", name, data);
    }
    for (name, data) in writer() {
        add("writer", name, data);
    }
    for (name, data) in stream(&messages, recorded) {
        add("stream", name, data);
    }
    for (name, data) in proxy() {
        add("proxy", name, data);
    }
    for (name, data) in conf() {
        add("conf", name, data);
    }
    for (name, data) in core(recorded) {
        add("core", &name, data);
    }
    seeds
}

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
fn stun_messages() -> Vec<(&'static str, Vec<u8>)> {
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
fn attribute_values(messages: &[(&str, Vec<u8>)]) -> Vec<Vec<u8>> {
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

fn channel_data() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", channel_data_bytes(0x4000, 0, b"")),
        ("hello", channel_data_bytes(0x4001, 5, b"hello")),
        ("padded", channel_data_bytes(0x4001, 5, b"hello\0\0\0")),
        ("highest", channel_data_bytes(0x4FFF, 2, b"hi")),
        ("rfc5766", channel_data_bytes(0x7FFF, 2, b"hi")),
        ("overrun", channel_data_bytes(0x4002, 10, b"ab")),
    ]
}

fn writer() -> Vec<(&'static str, Vec<u8>)> {
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

/// A stream: the options byte, then messages back to back, ChannelData padded.
fn stream(messages: &[(&str, Vec<u8>)], recorded: &[Recorded]) -> Vec<(&'static str, Vec<u8>)> {
    let stun = |name: &str| {
        messages
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a seed message")
            .1
            .clone()
    };
    let mut session = vec![5u8];
    session.extend_from_slice(&stun("allocate-signed"));
    write_channel_data(ChannelNumber::new(0x4001).unwrap(), b"hello", &mut session);
    session.extend_from_slice(&stun("channel-bind"));
    write_channel_data(ChannelNumber::new(0x4FFF).unwrap(), b"", &mut session);
    let mut partial = vec![5u8];
    partial.extend_from_slice(&stun("binding-request"));
    partial.extend_from_slice(&stun("allocate-request")[..10]);
    let mut rfc5766 = vec![5u8 | 8];
    write_channel_data(
        ChannelNumber::new_rfc5766(0x7000).unwrap(),
        b"abc",
        &mut rfc5766,
    );
    rfc5766.extend_from_slice(&stun("send-indication"));
    // What turnutils_uclient sent, framed for a stream.
    let mut uclient = vec![5u8 | 8];
    for r in recorded.iter().filter(|r| r.name.contains("-c-")) {
        match r.target.as_str() {
            "channel_data" => {
                let cd = tern_wire::ChannelData::parse_rfc5766(&r.data).expect("recorded");
                write_channel_data(cd.channel, cd.payload, &mut uclient);
            }
            _ => uclient.extend_from_slice(&r.data),
        }
    }
    vec![
        ("session", session),
        ("partial", partial),
        ("rfc5766", rfc5766),
        ("uclient", uclient),
    ]
}

fn proxy() -> Vec<(&'static str, Vec<u8>)> {
    let limit = 4096u16.to_be_bytes();
    let with = |header: &[u8]| {
        let mut v = limit.to_vec();
        v.extend_from_slice(header);
        v.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]); // a STUN message starts here
        v
    };
    let v2 = |command: u8, family: u8, block: &[u8]| {
        let mut h = tern_wire::proxy::V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        with(&h)
    };
    let mut inet = vec![203, 0, 113, 7, 192, 0, 2, 1, 0xC7, 0x38, 0x0D, 0x96];
    inet.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']); // PP2_TYPE_ALPN "h2"
    let mut inet6 = [0x20, 0x01, 0x0d, 0xb8].repeat(4);
    inet6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8].repeat(4));
    inet6.extend_from_slice(&[0xC7, 0x38, 0x0D, 0x96]);
    vec![
        (
            "v1-tcp4",
            with(b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 3478\r\n"),
        ),
        (
            "v1-tcp6",
            with(b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 3478\r\n"),
        ),
        ("v1-unknown", with(b"PROXY UNKNOWN\r\n")),
        ("v2-inet", v2(1, 0x11, &inet)),
        ("v2-inet6-udp", v2(1, 0x22, &inet6)),
        ("v2-unix", v2(1, 0x31, &[b'/'; 216])),
        ("v2-local", v2(0, 0x00, &[])),
    ]
}

fn conf() -> Vec<(&'static str, Vec<u8>)> {
    let every_key = "\
# Most keys tern reads, once each.
listening-ip=192.0.2.1
listening-ip=2001:db8::1
listening-port=3478
alt-listening-port=3479
relay-ip=192.0.2.1
external-ip=203.0.113.1/192.0.2.1
min-port=49152
max-port=49252
realm = \"example.org\"
use-auth-secret
static-auth-secret=n0rthSecret2024
lt-cred-mech
user=carol:Carol9Password
user=dave:0x0123456789abcdef0123456789abcdef
fingerprint
stale-nonce=600
max-allocate-lifetime=3600
channel-lifetime=600
permission-lifetime=300
user-quota=10
total-quota=100
max-bps=1000000
allowed-peer-ip=10.0.0.5
denied-peer-ip=10.0.0.0-10.255.255.255
denied-peer-ip=192.168.0.0/16
no-multicast-peers
rfc5766-channel-numbers
relay-threads=2
udp-recv-buffer=4194304
no-batched-io
verbose
log-format=json
admin-listen=127.0.0.1:9641
drain-timeout=30
alternate-server=192.0.2.99:3478
tls-listening-port=5349
cert=/etc/tern/tls.crt
pkey=/etc/tern/tls.key
cipher-list=ECDHE-RSA-AES128-GCM-SHA256
tcp-proxy-port=3480
tls-handshake-timeout=10
tcp-idle-timeout=300
max-connections=1000
max-connections-per-ip=16
no-cli
mobility # a coturn key tern ignores
";
    vec![
        ("every-key", every_key.as_bytes().to_vec()),
        (
            "k8s",
            include_bytes!("../../k8s/base/turnserver.conf").to_vec(),
        ),
        (
            "coturn-k8s",
            include_bytes!("../../crates/tern/tests/fixtures/coturn-k8s.conf").to_vec(),
        ),
        (
            "syntax-error",
            b"fingerprint\nstatic-auth-secret s3cret\n".to_vec(),
        ),
        ("bad-value", b"min-port=70000\nrealm=x\r\n".to_vec()),
    ]
}

/// Scripts for the core target.
fn core(recorded: &[Recorded]) -> Vec<(String, Vec<u8>)> {
    use Method as M;
    let script = |flags: u8, more: u8, ops: &[Op]| {
        let mut w = Writer::default();
        Config { flags, more }.write(&mut w);
        for op in ops {
            op.write(&mut w);
        }
        w.out
    };
    // Requests: unsigned (the challenge that brings a nonce) and signed with credential
    // `cred`'s key and the nonce held.
    let ask = |client: u8, method: Method, attrs: Vec<Attr>| {
        Op::Request(Request {
            client,
            method: method.0,
            class: 0,
            same_tid: false,
            attrs,
            auth: 0,
            cred: 0,
            key: 0,
            nonce: 1,
            raw_nonce: Vec::new(),
        })
    };
    let signed = |client: u8, cred: u8, method: Method, attrs: Vec<Attr>| {
        Op::Request(Request {
            client,
            method: method.0,
            class: 0,
            same_tid: false,
            attrs,
            auth: 1,
            cred,
            key: 0,
            nonce: 0,
            raw_nonce: Vec::new(),
        })
    };
    let with = |op: Op, f: &dyn Fn(&mut Request)| match op {
        Op::Request(mut r) => {
            f(&mut r);
            Op::Request(r)
        }
        other => other,
    };
    let udp = || Attr::Transport(attr::TRANSPORT_UDP);
    let allocate = |client: u8, cred: u8| {
        vec![
            ask(client, M::ALLOCATE, vec![udp()]),
            signed(client, cred, M::ALLOCATE, vec![udp()]),
        ]
    };
    let cd = |client: u8, channel: u16, payload: &[u8]| Op::ChannelData {
        client,
        channel,
        declared: None,
        payload: payload.to_vec(),
        padding: 0,
    };
    let peer = |port: u8, peer: u8, payload: &[u8]| Op::Peer {
        port,
        peer,
        flags: 0,
        payload: payload.to_vec(),
    };
    let send = |client: u8, peer: u8| {
        with(
            ask(
                client,
                M::SEND,
                vec![Attr::Peer(peer), Attr::Data(b"hi".to_vec())],
            ),
            &|r| r.class = 1,
        )
    };
    let mut scripts = Vec::new();

    let mut session = allocate(0, 0);
    session.extend([
        signed(
            0,
            0,
            M::CREATE_PERMISSION,
            vec![Attr::Peer(0), Attr::Peer(4)],
        ),
        signed(0, 0, M::CREATE_PERMISSION, vec![Attr::Peer(0)]),
        signed(
            0,
            0,
            M::CHANNEL_BIND,
            vec![Attr::Channel(0x4001), Attr::Peer(0)],
        ),
        cd(0, 0x4001, b"hello"),
        peer(0, 0, b"world"),
        peer(1, 0, b"world"),
        send(0, 0),
        peer(0, 3, b"mapped"),
        Op::Advance { secs: 301 },
        send(0, 0),
        signed(0, 0, M::REFRESH, vec![Attr::Lifetime(0)]),
    ]);
    scripts.push(("session".to_owned(), script(0, 1, &session)));

    // After a while the nonce is stale: the first try brings a fresh one (438).
    let twice = |op: Op| [op.clone(), op];
    // Alice's REST username expires an hour in: a refresh before works, one after does not.
    let mut expiry = vec![
        ask(1, M::ALLOCATE, vec![udp()]),
        signed(1, 0, M::ALLOCATE, vec![udp(), Attr::Lifetime(3600)]),
    ];
    expiry.push(Op::Advance { secs: 1800 });
    expiry.extend(twice(signed(1, 0, M::REFRESH, vec![Attr::Lifetime(3600)])));
    expiry.push(Op::Advance { secs: 1900 });
    expiry.extend(twice(signed(1, 0, M::REFRESH, vec![])));
    expiry.push(ask(0, M::ALLOCATE, vec![udp()]));
    expiry.push(signed(0, 6, M::ALLOCATE, vec![udp()]));
    scripts.push(("rest-expiry".to_owned(), script(0, 1, &expiry)));

    let reservation = vec![
        ask(0, M::ALLOCATE, vec![udp()]),
        signed(0, 2, M::ALLOCATE, vec![udp(), Attr::EvenPort(0x80)]),
        ask(1, M::ALLOCATE, vec![udp()]),
        signed(1, 3, M::ALLOCATE, vec![udp(), Attr::Token(0)]),
        ask(5, M::ALLOCATE, vec![udp()]),
        signed(
            5,
            3,
            M::ALLOCATE,
            vec![udp(), Attr::EvenPort(0x80), Attr::Token(0)],
        ),
        signed(5, 3, M::ALLOCATE, vec![udp(), Attr::EvenPort(0)]),
        Op::Advance { secs: 40 },
    ];
    scripts.push(("reservation".to_owned(), script(0, 0, &reservation)));

    let mut streams = allocate(3, 2);
    streams.extend(allocate(4, 3));
    streams.extend([
        signed(
            3,
            2,
            M::CHANNEL_BIND,
            vec![Attr::Channel(0x4000), Attr::Peer(1)],
        ),
        peer(3, 1, b"to a stream"),
        Op::Close { client: 3 },
        peer(3, 1, b"closed"),
        Op::Close { client: 4 },
    ]);
    scripts.push(("streams".to_owned(), script(0x01, 1, &streams)));

    let mut quota = Vec::new();
    for (client, cred) in [(0, 0), (1, 2), (2, 3), (3, 4), (4, 2), (5, 2)] {
        quota.extend(allocate(client, cred));
    }
    scripts.push(("quota".to_owned(), script(0x60, 0, &quota)));

    // Each allocation holds two ports (EVEN-PORT with R): the pool runs out.
    let mut exhaust = Vec::new();
    for client in 0..6 {
        exhaust.push(ask(client, M::ALLOCATE, vec![udp()]));
        exhaust.push(signed(
            client,
            2,
            M::ALLOCATE,
            vec![udp(), Attr::EvenPort(0x80)],
        ));
    }
    exhaust.push(Op::Advance { secs: 31 });
    exhaust.push(signed(0, 2, M::REFRESH, vec![Attr::Lifetime(0)]));
    exhaust.push(signed(5, 2, M::ALLOCATE, vec![udp()]));
    scripts.push(("exhaust".to_owned(), script(0, 1, &exhaust)));

    let mut drain = allocate(0, 2);
    drain.extend([
        Op::Drain { alternate: true },
        ask(1, M::ALLOCATE, vec![udp()]),
        signed(1, 3, M::ALLOCATE, vec![udp()]),
        Op::Reload { set: 3 },
        signed(0, 2, M::REFRESH, vec![]),
        Op::Reload { set: 1 },
        signed(0, 2, M::REFRESH, vec![Attr::Lifetime(0)]),
    ]);
    scripts.push(("drain-reload".to_owned(), script(0, 0, &drain)));

    let mut refused = allocate(0, 2);
    for p in 4..22 {
        refused.push(signed(0, 2, M::CREATE_PERMISSION, vec![Attr::Peer(p)]));
        refused.push(peer(0, p, b"refused?"));
    }
    refused.extend([
        signed(
            0,
            2,
            M::CHANNEL_BIND,
            vec![Attr::Channel(0x4002), Attr::Peer(20)],
        ),
        signed(
            0,
            2,
            M::CHANNEL_BIND,
            vec![Attr::Channel(0x4003), Attr::Peer(21)],
        ),
        send(0, 21),
        send(0, 20),
        signed(
            0,
            2,
            M::CREATE_PERMISSION,
            vec![Attr::Address {
                v6: false,
                port: 1,
                ip: [127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            }],
        ),
    ]);
    scripts.push(("refused-peers".to_owned(), script(0, 0, &refused)));

    let mut v6 = allocate(2, 3);
    v6.extend([
        signed(
            2,
            3,
            M::CREATE_PERMISSION,
            vec![Attr::Peer(2), Attr::Peer(0)],
        ),
        signed(2, 3, M::CREATE_PERMISSION, vec![Attr::Peer(2)]),
        peer(2, 2, b"over IPv6"),
        send(2, 2),
    ]);
    scripts.push(("ipv6-relay".to_owned(), script(0x19, 0, &v6)));

    // Client 0 allocates with MESSAGE-INTEGRITY-SHA256 alone and retransmits; client 1 tries
    // a forged key, another user's key, no USERNAME, a corrupt FINGERPRINT, another
    // client's nonce and a username with no expiry.
    let forged = vec![
        ask(0, M::ALLOCATE, vec![udp()]),
        with(signed(0, 2, M::ALLOCATE, vec![udp()]), &|r| r.auth = 2),
        with(signed(0, 2, M::ALLOCATE, vec![udp()]), &|r| {
            r.auth = 2;
            r.same_tid = true
        }),
        signed(0, 2, M::ALLOCATE, vec![udp()]),
        ask(1, M::ALLOCATE, vec![udp()]),
        signed(1, 5, M::ALLOCATE, vec![udp()]),
        with(signed(1, 2, M::ALLOCATE, vec![udp()]), &|r| r.key = 5),
        with(signed(1, 2, M::ALLOCATE, vec![udp()]), &|r| r.auth = 1 | 4),
        with(signed(1, 2, M::ALLOCATE, vec![udp()]), &|r| {
            r.auth = 1 | 0x40
        }),
        with(signed(1, 2, M::ALLOCATE, vec![udp()]), &|r| r.nonce = 2),
        signed(1, 7, M::ALLOCATE, vec![udp()]),
        signed(1, 7, M::REFRESH, vec![]),
    ];
    scripts.push(("forged".to_owned(), script(0, 0, &forged)));

    let mut wall = vec![Op::Wall { delta: -600 }];
    wall.extend(allocate(0, 0));
    wall.push(Op::Wall { delta: 32_000 });
    wall.extend(twice(signed(0, 0, M::REFRESH, vec![])));
    scripts.push(("wall-clock".to_owned(), script(0, 0, &wall)));

    let mut rfc5766 = allocate(1, 2);
    rfc5766.extend([
        signed(
            1,
            2,
            M::CHANNEL_BIND,
            vec![Attr::Channel(0x7000), Attr::Peer(0)],
        ),
        cd(1, 0x7000, b"old channel"),
        peer(1, 0, b"back"),
    ]);
    scripts.push(("rfc5766".to_owned(), script(0x02, 0, &rfc5766)));

    // What turnutils_uclient sent, replayed as raw datagrams from client 0.
    for r in recorded.iter().filter(|r| r.name.contains("-c-")) {
        let raw = Op::Raw {
            client: 0,
            data: r.data.clone(),
        };
        let name = format!("raw-{}", r.name.trim_start_matches("rec-"));
        scripts.push((name, script(0, 0, &[raw])));
    }
    scripts
}

/// Every file under `dir` (`seeds/`), as (target, file name, bytes), sorted.
///
/// # Panics
///
/// If the directory cannot be read.
pub fn read_dir(dir: &std::path::Path) -> Vec<(String, String, Vec<u8>)> {
    let mut files = Vec::new();
    for target in std::fs::read_dir(dir).expect("the seeds directory") {
        let target = target.expect("a directory entry").path();
        let target_name = target.file_name().unwrap().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&target).expect("a target's seeds") {
            let path = file.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let data = std::fs::read(&path).expect("a seed file");
            files.push((target_name.clone(), name, data));
        }
    }
    files.sort();
    files
}

/// The recorded seeds (`rec-*`) among `files`.
pub fn recorded(files: &[(String, String, Vec<u8>)]) -> Vec<Recorded> {
    files
        .iter()
        .filter(|(_, name, _)| name.starts_with("rec-"))
        .map(|(target, name, data)| Recorded {
            target: target.clone(),
            name: name.clone(),
            data: data.clone(),
        })
        .collect()
}
