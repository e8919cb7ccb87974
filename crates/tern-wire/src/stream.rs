//! Framing of STUN and ChannelData messages on a byte stream: TURN over TCP and TLS
//! (RFC 8656 §3.1, §12.5; RFC 8489 §6.2).
//!
//! On a stream nothing marks where one message ends and the next begins; each message's own
//! header says how long it is. A STUN message is its 20-byte header plus the header's length
//! field, always a multiple of four. A ChannelData message is its 4-byte header plus the
//! length field, and on a stream it is followed by zero padding to a multiple of four bytes,
//! which its length field does not count (RFC 8656 §12.5).
//!
//! [`decode_frame`] looks at the bytes buffered so far for one connection and says whether a
//! whole message is at the front, how many more bytes it needs, or why the connection must be
//! closed. It is a pure function: no allocation, no copy, no state. [`frames`] repeats it
//! over a buffer for a worker that drains every whole message after a read and then keeps the
//! remainder; [`write_channel_data`] and [`pad_channel_data`] write the padding on the way out.
//!
//! A stream that breaks a rule cannot be resynchronised: where the next message would start
//! is no longer known. Every [`StreamError`] therefore closes the connection, and it is
//! reported as soon as the bytes that decide it are in, never after waiting for a body.
//!
//! ```
//! use tern_wire::stream::{self, Decoded, FrameKind, Framing};
//! use tern_wire::{ChannelData, ChannelNumber};
//!
//! // A client sends 5 bytes on channel 0x4001: 4 bytes of header, 5 of data, 3 of padding ...
//! let mut sent = Vec::new();
//! stream::write_channel_data(ChannelNumber::new(0x4001).unwrap(), b"hello", &mut sent);
//! assert_eq!(sent.len(), 12);
//!
//! // ... and they arrive in two reads.
//! let framing = Framing::default();
//! let mut conn = sent[..7].to_vec();
//! assert_eq!(stream::decode_frame(&conn, framing), Ok(Decoded::NeedMore { missing: 5 }));
//! conn.extend_from_slice(&sent[7..]);
//!
//! // Drain every whole message, then keep what is left for the next read.
//! let mut frames = stream::frames(&conn, framing);
//! for frame in &mut frames {
//!     let (kind, message) = frame.expect("a well-formed stream");
//!     assert_eq!(kind, FrameKind::ChannelData);
//!     assert_eq!(ChannelData::parse(message).unwrap().payload, b"hello");
//! }
//! let consumed = frames.consumed();
//! conn.drain(..consumed);
//! assert!(conn.is_empty());
//! ```

use std::fmt;
use std::ops::Range;

use crate::{ChannelData, ChannelNumber, CHANNEL_DATA_HEADER_LEN, HEADER_LEN, MAGIC_COOKIE};

/// The default for [`Framing::max_frame_len`]: 65,536 bytes.
///
/// No UDP datagram is longer than 65,535 bytes (the payload limit is 65,507 over IPv4 and
/// 65,527 over IPv6), and every STUN or ChannelData message that fits in one also fits in a
/// 65,536-byte frame: a STUN message is then at most 65,532 bytes (a multiple of four), and a
/// ChannelData message of at most 65,535 bytes occupies at most 65,536 once padded. So a stream
/// client is refused nothing a UDP client could send, and a read buffer of this size always
/// holds one whole frame. What the length fields allow beyond it, and no datagram could carry,
/// is refused: STUN messages of 65,540 to 65,552 bytes, ChannelData with more than 65,532
/// bytes of data.
pub const MAX_FRAME_LEN: usize = 65_536;

/// The rules a connection's stream is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// The largest frame accepted, in bytes on the stream: a STUN message's header and body,
    /// or a ChannelData message's header, data and padding. A larger length field closes the
    /// connection. Below 20, no STUN message is accepted at all.
    pub max_frame_len: usize,
    /// Accept ChannelData on RFC 5766's channel numbers 0x4000..=0x7FFF rather than
    /// RFC 8656's 0x4000..=0x4FFF, as [`crate::ChannelData::parse_rfc5766`] does.
    pub rfc5766_channels: bool,
}

impl Default for Framing {
    /// [`MAX_FRAME_LEN`] and RFC 8656's channel numbers.
    fn default() -> Self {
        Self {
            max_frame_len: MAX_FRAME_LEN,
            rfc5766_channels: false,
        }
    }
}

/// Which of the two kinds of message a frame holds (RFC 8656 §12: the first two bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// First two bits `00`: a STUN message.
    Stun,
    /// First two bits `01`: a ChannelData message.
    ChannelData,
}

/// Where one whole message lies at the front of a connection's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// STUN or ChannelData.
    pub kind: FrameKind,
    /// Length of the message: `buf[..len]` is the header and body, without padding.
    pub len: usize,
    /// Bytes the frame occupies on the stream: `len` plus a ChannelData message's padding.
    /// Remove this many from the front of the buffer once the message is handled.
    pub consumed: usize,
}

impl Frame {
    /// The message's range in the buffer that was decoded, `0..len`.
    pub fn range(self) -> Range<usize> {
        0..self.len
    }

    /// The message itself, cut from the buffer that was decoded.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than [`Frame::len`]: it must be the buffer, or a longer copy of it.
    pub fn message(self, buf: &[u8]) -> &[u8] {
        &buf[..self.len]
    }

    /// Bytes of padding after the message: 0 to 3 for ChannelData, 0 for STUN.
    pub fn padding(self) -> usize {
        self.consumed - self.len
    }
}

/// What [`decode_frame`] found at the front of a buffer that breaks no rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A whole message, with its padding, is buffered.
    Frame(Frame),
    /// The next frame is not complete: at least `missing` more bytes must arrive before it
    /// can be. An empty buffer needs 4, the smallest frame (an empty ChannelData message).
    NeedMore {
        /// A lower bound on the bytes still to arrive; exact once the length field is in.
        missing: usize,
    },
}

/// Why a connection's stream cannot be framed; the connection must be closed.
///
/// Each reason doubles as a metrics label ([`StreamError::label`]). [`StreamError::ALL`]
/// lists every reason at its own index, so a counter per reason can be an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum StreamError {
    /// The first two bits of a message are `10` or `11`: neither STUN nor ChannelData.
    /// Decided by the first byte.
    BadFirstByte = 0,
    /// A STUN header's length field is not a multiple of four (RFC 8489 §5).
    /// Decided by the first 4 bytes.
    UnalignedStunLength = 1,
    /// A STUN header's length field makes the message longer than
    /// [`Framing::max_frame_len`]. Decided by the first 4 bytes.
    OversizedStun = 2,
    /// Bytes 4..8 of a STUN header are not the magic cookie 0x2112A442. Decided by the first
    /// 8 bytes.
    ///
    /// RFC 8489 §5 requires the cookie in every message, and TURN (RFC 8656) extends
    /// RFC 8489's STUN, not RFC 3489's. coturn still answers classic RFC 3489 Binding requests, which have none, unless
    /// `no-stun-backward-compatibility` is set; tern does not: [`crate::Message::parse`]
    /// rejects such a message on UDP too, so letting it through the framing would only
    /// delay the drop. The cookie is also what tells a framed STUN message from a stream that
    /// merely starts with a `00` byte.
    BadMagicCookie = 3,
    /// A ChannelData header's length field makes the frame, padding included, longer than
    /// [`Framing::max_frame_len`]. Decided by the first 4 bytes.
    OversizedChannelData = 4,
    /// A ChannelData header names a channel outside the range [`Framing::rfc5766_channels`]
    /// selects: 0x4000..=0x4FFF (RFC 8656 §12), or 0x4000..=0x7FFF (RFC 5766), which a first
    /// byte of `01` always satisfies. Decided by the first 2 bytes.
    BadChannelNumber = 5,
}

impl StreamError {
    /// Every reason, each at the index `reason as usize`.
    pub const ALL: [StreamError; 6] = [
        Self::BadFirstByte,
        Self::UnalignedStunLength,
        Self::OversizedStun,
        Self::BadMagicCookie,
        Self::OversizedChannelData,
        Self::BadChannelNumber,
    ];

    /// The reason's index in [`StreamError::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A short, fixed metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::BadFirstByte => "bad_first_byte",
            Self::UnalignedStunLength => "stun_unaligned_length",
            Self::OversizedStun => "stun_oversized",
            Self::BadMagicCookie => "stun_bad_magic_cookie",
            Self::OversizedChannelData => "channel_data_oversized",
            Self::BadChannelNumber => "bad_channel_number",
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadFirstByte => "first two bits are neither 00 (STUN) nor 01 (ChannelData)",
            Self::UnalignedStunLength => "STUN length field is not a multiple of 4",
            Self::OversizedStun => "STUN message longer than the largest frame accepted",
            Self::BadMagicCookie => "STUN header without the magic cookie",
            Self::OversizedChannelData => {
                "ChannelData message longer than the largest frame accepted"
            }
            Self::BadChannelNumber => "ChannelData channel number out of range",
        })
    }
}

impl std::error::Error for StreamError {}

/// Looks at the bytes buffered so far for one connection, `buf`, whose first byte is the
/// start of a message, and returns the whole frame at its front, how many more bytes it needs,
/// or why the connection must be closed.
///
/// Checks are made in this order, each as soon as the bytes it needs are in: the first two
/// bits (1 byte); for ChannelData the channel number (2 bytes), then the length (4 bytes); for
/// STUN the length's alignment, then its size (4 bytes), then the magic cookie (8 bytes).
/// The body is not looked at: [`crate::Message::parse`] and [`crate::ChannelData::parse`]
/// read the message this returns. A ChannelData message's padding is skipped whatever its
/// value, but it must have arrived before the frame is complete.
#[inline]
pub fn decode_frame(buf: &[u8], framing: Framing) -> Result<Decoded, StreamError> {
    let Some(&first) = buf.first() else {
        return Ok(Decoded::NeedMore {
            missing: CHANNEL_DATA_HEADER_LEN,
        });
    };
    match first & 0xC0 {
        0x00 => decode_stun(buf, framing),
        0x40 => decode_channel_data(buf, framing),
        _ => Err(StreamError::BadFirstByte),
    }
}

fn decode_stun(buf: &[u8], framing: Framing) -> Result<Decoded, StreamError> {
    if buf.len() < 4 {
        return Ok(need(buf, HEADER_LEN));
    }
    let length = u16::from_be_bytes([buf[2], buf[3]]);
    if !length.is_multiple_of(4) {
        return Err(StreamError::UnalignedStunLength);
    }
    let len = HEADER_LEN + usize::from(length);
    if len > framing.max_frame_len {
        return Err(StreamError::OversizedStun);
    }
    if buf.len() >= 8 && u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE {
        return Err(StreamError::BadMagicCookie);
    }
    Ok(complete_or_need(buf, FrameKind::Stun, len, len))
}

fn decode_channel_data(buf: &[u8], framing: Framing) -> Result<Decoded, StreamError> {
    if buf.len() < 2 {
        return Ok(need(buf, CHANNEL_DATA_HEADER_LEN));
    }
    let number = u16::from_be_bytes([buf[0], buf[1]]);
    let valid = if framing.rfc5766_channels {
        ChannelNumber::new_rfc5766(number)
    } else {
        ChannelNumber::new(number)
    };
    if valid.is_err() {
        return Err(StreamError::BadChannelNumber);
    }
    if buf.len() < CHANNEL_DATA_HEADER_LEN {
        return Ok(need(buf, CHANNEL_DATA_HEADER_LEN));
    }
    let payload_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let consumed = channel_data_frame_len(payload_len);
    if consumed > framing.max_frame_len {
        return Err(StreamError::OversizedChannelData);
    }
    Ok(complete_or_need(
        buf,
        FrameKind::ChannelData,
        CHANNEL_DATA_HEADER_LEN + payload_len,
        consumed,
    ))
}

#[inline]
fn need(buf: &[u8], at_least: usize) -> Decoded {
    Decoded::NeedMore {
        missing: at_least - buf.len(),
    }
}

#[inline]
fn complete_or_need(buf: &[u8], kind: FrameKind, len: usize, consumed: usize) -> Decoded {
    if buf.len() < consumed {
        need(buf, consumed)
    } else {
        Decoded::Frame(Frame {
            kind,
            len,
            consumed,
        })
    }
}

/// Iterates the whole messages at the front of `buf`, in order, with [`decode_frame`].
///
/// Stops at the first incomplete frame, or after yielding the first error. Afterwards
/// [`Frames::consumed`] says how many bytes to remove from the front of the buffer.
pub fn frames(buf: &[u8], framing: Framing) -> Frames<'_> {
    Frames {
        buf,
        framing,
        consumed: 0,
        missing: None,
        failed: false,
    }
}

/// The iterator [`frames`] returns. Each item is a message's kind and its bytes (header and
/// body, no padding), borrowed from the buffer, or the reason to close the connection.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    buf: &'a [u8],
    framing: Framing,
    consumed: usize,
    missing: Option<usize>,
    failed: bool,
}

impl Frames<'_> {
    /// Bytes of the buffer taken by the frames yielded so far, padding included.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// After the iterator stopped at an incomplete frame: at least how many more bytes the
    /// frame needs ([`Decoded::NeedMore`]). `None` before that, and after an error.
    pub fn missing(&self) -> Option<usize> {
        self.missing
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<(FrameKind, &'a [u8]), StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.missing.is_some() {
            return None;
        }
        let rest = &self.buf[self.consumed..];
        match decode_frame(rest, self.framing) {
            Ok(Decoded::Frame(frame)) => {
                self.consumed += frame.consumed;
                Some(Ok((frame.kind, frame.message(rest))))
            }
            Ok(Decoded::NeedMore { missing }) => {
                self.missing = Some(missing);
                None
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for Frames<'_> {}

/// Bytes of zero padding that follow a ChannelData message with `payload_len` bytes of data on
/// a stream: 0 to 3, so the frame ends on a multiple of four (RFC 8656 §12.5). Over UDP there
/// is none. STUN messages need none: their length is always a multiple of four.
pub const fn channel_data_padding(payload_len: usize) -> usize {
    payload_len.next_multiple_of(4) - payload_len
}

/// Bytes a ChannelData message with `payload_len` bytes of data occupies on a stream: the
/// header, the data and the padding.
pub const fn channel_data_frame_len(payload_len: usize) -> usize {
    CHANNEL_DATA_HEADER_LEN + payload_len.next_multiple_of(4)
}

/// Appends a ChannelData message for a stream to `out`: the header, `payload`, and zero
/// padding to a multiple of four bytes. Returns the bytes appended,
/// [`channel_data_frame_len`]`(payload.len())`.
///
/// `out` is not cleared, so several messages can be queued in one send buffer.
///
/// # Panics
///
/// If `payload` is longer than 65,535 bytes, which no length field can describe. Callers
/// bound what they relay before framing it.
pub fn write_channel_data(channel: ChannelNumber, payload: &[u8], out: &mut Vec<u8>) -> usize {
    let len = u16::try_from(payload.len()).expect("ChannelData payload of at most 65,535 bytes");
    let mut header = [0u8; CHANNEL_DATA_HEADER_LEN];
    ChannelData::write_header(channel, len, &mut header);
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    let padding = channel_data_padding(payload.len());
    out.extend_from_slice(&[0u8; 3][..padding]);
    CHANNEL_DATA_HEADER_LEN + payload.len() + padding
}

/// Pads a ChannelData message framed in place for a stream. `frame` starts at the message's
/// header, which says `payload_len` bytes of data follow; the 0 to 3 bytes after the data are
/// zeroed. Returns the frame's length, [`channel_data_frame_len`]`(payload_len)`: send
/// `frame[..returned]`.
///
/// # Panics
///
/// If `frame` is shorter than the padded frame: leave up to 3 bytes of room after the data.
pub fn pad_channel_data(frame: &mut [u8], payload_len: usize) -> usize {
    let end = CHANNEL_DATA_HEADER_LEN + payload_len;
    let padded = channel_data_frame_len(payload_len);
    frame[end..padded].fill(0);
    padded
}

#[cfg(test)]
mod tests {
    use super::StreamError;

    #[test]
    fn every_reason_sits_at_its_index_with_a_unique_label() {
        for (i, reason) in StreamError::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?}");
            assert_eq!(reason.index(), i, "{reason:?}");
        }
        for (i, a) in StreamError::ALL.iter().enumerate() {
            for b in &StreamError::ALL[i + 1..] {
                assert_ne!(a.label(), b.label());
            }
        }
    }

    #[test]
    fn all_lists_every_reason() {
        // This match is exhaustive: a new reason does not compile until it is named here with
        // the next index, which reminds whoever adds it to put it in ALL at that index.
        let index = |reason: StreamError| match reason {
            StreamError::BadFirstByte => 0,
            StreamError::UnalignedStunLength => 1,
            StreamError::OversizedStun => 2,
            StreamError::BadMagicCookie => 3,
            StreamError::OversizedChannelData => 4,
            StreamError::BadChannelNumber => 5,
        };
        for (i, reason) in StreamError::ALL.iter().enumerate() {
            assert_eq!(index(*reason), i, "{reason:?}");
        }
    }
}
