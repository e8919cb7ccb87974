use std::fmt;

/// Why the first bytes of a connection are not a valid PROXY header; the connection must be
/// closed.
///
/// Each reason doubles as a metrics label ([`ProxyError::label`]). [`ProxyError::ALL`] lists
/// every reason at its own index, so a counter per reason can be an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum ProxyError {
    /// The connection starts with neither `PROXY ` nor the version 2 signature. Decided by
    /// the first byte that differs from both.
    NotProxy = 0,
    /// No CRLF within the first [`super::V1_MAX_LEN`] bytes of a version 1 line.
    V1TooLong = 1,
    /// A version 1 line's first CR is not followed by LF, or an LF comes without a CR before
    /// it: the specification tolerates no single CR or LF as the end of the line.
    V1BadLineEnd = 2,
    /// The protocol field of a version 1 line is not `TCP4`, `TCP6` or `UNKNOWN`.
    V1BadProtocol = 3,
    /// A `TCP4` or `TCP6` line does not have exactly four fields after the protocol, each
    /// after exactly one space.
    V1BadSyntax = 4,
    /// A version 1 address is not an address of the family the protocol names, written as
    /// the specification asks (IPv4: four decimal numbers without leading zeros).
    V1BadAddress = 5,
    /// A version 1 port is not a decimal number in 0..=65535 without leading zeros.
    V1BadPort = 6,
    /// The high nibble of byte 13 of a version 2 header is not 2.
    V2BadVersion = 7,
    /// The low nibble of byte 13 is neither `LOCAL` (0) nor `PROXY` (1).
    V2BadCommand = 8,
    /// In a `PROXY` header, the family nibble of byte 14 is above `AF_UNIX` (3) or the
    /// transport nibble above `DGRAM` (2).
    V2BadFamily = 9,
    /// The length in bytes 15..16 makes the header longer than
    /// [`super::Limits::max_v2_len`].
    V2TooLong = 10,
    /// The length is shorter than the address block of the family: 12 bytes for `AF_INET`,
    /// 36 for `AF_INET6`, 216 for `AF_UNIX`. Decided by the 16 fixed bytes.
    V2ShortAddresses = 11,
    /// A TLV after the addresses runs past the end of the header.
    V2BadTlv = 12,
}

impl ProxyError {
    /// Every reason, each at the index `reason as usize`.
    pub const ALL: [ProxyError; 13] = [
        Self::NotProxy,
        Self::V1TooLong,
        Self::V1BadLineEnd,
        Self::V1BadProtocol,
        Self::V1BadSyntax,
        Self::V1BadAddress,
        Self::V1BadPort,
        Self::V2BadVersion,
        Self::V2BadCommand,
        Self::V2BadFamily,
        Self::V2TooLong,
        Self::V2ShortAddresses,
        Self::V2BadTlv,
    ];

    /// The reason's index in [`ProxyError::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A short, fixed metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::NotProxy => "not_proxy",
            Self::V1TooLong => "v1_too_long",
            Self::V1BadLineEnd => "v1_bad_line_end",
            Self::V1BadProtocol => "v1_bad_protocol",
            Self::V1BadSyntax => "v1_bad_syntax",
            Self::V1BadAddress => "v1_bad_address",
            Self::V1BadPort => "v1_bad_port",
            Self::V2BadVersion => "v2_bad_version",
            Self::V2BadCommand => "v2_bad_command",
            Self::V2BadFamily => "v2_bad_family",
            Self::V2TooLong => "v2_too_long",
            Self::V2ShortAddresses => "v2_short_addresses",
            Self::V2BadTlv => "v2_bad_tlv",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotProxy => "the connection does not start with a PROXY protocol header",
            Self::V1TooLong => "PROXY v1 line without CRLF in its first 107 bytes",
            Self::V1BadLineEnd => "PROXY v1 line ends with a lone CR or LF",
            Self::V1BadProtocol => "PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN",
            Self::V1BadSyntax => "PROXY v1 line does not have four single-space separated fields",
            Self::V1BadAddress => "PROXY v1 address is malformed or of the wrong family",
            Self::V1BadPort => "PROXY v1 port is malformed",
            Self::V2BadVersion => "PROXY v2 header with a version other than 2",
            Self::V2BadCommand => "PROXY v2 command is neither LOCAL nor PROXY",
            Self::V2BadFamily => "PROXY v2 address family or transport is unassigned",
            Self::V2TooLong => "PROXY v2 header longer than the largest accepted",
            Self::V2ShortAddresses => "PROXY v2 length shorter than its address block",
            Self::V2BadTlv => "PROXY v2 TLV runs past the end of the header",
        })
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::ProxyError;

    #[test]
    fn every_reason_sits_at_its_index_with_a_unique_label() {
        for (i, reason) in ProxyError::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
        }
        for (i, a) in ProxyError::ALL.iter().enumerate() {
            for b in &ProxyError::ALL[i + 1..] {
                assert_ne!(a.label(), b.label());
                assert_ne!(a.to_string(), b.to_string());
            }
        }
    }

    #[test]
    fn all_lists_every_reason() {
        // Exhaustive: a new reason does not compile until it is named here with the next
        // index, which reminds whoever adds it to put it in ALL at that index.
        let index = |reason: ProxyError| match reason {
            ProxyError::NotProxy => 0,
            ProxyError::V1TooLong => 1,
            ProxyError::V1BadLineEnd => 2,
            ProxyError::V1BadProtocol => 3,
            ProxyError::V1BadSyntax => 4,
            ProxyError::V1BadAddress => 5,
            ProxyError::V1BadPort => 6,
            ProxyError::V2BadVersion => 7,
            ProxyError::V2BadCommand => 8,
            ProxyError::V2BadFamily => 9,
            ProxyError::V2TooLong => 10,
            ProxyError::V2ShortAddresses => 11,
            ProxyError::V2BadTlv => 12,
        };
        for (i, reason) in ProxyError::ALL.iter().enumerate() {
            assert_eq!(index(*reason), i, "{reason:?}");
        }
    }
}
