use crate::WireError;

/// Size of the ChannelData header: channel number and length.
pub const CHANNEL_DATA_HEADER_LEN: usize = 4;

/// A channel number a client may bind: RFC 8656 §12 allows only 0x4000 through 0x4FFF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelNumber(u16);

impl ChannelNumber {
    /// The lowest valid channel number.
    pub const MIN: u16 = 0x4000;
    /// The highest valid channel number.
    pub const MAX: u16 = 0x4FFF;

    /// Validates a channel number.
    pub fn new(n: u16) -> Result<Self, WireError> {
        if (Self::MIN..=Self::MAX).contains(&n) {
            Ok(Self(n))
        } else {
            Err(WireError::BadChannelNumber { number: n })
        }
    }

    /// Validates a channel number by RFC 5766's older rule, 0x4000 through 0x7FFF, which
    /// coturn and its clients still use (`turnutils_uclient` picks channels at random in it).
    pub fn new_rfc5766(n: u16) -> Result<Self, WireError> {
        if (Self::MIN..=0x7FFF).contains(&n) {
            Ok(Self(n))
        } else {
            Err(WireError::BadChannelNumber { number: n })
        }
    }

    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }
}

/// A ChannelData message (RFC 8656 §12.4): a channel number, a length, and application data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel.
    pub channel: ChannelNumber,
    /// The application data, without padding.
    pub payload: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parses a ChannelData message received in a UDP datagram. Padding is optional over UDP
    /// and ignored, as is anything after the claimed length.
    #[inline]
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        Self::parse_with(buf, ChannelNumber::new)
    }

    /// Like [`ChannelData::parse`], accepting RFC 5766's channel numbers 0x4000..=0x7FFF.
    #[inline]
    pub fn parse_rfc5766(buf: &'a [u8]) -> Result<Self, WireError> {
        Self::parse_with(buf, ChannelNumber::new_rfc5766)
    }

    #[inline]
    fn parse_with(
        buf: &'a [u8],
        number: fn(u16) -> Result<ChannelNumber, WireError>,
    ) -> Result<Self, WireError> {
        if buf.len() < CHANNEL_DATA_HEADER_LEN {
            return Err(WireError::TooShort {
                needed: CHANNEL_DATA_HEADER_LEN,
                got: buf.len(),
            });
        }
        let channel = number(u16::from_be_bytes([buf[0], buf[1]]))?;
        let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        let available = buf.len() - CHANNEL_DATA_HEADER_LEN;
        if length > available {
            return Err(WireError::ChannelDataOverrun { length, available });
        }
        Ok(Self {
            channel,
            payload: &buf[CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + length],
        })
    }

    /// Writes a ChannelData header for `len` bytes of data on `channel` into `out`.
    /// Over UDP no padding follows (RFC 8656 §12.5).
    #[inline]
    pub fn write_header(channel: ChannelNumber, len: u16, out: &mut [u8; CHANNEL_DATA_HEADER_LEN]) {
        out[0..2].copy_from_slice(&channel.0.to_be_bytes());
        out[2..4].copy_from_slice(&len.to_be_bytes());
    }
}
