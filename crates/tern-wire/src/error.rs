use std::fmt;

/// What was malformed in a datagram, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than the fixed header of its kind.
    TooShort { needed: usize, got: usize },
    /// The first two bits are not `00`: not a STUN message.
    NotStun,
    /// Bytes 4..8 are not the magic cookie.
    BadMagicCookie,
    /// The header's length field is not a multiple of four.
    UnalignedLength { length: u16 },
    /// The header's length field disagrees with the datagram's size.
    LengthMismatch { header: usize, datagram: usize },
    /// An attribute's declared length runs past the end of the message.
    AttributeOverrun { attr_type: u16, offset: usize },
    /// An attribute's value has a length its type does not allow.
    BadAttributeLength { attr_type: u16, len: usize },
    /// An address attribute names a family other than IPv4 (1) or IPv6 (2).
    BadAddressFamily { family: u8 },
    /// A text attribute is not UTF-8.
    NotUtf8 { attr_type: u16 },
    /// An ERROR-CODE attribute with a class outside 3..=6 or a number over 99.
    BadErrorCode,
    /// A ChannelData message whose channel number lies outside 0x4000..=0x4FFF.
    BadChannelNumber { number: u16 },
    /// A ChannelData message whose length field claims more bytes than the datagram holds.
    ChannelDataOverrun { length: usize, available: usize },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { needed, got } => {
                write!(f, "message too short: {got} bytes, need {needed}")
            }
            Self::NotStun => f.write_str("first two bits are not 00: not a STUN message"),
            Self::BadMagicCookie => f.write_str("magic cookie missing"),
            Self::UnalignedLength { length } => {
                write!(f, "length field {length} is not a multiple of 4")
            }
            Self::LengthMismatch { header, datagram } => {
                write!(
                    f,
                    "header says {header} bytes but the datagram has {datagram}"
                )
            }
            Self::AttributeOverrun { attr_type, offset } => {
                write!(
                    f,
                    "attribute {attr_type:#06x} at offset {offset} runs past the end"
                )
            }
            Self::BadAttributeLength { attr_type, len } => {
                write!(f, "attribute {attr_type:#06x} has invalid length {len}")
            }
            Self::BadAddressFamily { family } => write!(f, "unknown address family {family:#04x}"),
            Self::NotUtf8 { attr_type } => write!(f, "attribute {attr_type:#06x} is not UTF-8"),
            Self::BadErrorCode => f.write_str("malformed ERROR-CODE"),
            Self::BadChannelNumber { number } => {
                write!(f, "channel number {number:#06x} out of range")
            }
            Self::ChannelDataOverrun { length, available } => {
                write!(
                    f,
                    "ChannelData claims {length} bytes but {available} are present"
                )
            }
        }
    }
}

impl std::error::Error for WireError {}
