//! Seeds for what a stream connection carries: framed messages, PROXY headers.

use tern_wire::stream::write_channel_data;
use tern_wire::ChannelNumber;

use super::Recorded;

/// A stream: the options byte, then messages back to back, ChannelData padded.
pub(super) fn stream(
    messages: &[(&str, Vec<u8>)],
    recorded: &[Recorded],
) -> Vec<(&'static str, Vec<u8>)> {
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
    // What the recorded clients sent, framed for a stream.
    let mut sent = vec![5u8 | 8];
    for r in recorded.iter().filter(|r| r.name.contains("-c-")) {
        match r.target.as_str() {
            "channel_data" => {
                let cd = tern_wire::ChannelData::parse_rfc5766(&r.data).expect("recorded");
                write_channel_data(cd.channel, cd.payload, &mut sent);
            }
            _ => sent.extend_from_slice(&r.data),
        }
    }
    vec![
        ("session", session),
        ("partial", partial),
        ("rfc5766", rfc5766),
        ("recorded", sent),
    ]
}

pub(super) fn proxy() -> Vec<(&'static str, Vec<u8>)> {
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
