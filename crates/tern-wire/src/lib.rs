//! The STUN (RFC 8489), TURN (RFC 8656) and ChannelData codec of tern.
//!
//! Everything here is a zero-copy view over `&[u8]` or a writer into a buffer the caller owns.
//! There is no runtime, no socket and no clock.
//!
//! ```
//! use tern_wire::{attr, Class, Message, MessageWriter, Method, MessageType, TransactionId};
//!
//! // Build a Binding request with a FINGERPRINT ...
//! let mut buf = Vec::new();
//! let tid = TransactionId([7; 12]);
//! let mut w = MessageWriter::new(&mut buf, MessageType::new(Method::BINDING, Class::Request), tid);
//! w.fingerprint();
//! let len = w.finish();
//!
//! // ... and read it back.
//! let msg = Message::parse(&buf[..len]).unwrap();
//! assert_eq!(msg.method(), Method::BINDING);
//! assert_eq!(msg.class(), Class::Request);
//! assert_eq!(msg.check_fingerprint(), Some(true));
//! assert!(msg.get(attr::XOR_MAPPED_ADDRESS).is_none());
//! ```

pub mod attr;
mod channel_data;
mod error;
mod integrity;
mod message;
pub mod proxy;
pub mod stream;
mod writer;

pub use channel_data::{ChannelData, ChannelNumber, CHANNEL_DATA_HEADER_LEN};
pub use error::WireError;
pub use integrity::{fingerprint_of, Integrity};
pub use message::{Class, Message, MessageType, Method, RawAttr, TransactionId};
pub use writer::{
    frame_data_indication, MessageWriter, DATA_INDICATION_HEADROOM, DATA_INDICATION_MAX_PAYLOAD,
    DATA_INDICATION_TAILROOM,
};

/// The fixed value in bytes 4..8 of every RFC 5389+ STUN message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Length of the STUN message header.
pub const HEADER_LEN: usize = 20;

/// What the first byte of a datagram on a TURN listening port says it is (RFC 8656 §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// First two bits `00`: a STUN message.
    Stun,
    /// First two bits `01`: a ChannelData message.
    ChannelData,
    /// Anything else: not for us.
    Other,
}

/// Classifies a datagram by its first byte without parsing it.
#[inline]
pub fn classify(buf: &[u8]) -> PacketKind {
    match buf.first() {
        Some(b) if b & 0xC0 == 0x00 => PacketKind::Stun,
        Some(b) if b & 0xC0 == 0x40 => PacketKind::ChannelData,
        _ => PacketKind::Other,
    }
}
