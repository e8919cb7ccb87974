//! The stream framer (tern-wire's `stream` module): TURN over TCP and TLS.

use tern_wire::stream::{
    self, channel_data_frame_len, decode_frame, Decoded, Frame, FrameKind, Framing, StreamError,
    MAX_FRAME_LEN,
};
use tern_wire::{ChannelData, ChannelNumber, Message, WireError, HEADER_LEN, MAGIC_COOKIE};

/// The first byte picks the rules (largest frame, channel range); the rest is what a
/// connection received so far.
///
/// Checked: every prefix of the buffer agrees with the whole (a prefix of a frame needs more
/// and never more than the frame has; an error is decided by the first 8 bytes at most and
/// stays); a frame is what its header says; `frames` walks the buffer as `decode_frame`
/// does at each offset and stops on exactly one of "needs more" and an error.
pub fn stream(data: &[u8]) {
    let Some((&opts, buf)) = data.split_first() else {
        return;
    };
    let framing = Framing {
        max_frame_len: match opts & 7 {
            0 => 0,
            1 => 4,
            2 => HEADER_LEN,
            3 => 1500,
            4 => MAX_FRAME_LEN + 64,
            _ => MAX_FRAME_LEN,
        },
        rfc5766_channels: opts & 8 != 0,
    };
    let whole = decode_frame(buf, framing);
    prefixes_agree(buf, framing, whole);
    if let Ok(Decoded::Frame(frame)) = whole {
        check_frame(buf, framing, frame);
    }

    let mut frames = stream::frames(buf, framing);
    let mut at = 0;
    let mut failed = false;
    for item in &mut frames {
        let rest = &buf[at..];
        match (item, decode_frame(rest, framing)) {
            (Ok((kind, message)), Ok(Decoded::Frame(frame))) => {
                assert_eq!((kind, message), (frame.kind, frame.message(rest)));
                check_frame(rest, framing, frame);
                at += frame.consumed;
            }
            (Err(e), Err(again)) => {
                assert_eq!(e, again);
                failed = true;
            }
            (item, decoded) => panic!("frames gave {item:?} where decode_frame gives {decoded:?}"),
        }
    }
    assert_eq!(frames.consumed(), at);
    assert!(at <= buf.len());
    match frames.missing() {
        Some(missing) => {
            assert!(!failed);
            assert_eq!(
                decode_frame(&buf[at..], framing),
                Ok(Decoded::NeedMore { missing })
            );
        }
        None => assert!(failed, "the iterator stops on more to come or an error"),
    }
}

/// The bytes that decide an error, by reason.
fn decided_by(e: StreamError) -> usize {
    match e {
        StreamError::BadFirstByte => 1,
        StreamError::BadChannelNumber => 2,
        StreamError::UnalignedStunLength
        | StreamError::OversizedStun
        | StreamError::OversizedChannelData => 4,
        StreamError::BadMagicCookie => 8,
        other => panic!("a reason this target does not know: {other:?}"),
    }
}

fn prefixes_agree(buf: &[u8], framing: Framing, whole: Result<Decoded, StreamError>) {
    for n in 0..buf.len() {
        let part = decode_frame(&buf[..n], framing);
        match (whole, part) {
            (_, Ok(Decoded::NeedMore { missing })) => {
                assert!(missing > 0);
                if let Ok(Decoded::Frame(f)) = whole {
                    assert!(n + missing <= f.consumed, "{n} + {missing} past the frame");
                }
                if let Err(e) = whole {
                    assert!(n < decided_by(e), "{e:?} was decided by {n} bytes");
                }
            }
            (Ok(Decoded::Frame(f)), Ok(Decoded::Frame(g))) => {
                assert!(n >= f.consumed);
                assert_eq!(f, g);
            }
            (Err(e), Err(g)) => {
                assert_eq!(e, g, "an error does not change as bytes arrive");
                assert!(n >= decided_by(e));
            }
            (whole, part) => panic!("{n} bytes decode as {part:?}, all of them as {whole:?}"),
        }
    }
}

/// A frame is what its header says it is, and the message parsers take it.
fn check_frame(buf: &[u8], framing: Framing, frame: Frame) {
    assert!(frame.len <= frame.consumed && frame.consumed <= buf.len());
    assert!(frame.consumed <= framing.max_frame_len);
    assert_eq!(frame.range(), 0..frame.len);
    let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let message = frame.message(buf);
    match frame.kind {
        FrameKind::Stun => {
            assert_eq!(buf[0] & 0xC0, 0);
            assert_eq!(frame.len, HEADER_LEN + length);
            assert_eq!(frame.padding(), 0);
            assert_eq!(
                u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                MAGIC_COOKIE
            );
            // The framer checked the header; only the attributes can be wrong now.
            match Message::parse(message) {
                Ok(_)
                | Err(WireError::AttributeOverrun { .. } | WireError::BadAttributeLength { .. }) => {
                }
                Err(e) => panic!("a framed STUN message fails its header check: {e:?}"),
            }
        }
        FrameKind::ChannelData => {
            assert_eq!(buf[0] & 0xC0, 0x40);
            assert_eq!(frame.len, 4 + length);
            assert_eq!(frame.consumed, channel_data_frame_len(length));
            assert!(frame.padding() < 4);
            let cd = ChannelData::parse_rfc5766(message).expect("a framed ChannelData parses");
            assert_eq!(cd.payload.len(), length);
            let strict = cd.channel.get() <= ChannelNumber::MAX;
            assert!(framing.rfc5766_channels || strict);
            let mut padded = message.to_vec();
            padded.extend_from_slice(&[0xEE; 3]);
            assert_eq!(
                stream::pad_channel_data(&mut padded, length),
                frame.consumed
            );
            assert!(padded[frame.len..frame.consumed].iter().all(|&b| b == 0));
        }
    }
}
