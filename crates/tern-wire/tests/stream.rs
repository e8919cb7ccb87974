//! Stream framing (RFC 8656 §12.5): however a stream of STUN and ChannelData messages is cut
//! into reads, the connection buffer yields the same messages in order; ChannelData padding is
//! written on the way out and skipped on the way in; and every close rule fires on a crafted
//! header as soon as the bytes that decide it are in.

use proptest::prelude::*;
use tern_wire::stream::{
    self, channel_data_frame_len, channel_data_padding, pad_channel_data, write_channel_data,
    Decoded, Frame, FrameKind, Framing, StreamError, MAX_FRAME_LEN,
};
use tern_wire::{
    attr, ChannelData, ChannelNumber, Class, Message, MessageType, MessageWriter, Method,
    TransactionId, CHANNEL_DATA_HEADER_LEN, HEADER_LEN,
};

/// One message as the test sends it.
#[derive(Debug, Clone)]
enum Sent {
    Stun {
        typ: MessageType,
        tid: TransactionId,
        attrs: Vec<(u16, Vec<u8>)>,
        fingerprint: bool,
    },
    ChannelData {
        channel: u16,
        payload: Vec<u8>,
        /// Overwrite the zero padding with this byte: a receiver ignores its value.
        padding: Option<u8>,
    },
}

impl Sent {
    /// Appends the message, padded as on a stream, to `stream`; returns what the receiver
    /// must get back: its kind and its bytes without padding.
    fn write(&self, stream: &mut Vec<u8>) -> (FrameKind, Vec<u8>) {
        match self {
            Sent::Stun {
                typ,
                tid,
                attrs,
                fingerprint,
            } => {
                let mut buf = Vec::new();
                let mut w = MessageWriter::new(&mut buf, *typ, *tid);
                for (t, v) in attrs {
                    w.attr(*t, v);
                }
                if *fingerprint {
                    w.fingerprint();
                }
                w.finish();
                stream.extend_from_slice(&buf);
                (FrameKind::Stun, buf)
            }
            Sent::ChannelData {
                channel,
                payload,
                padding,
            } => {
                let number = ChannelNumber::new_rfc5766(*channel).unwrap();
                let start = stream.len();
                let n = write_channel_data(number, payload, stream);
                let end = start + CHANNEL_DATA_HEADER_LEN + payload.len();
                if let Some(p) = padding {
                    stream[end..start + n].fill(*p);
                }
                (FrameKind::ChannelData, stream[start..end].to_vec())
            }
        }
    }
}

/// Writes `sent` one after another; returns the stream and the messages it carries.
fn stream_of(sent: &[Sent]) -> (Vec<u8>, Vec<(FrameKind, Vec<u8>)>) {
    let mut stream = Vec::new();
    let expected = sent.iter().map(|m| m.write(&mut stream)).collect();
    (stream, expected)
}

/// A connection as a worker keeps it: the bytes read and not yet framed.
struct Connection {
    buf: Vec<u8>,
    framing: Framing,
    received: Vec<(FrameKind, Vec<u8>)>,
}

impl Connection {
    fn new(framing: Framing) -> Self {
        Self {
            buf: Vec::new(),
            framing,
            received: Vec::new(),
        }
    }

    /// Appends a read, drains every whole message with [`stream::frames`], and keeps the
    /// remainder at the front of the buffer.
    fn read(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        self.buf.extend_from_slice(bytes);
        let mut frames = stream::frames(&self.buf, self.framing);
        let mut result = Ok(());
        for frame in &mut frames {
            match frame {
                Ok((kind, message)) => self.received.push((kind, message.to_vec())),
                Err(e) => result = Err(e),
            }
        }
        if result.is_ok() {
            // Only an incomplete frame stops the iterator without an error.
            assert!(frames.missing().is_some_and(|m| m >= 1));
        }
        let consumed = frames.consumed();
        self.buf.drain(..consumed);
        result
    }

    /// Like [`Connection::read`] with [`stream::decode_frame`] called directly, one frame at a
    /// time. `frame_lens` are the stream's frame lengths in order, padding included: every
    /// `NeedMore` must be a lower bound on what the frame being received still lacks.
    fn read_one_by_one(&mut self, bytes: &[u8], frame_lens: &[usize]) -> Result<(), StreamError> {
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            match stream::decode_frame(&self.buf[at..], self.framing)? {
                Decoded::Frame(frame) => {
                    let message = frame.message(&self.buf[at..]);
                    assert_eq!(frame.range(), 0..message.len());
                    self.received.push((frame.kind, message.to_vec()));
                    at += frame.consumed;
                }
                Decoded::NeedMore { missing } => {
                    let buffered = self.buf.len() - at;
                    let whole = frame_lens
                        .get(self.received.len())
                        .copied()
                        .unwrap_or(CHANNEL_DATA_HEADER_LEN);
                    assert!(missing >= 1, "NeedMore with nothing missing");
                    assert!(
                        buffered + missing <= whole,
                        "{buffered} bytes buffered + {missing} missing overshoot a frame of {whole}"
                    );
                    break;
                }
            }
        }
        self.buf.drain(..at);
        Ok(())
    }
}

/// Feeds `stream` in reads of the sizes in `reads` (repeated as needed) through both kinds of
/// connection; both must receive `expected`, in order, and be left with an empty buffer.
fn receive_in_reads(
    stream: &[u8],
    reads: &[usize],
    framing: Framing,
    expected: &[(FrameKind, Vec<u8>)],
) -> Result<(), TestCaseError> {
    let frame_lens = frame_lens(expected);
    let mut by_iter = Connection::new(framing);
    let mut by_frame = Connection::new(framing);
    let mut at = 0;
    for &size in reads.iter().cycle() {
        if at == stream.len() {
            break;
        }
        let end = (at + size).min(stream.len());
        prop_assert_eq!(by_iter.read(&stream[at..end]), Ok(()));
        prop_assert_eq!(
            by_frame.read_one_by_one(&stream[at..end], &frame_lens),
            Ok(())
        );
        at = end;
    }
    prop_assert_eq!(&by_iter.received, expected);
    prop_assert_eq!(&by_frame.received, expected);
    prop_assert!(by_iter.buf.is_empty() && by_frame.buf.is_empty());
    Ok(())
}

/// The length each message occupies on the stream.
fn frame_lens(messages: &[(FrameKind, Vec<u8>)]) -> Vec<usize> {
    messages
        .iter()
        .map(|(kind, m)| match kind {
            FrameKind::Stun => m.len(),
            FrameKind::ChannelData => channel_data_frame_len(m.len() - CHANNEL_DATA_HEADER_LEN),
        })
        .collect()
}

/// Checks each received message reads as what was sent.
fn check_contents(sent: &[Sent], received: &[(FrameKind, Vec<u8>)]) -> Result<(), TestCaseError> {
    for (s, (_, bytes)) in sent.iter().zip(received) {
        match s {
            Sent::Stun { typ, tid, .. } => {
                let msg = Message::parse(bytes).unwrap();
                prop_assert_eq!(msg.message_type(), *typ);
                prop_assert_eq!(msg.transaction_id(), *tid);
            }
            Sent::ChannelData {
                channel, payload, ..
            } => {
                let cd = ChannelData::parse_rfc5766(bytes).unwrap();
                prop_assert_eq!(cd.channel.get(), *channel);
                prop_assert_eq!(cd.payload, &payload[..]);
            }
        }
    }
    Ok(())
}

fn plain_type() -> impl Strategy<Value = u16> {
    any::<u16>().prop_filter("integrity and fingerprint have fixed lengths", |t| {
        !matches!(
            *t,
            attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 | attr::FINGERPRINT
        )
    })
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![
        Just(Class::Request),
        Just(Class::Indication),
        Just(Class::Success),
        Just(Class::Error)
    ]
}

fn stun() -> impl Strategy<Value = Sent> {
    (
        (0u16..=0x0FFF, class()).prop_map(|(m, c)| MessageType::new(Method(m), c)),
        any::<[u8; 12]>().prop_map(TransactionId),
        prop::collection::vec(
            (plain_type(), prop::collection::vec(any::<u8>(), 0..300)),
            0..6,
        ),
        any::<bool>(),
    )
        .prop_map(|(typ, tid, attrs, fingerprint)| Sent::Stun {
            typ,
            tid,
            attrs,
            fingerprint,
        })
}

/// ChannelData on a channel the framing accepts: 0x4000..=0x4FFF, or up to 0x7FFF when
/// `rfc5766`.
fn channel_data(rfc5766: bool) -> impl Strategy<Value = Sent> {
    let top = if rfc5766 { 0x7FFF } else { 0x4FFF };
    (
        0x4000u16..=top,
        prop::collection::vec(any::<u8>(), 0..=1500),
        prop::option::of(any::<u8>()),
    )
        .prop_map(|(channel, payload, padding)| Sent::ChannelData {
            channel,
            payload,
            padding,
        })
}

/// Read sizes: often tiny, so headers and padding are cut, sometimes large, so several
/// messages arrive at once.
fn reads() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..=8, 1usize..=4000], 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any split of a stream of messages into reads decodes to the same messages, in order.
    #[test]
    fn any_split_into_reads_yields_the_same_messages(
        (rfc5766, sent) in any::<bool>().prop_flat_map(|rfc5766| (
            Just(rfc5766),
            prop::collection::vec(prop_oneof![stun(), channel_data(rfc5766)], 0..16),
        )),
        reads in reads(),
    ) {
        let framing = Framing { rfc5766_channels: rfc5766, ..Framing::default() };
        let (stream, expected) = stream_of(&sent);
        receive_in_reads(&stream, &reads, framing, &expected)?;
        let mut conn = Connection::new(framing);
        conn.read(&stream).unwrap();
        check_contents(&sent, &conn.received)?;
    }

    /// ChannelData of any length goes out padded to four and comes back without the padding.
    #[test]
    fn channel_data_round_trips_through_padding(
        channel in 0x4000u16..=0x4FFF,
        payload in prop::collection::vec(any::<u8>(), 0..=1500),
    ) {
        let mut out = Vec::new();
        let n = write_channel_data(ChannelNumber::new(channel).unwrap(), &payload, &mut out);
        prop_assert_eq!(n, out.len());
        prop_assert_eq!(n % 4, 0);
        prop_assert_eq!(n, channel_data_frame_len(payload.len()));
        let frame = match stream::decode_frame(&out, Framing::default()) {
            Ok(Decoded::Frame(frame)) => frame,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert_eq!(frame.consumed, n);
        prop_assert_eq!(frame.len, CHANNEL_DATA_HEADER_LEN + payload.len());
        prop_assert_eq!(ChannelData::parse(frame.message(&out)).unwrap().payload, &payload[..]);
    }
}

// ---- Padding, both ways -------------------------------------------------------------------

#[test]
fn writer_pads_channel_data_to_four_with_zeros() {
    let channel = ChannelNumber::new(0x4ABC).unwrap();
    for len in 0..8usize {
        let payload: Vec<u8> = (1..=len as u8).collect();
        let mut out = vec![0xEE]; // something already queued stays
        let n = write_channel_data(channel, &payload, &mut out);
        let padding = (4 - len % 4) % 4;
        assert_eq!(channel_data_padding(len), padding, "len {len}");
        assert_eq!(n, 4 + len + padding, "len {len}");
        assert_eq!(n, channel_data_frame_len(len), "len {len}");
        assert_eq!(out.len(), 1 + n);
        let frame = &out[1..];
        assert_eq!(
            frame[..4],
            [0x4A, 0xBC, 0, len as u8],
            "length excludes padding"
        );
        assert_eq!(frame[4..4 + len], payload[..]);
        assert!(frame[4 + len..].iter().all(|&b| b == 0), "len {len}");
    }
}

#[test]
fn pad_in_place_matches_the_writer() {
    let channel = ChannelNumber::new(0x4001).unwrap();
    for len in 0..8usize {
        let payload = vec![0x5A; len];
        let mut written = Vec::new();
        write_channel_data(channel, &payload, &mut written);

        // Framed in place as the relay does: header, data, then stale bytes in the tailroom.
        let mut buf = [0xEE; 4 + 7 + 3];
        let header: &mut [u8; 4] = (&mut buf[..4]).try_into().unwrap();
        ChannelData::write_header(channel, len as u16, header);
        buf[4..4 + len].copy_from_slice(&payload);
        let n = pad_channel_data(&mut buf, len);
        assert_eq!(buf[..n], written[..], "len {len}");
        assert!(
            buf[n..].iter().all(|&b| b == 0xEE),
            "nothing past the frame is touched"
        );
    }
}

#[test]
fn decoder_skips_padding_whatever_its_value_and_waits_for_it() {
    let binding = {
        let mut buf = Vec::new();
        let typ = MessageType::new(Method::BINDING, Class::Request);
        MessageWriter::new(&mut buf, typ, TransactionId([3; 12])).finish();
        buf
    };
    for len in 0..8usize {
        let padding = channel_data_padding(len);
        for fill in [0x00, 0xFF] {
            let mut stream = vec![0x40, 0x10, 0, len as u8];
            stream.extend(std::iter::repeat_n(0x77, len));
            stream.extend(std::iter::repeat_n(fill, padding));
            let whole = stream.len();
            stream.extend_from_slice(&binding);

            let expected = Frame {
                kind: FrameKind::ChannelData,
                len: 4 + len,
                consumed: 4 + len + padding,
            };
            let got = stream::decode_frame(&stream, Framing::default());
            assert_eq!(got, Ok(Decoded::Frame(expected)), "len {len}");
            assert_eq!(expected.padding(), padding);

            // The message is complete but its padding is not: the frame is not.
            for cut in 4 + len..whole {
                assert_eq!(
                    stream::decode_frame(&stream[..cut], Framing::default()),
                    Ok(Decoded::NeedMore {
                        missing: whole - cut
                    }),
                    "len {len}, cut at {cut}"
                );
            }

            // The next message starts right after the padding.
            let next = stream::decode_frame(&stream[whole..], Framing::default());
            let next_frame = Frame {
                kind: FrameKind::Stun,
                len: HEADER_LEN,
                consumed: HEADER_LEN,
            };
            assert_eq!(next, Ok(Decoded::Frame(next_frame)));
            let got: Vec<_> = stream::frames(&stream, Framing::default())
                .map(Result::unwrap)
                .collect();
            assert_eq!(
                got,
                [
                    (FrameKind::ChannelData, &stream[..4 + len]),
                    (FrameKind::Stun, &binding[..])
                ]
            );
        }
    }
}

#[test]
fn stun_messages_need_no_padding() {
    let mut buf = Vec::new();
    let typ = MessageType::new(Method::ALLOCATE, Class::Request);
    for value_len in 0..8 {
        let mut w = MessageWriter::new(&mut buf, typ, TransactionId([1; 12]));
        w.attr(0x8022, &vec![b'x'; value_len]);
        let n = w.finish();
        assert_eq!(n % 4, 0);
        let frame = Frame {
            kind: FrameKind::Stun,
            len: n,
            consumed: n,
        };
        assert_eq!(
            stream::decode_frame(&buf, Framing::default()),
            Ok(Decoded::Frame(frame))
        );
        assert_eq!(frame.padding(), 0);
    }
}

// ---- Close rules --------------------------------------------------------------------------

/// A header that breaks one rule, cut right after the byte that decides it.
struct Case {
    what: &'static str,
    framing: Framing,
    prefix: Vec<u8>,
    error: StreamError,
}

fn rfc5766() -> Framing {
    Framing {
        rfc5766_channels: true,
        ..Framing::default()
    }
}

fn max(max_frame_len: usize) -> Framing {
    Framing {
        max_frame_len,
        ..Framing::default()
    }
}

fn close_cases() -> Vec<Case> {
    let d = Framing::default();
    let case = |what, framing, prefix: &[u8], error| Case {
        what,
        framing,
        prefix: prefix.to_vec(),
        error,
    };
    vec![
        case("first bits 10", d, &[0x80], StreamError::BadFirstByte),
        case("first bits 11", d, &[0xC0], StreamError::BadFirstByte),
        case("first byte 0xFF", d, &[0xFF], StreamError::BadFirstByte),
        // A TLS record on the plain port: type 0x16, version 0x0301, then the record length,
        // whose high byte (0x02 for a 512-byte ClientHello) ends STUN's length field.
        case(
            "TLS ClientHello",
            d,
            &[0x16, 0x03, 0x01, 0x02],
            StreamError::UnalignedStunLength,
        ),
        case(
            "channel 0x5000",
            d,
            &[0x50, 0x00],
            StreamError::BadChannelNumber,
        ),
        case(
            "channel 0x7FFF",
            d,
            &[0x7F, 0xFF],
            StreamError::BadChannelNumber,
        ),
        case(
            "ChannelData of 65,533 bytes",
            d,
            &[0x40, 0x00, 0xFF, 0xFD],
            StreamError::OversizedChannelData,
        ),
        case(
            "ChannelData of 65,535 bytes, RFC 5766 channel",
            rfc5766(),
            &[0x7F, 0xFF, 0xFF, 0xFF],
            StreamError::OversizedChannelData,
        ),
        case(
            "ChannelData whose padding crosses a 1,504-byte limit",
            max(1504),
            &[0x40, 0x00, 0x05, 0xDD],
            StreamError::OversizedChannelData,
        ),
        case(
            "STUN length 3",
            d,
            &[0x00, 0x01, 0x00, 0x03],
            StreamError::UnalignedStunLength,
        ),
        case(
            "STUN length 65,535",
            d,
            &[0x00, 0x01, 0xFF, 0xFF],
            StreamError::UnalignedStunLength,
        ),
        case(
            "STUN length 65,520",
            d,
            &[0x00, 0x01, 0xFF, 0xF0],
            StreamError::OversizedStun,
        ),
        case(
            "STUN over a 1,500-byte limit",
            max(1500),
            &[0x00, 0x01, 0x05, 0xCC],
            StreamError::OversizedStun,
        ),
        case(
            "STUN with a cookie off by one",
            d,
            &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x43],
            StreamError::BadMagicCookie,
        ),
        case(
            "RFC 3489 Binding request (no cookie)",
            d,
            &[0x00, 0x01, 0x00, 0x00, 0x8C, 0x1F, 0x00, 0x01],
            StreamError::BadMagicCookie,
        ),
    ]
}

#[test]
fn each_close_rule_fires_as_soon_as_its_bytes_are_in() {
    for Case {
        what,
        framing,
        prefix,
        error,
    } in close_cases()
    {
        assert_eq!(stream::decode_frame(&prefix, framing), Err(error), "{what}");
        // One byte fewer does not decide it yet ...
        let shorter = &prefix[..prefix.len() - 1];
        assert!(
            matches!(
                stream::decode_frame(shorter, framing),
                Ok(Decoded::NeedMore { .. })
            ),
            "{what}: decided before its bytes were in"
        );
        // ... and whatever follows the header does not matter.
        let mut longer = prefix.clone();
        longer.resize(prefix.len() + 100, 0);
        assert_eq!(stream::decode_frame(&longer, framing), Err(error), "{what}");
    }
}

#[test]
fn close_rules_cover_every_reason() {
    let cases = close_cases();
    for reason in StreamError::ALL {
        assert!(
            cases.iter().any(|c| c.error == reason),
            "no case closes with {reason:?}"
        );
    }
}

#[test]
fn labels_are_fixed_snake_case_and_unique() {
    let labels: Vec<_> = StreamError::ALL.iter().map(|e| e.label()).collect();
    assert_eq!(
        labels,
        [
            "bad_first_byte",
            "stun_unaligned_length",
            "stun_oversized",
            "stun_bad_magic_cookie",
            "channel_data_oversized",
            "bad_channel_number",
        ]
    );
    for (i, e) in StreamError::ALL.iter().enumerate() {
        assert_eq!(*e as usize, i);
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn largest_frames_accepted_and_smallest_refused() {
    assert_eq!(MAX_FRAME_LEN, 65_536);
    let d = Framing::default();
    let waits = |header: &[u8], framing, frame_len: usize| {
        assert_eq!(
            stream::decode_frame(header, framing),
            Ok(Decoded::NeedMore {
                missing: frame_len - header.len()
            }),
            "{header:02x?}"
        );
    };
    // What a 65,535-byte UDP datagram can carry is accepted: 65,531 bytes of ChannelData data
    // (65,536 padded), a 65,532-byte STUN message.
    waits(&[0x40, 0x00, 0xFF, 0xFB], d, 65_536);
    waits(&[0x00, 0x01, 0xFF, 0xE8, 0x21, 0x12, 0xA4, 0x42], d, 65_532);
    // The largest accepted and the smallest refused of each kind.
    waits(&[0x40, 0x00, 0xFF, 0xFC], d, 65_536);
    assert_eq!(
        stream::decode_frame(&[0x40, 0x00, 0xFF, 0xFD], d),
        Err(StreamError::OversizedChannelData)
    );
    waits(&[0x00, 0x01, 0xFF, 0xEC, 0x21, 0x12, 0xA4, 0x42], d, 65_536);
    assert_eq!(
        stream::decode_frame(&[0x00, 0x01, 0xFF, 0xF0], d),
        Err(StreamError::OversizedStun)
    );
    // The limit counts padding: 1,500 bytes of data fit 1,504, 1,501 do not.
    waits(&[0x40, 0x00, 0x05, 0xDC], max(1504), 1504);
    assert_eq!(
        stream::decode_frame(&[0x40, 0x00, 0x05, 0xDD], max(1504)),
        Err(StreamError::OversizedChannelData)
    );
    // Below a STUN header, no STUN message fits.
    assert_eq!(
        stream::decode_frame(&[0x00, 0x01, 0x00, 0x00], max(19)),
        Err(StreamError::OversizedStun)
    );
}

#[test]
fn rfc5766_framing_accepts_the_upper_channels() {
    for number in [0x5000u16, 0x6ABC, 0x7FFF] {
        let mut out = Vec::new();
        write_channel_data(
            ChannelNumber::new_rfc5766(number).unwrap(),
            b"abc",
            &mut out,
        );
        assert_eq!(
            stream::decode_frame(&out, Framing::default()),
            Err(StreamError::BadChannelNumber)
        );
        let frame = Frame {
            kind: FrameKind::ChannelData,
            len: 7,
            consumed: 8,
        };
        assert_eq!(
            stream::decode_frame(&out, rfc5766()),
            Ok(Decoded::Frame(frame))
        );
    }
}

#[test]
fn length_is_checked_before_the_cookie() {
    // Unaligned length and no cookie: the length, decided first, is the reason.
    let header = [0x00, 0x01, 0x00, 0x02, 0, 0, 0, 0];
    assert_eq!(
        stream::decode_frame(&header, Framing::default()),
        Err(StreamError::UnalignedStunLength)
    );
}

#[test]
fn frames_stop_at_the_first_error() {
    let mut buf = Vec::new();
    write_channel_data(ChannelNumber::new(0x4000).unwrap(), b"ok", &mut buf);
    let good = buf.len();
    buf.extend_from_slice(&[0x80, 0, 0, 0]);
    write_channel_data(ChannelNumber::new(0x4000).unwrap(), b"never", &mut buf);
    let mut frames = stream::frames(&buf, Framing::default());
    assert_eq!(frames.next(), Some(Ok((FrameKind::ChannelData, &buf[..6]))));
    assert_eq!(frames.next(), Some(Err(StreamError::BadFirstByte)));
    assert_eq!(frames.next(), None);
    assert_eq!(frames.consumed(), good);
    assert_eq!(frames.missing(), None);
}

// ---- A fixed mixed stream, cut everywhere ------------------------------------------------

fn mixed() -> Vec<Sent> {
    let cd = |channel, len: usize| Sent::ChannelData {
        channel,
        payload: (0..len).map(|i| i as u8).collect(),
        padding: None,
    };
    let stun = |method, attrs: Vec<(u16, Vec<u8>)>, fingerprint| Sent::Stun {
        typ: MessageType::new(Method(method), Class::Request),
        tid: TransactionId([method as u8; 12]),
        attrs,
        fingerprint,
    };
    vec![
        stun(0x001, vec![], true),
        cd(0x4000, 0),
        cd(0x4001, 1),
        cd(0x4FFF, 2),
        cd(0x4123, 3),
        cd(0x4002, 4),
        cd(0x4003, 5),
        stun(
            0x003,
            vec![
                (attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0]),
                (0x0006, b"alice".to_vec()),
            ],
            true,
        ),
        cd(0x4004, 1500),
        stun(0x009, vec![], false),
        cd(0x4005, 7),
    ]
}

#[test]
fn a_mixed_stream_split_at_every_byte_decodes_the_same() {
    let (stream, expected) = stream_of(&mixed());
    for cut in 1..=stream.len() {
        let reads = [cut, stream.len()];
        receive_in_reads(&stream, &reads, Framing::default(), &expected)
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
    }
}

#[test]
fn a_mixed_stream_fed_byte_by_byte_completes_each_frame_when_one_byte_is_missing() {
    let (stream, expected) = stream_of(&mixed());
    let frame_lens = frame_lens(&expected);
    let framing = Framing::default();
    let mut buf = Vec::new();
    let mut received = Vec::new();
    let mut last_missing = None;
    for &byte in &stream {
        buf.push(byte);
        match stream::decode_frame(&buf, framing).unwrap() {
            Decoded::Frame(frame) => {
                assert_eq!(last_missing, Some(1), "frame {}", received.len());
                received.push((frame.kind, frame.message(&buf).to_vec()));
                buf.drain(..frame.consumed);
                last_missing = None;
            }
            Decoded::NeedMore { missing } => {
                let whole = frame_lens[received.len()];
                assert!(buf.len() + missing <= whole, "frame {}", received.len());
                last_missing = Some(missing);
            }
        }
    }
    assert_eq!(received, expected);
    assert!(buf.is_empty());
    assert_eq!(
        stream::decode_frame(&buf, framing),
        Ok(Decoded::NeedMore {
            missing: CHANNEL_DATA_HEADER_LEN
        })
    );
}
