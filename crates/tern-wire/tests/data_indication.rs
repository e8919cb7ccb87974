//! `frame_data_indication` frames a payload in place into a Data indication that
//! `Message::parse` reads back: either family, any padding, with and without FINGERPRINT,
//! up to the largest payload the 16-bit length allows.

use std::net::SocketAddr;

use tern_wire::{
    attr, frame_data_indication, Class, Message, Method, TransactionId, DATA_INDICATION_HEADROOM,
    DATA_INDICATION_MAX_PAYLOAD, DATA_INDICATION_TAILROOM, HEADER_LEN,
};

/// Frames `payload` behind a headroom of `DATA_INDICATION_HEADROOM` and checks what parses.
fn frame_and_parse(payload: &[u8], peer: SocketAddr, fingerprint: bool) {
    let tid = TransactionId([0x5a; 12]);
    let at = DATA_INDICATION_HEADROOM;
    let mut buf = vec![0xEE; at + payload.len() + DATA_INDICATION_TAILROOM];
    buf[at..at + payload.len()].copy_from_slice(payload);
    let range = frame_data_indication(&mut buf, at..at + payload.len(), peer, &tid, fingerprint);
    assert!(range.end <= buf.len());
    let msg = Message::parse(&buf[range.clone()]).expect("parses");
    assert_eq!(
        (msg.method(), msg.class()),
        (Method::DATA, Class::Indication)
    );
    assert_eq!(msg.transaction_id(), tid);
    let got = msg
        .get(attr::XOR_PEER_ADDRESS)
        .expect("XOR-PEER-ADDRESS")
        .value;
    assert_eq!(
        attr::decode_xor_address(got, attr::XOR_PEER_ADDRESS, &tid),
        Ok(peer)
    );
    assert_eq!(msg.get(attr::DATA).expect("DATA").value, payload);
    assert_eq!(msg.check_fingerprint(), fingerprint.then_some(true));
    assert_eq!(range.len() % 4, 0, "padded");
    // The payload was not moved: DATA's value is where it was put.
    assert_eq!(&buf[at..at + payload.len()], payload);
}

#[test]
fn frames_in_place_for_both_families_with_and_without_fingerprint() {
    let peers: [SocketAddr; 2] = [
        "198.51.100.7:5000".parse().unwrap(),
        "[2001:db8::7]:6000".parse().unwrap(),
    ];
    for peer in peers {
        for fingerprint in [false, true] {
            for len in 0..=9 {
                let payload: Vec<u8> = (0..len as u8).collect();
                frame_and_parse(&payload, peer, fingerprint);
            }
        }
    }
}

#[test]
fn the_largest_payload_fills_the_length_field() {
    let peer: SocketAddr = "[2001:db8::7]:6000".parse().unwrap();
    let payload = vec![3u8; DATA_INDICATION_MAX_PAYLOAD];
    frame_and_parse(&payload, peer, true);
    // The message length is within a padding step of u16::MAX: 4 more bytes would not fit.
    let body = DATA_INDICATION_HEADROOM - HEADER_LEN + DATA_INDICATION_MAX_PAYLOAD + 8;
    assert!(body <= usize::from(u16::MAX) && body + 4 > usize::from(u16::MAX));
}

#[test]
#[should_panic(expected = "too big")]
fn a_longer_payload_is_refused() {
    let peer: SocketAddr = "198.51.100.7:5000".parse().unwrap();
    let len = DATA_INDICATION_MAX_PAYLOAD + 1;
    let mut buf = vec![0; DATA_INDICATION_HEADROOM + len + DATA_INDICATION_TAILROOM];
    let at = DATA_INDICATION_HEADROOM;
    frame_data_indication(&mut buf, at..at + len, peer, &TransactionId([1; 12]), false);
}
