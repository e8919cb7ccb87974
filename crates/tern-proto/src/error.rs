use std::fmt;

/// Why a request failed; each variant maps to exactly one STUN error code, so building the
/// response is mechanical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The server is draining and names another to use (300, with ALTERNATE-SERVER).
    TryAlternate,
    /// A required attribute is absent (400).
    MissingAttribute(u16),
    /// An attribute's value is malformed (400).
    MalformedAttribute(u16),
    /// CHANNEL-NUMBER outside 0x4000..=0x4FFF (400).
    BadChannelNumber,
    /// The channel is bound to another peer, or the peer to another channel (400).
    ChannelConflict,
    /// A request with a method this server does not serve (400).
    UnknownMethod,
    /// RESERVATION-TOKEN together with EVEN-PORT (400).
    ReservationWithEvenPort,
    /// No or wrong credentials (401).
    Unauthorized(AuthFailure),
    /// The peer address is refused by the peer filter (403).
    Forbidden,
    /// Unknown comprehension-required attributes (420).
    UnknownAttributes,
    /// An Allocate on a 5-tuple that has an allocation, or a request on one that has none (437).
    AllocationMismatch,
    /// The nonce is expired or not ours (438).
    StaleNonce,
    /// REQUESTED-ADDRESS-FAMILY asks for a family this server does not relay (440).
    AddressFamilyNotSupported,
    /// A request on an allocation with another user's credentials (441).
    WrongCredentials,
    /// REQUESTED-TRANSPORT other than UDP (442).
    UnsupportedTransport,
    /// XOR-PEER-ADDRESS of another family than the relayed address (443).
    PeerAddressFamilyMismatch,
    /// `user-quota` or `total-quota` reached (486).
    QuotaReached,
    /// No relay port left, or too many permissions or channels on one allocation (508).
    InsufficientCapacity,
}

/// Why authentication failed; a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The request carried no MESSAGE-INTEGRITY: the normal first round trip.
    Challenge,
    /// No static user of that name and not a REST username.
    UnknownUser,
    /// The REST username's expiry timestamp has passed.
    ExpiredRestCredential,
    /// The MAC did not match any candidate key.
    BadIntegrity,
}

impl AuthFailure {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Challenge => "challenge",
            Self::UnknownUser => "unknown_user",
            Self::ExpiredRestCredential => "expired_rest_credential",
            Self::BadIntegrity => "bad_integrity",
        }
    }
}

impl RequestError {
    /// The STUN error code.
    pub fn code(self) -> u16 {
        match self {
            Self::MissingAttribute(_)
            | Self::MalformedAttribute(_)
            | Self::BadChannelNumber
            | Self::ChannelConflict
            | Self::UnknownMethod
            | Self::ReservationWithEvenPort => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden => 403,
            Self::UnknownAttributes => 420,
            Self::AllocationMismatch => 437,
            Self::StaleNonce => 438,
            Self::AddressFamilyNotSupported => 440,
            Self::WrongCredentials => 441,
            Self::UnsupportedTransport => 442,
            Self::PeerAddressFamilyMismatch => 443,
            Self::QuotaReached => 486,
            Self::InsufficientCapacity => 508,
            Self::TryAlternate => 300,
        }
    }

    /// The reason phrase RFC 8489/8656 suggest.
    pub fn reason(self) -> &'static str {
        match self.code() {
            300 => "Try Alternate",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            420 => "Unknown Attribute",
            437 => "Allocation Mismatch",
            438 => "Stale Nonce",
            440 => "Address Family not Supported",
            441 => "Wrong Credentials",
            442 => "Unsupported Transport Protocol",
            443 => "Peer Address Family Mismatch",
            486 => "Allocation Quota Reached",
            _ => "Insufficient Capacity",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())?;
        match self {
            Self::MissingAttribute(t) => write!(f, ": missing attribute {t:#06x}"),
            Self::MalformedAttribute(t) => write!(f, ": malformed attribute {t:#06x}"),
            Self::Unauthorized(why) => write!(f, ": {}", why.as_str()),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for RequestError {}

/// Why a datagram was dropped without an answer; a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// Not STUN and not ChannelData, or failed to parse, or a bad FINGERPRINT.
    Malformed,
    /// A STUN response or an indication other than Send from a client.
    UnexpectedMessage,
    /// ChannelData or a Send indication from a 5-tuple with no allocation; or data from a
    /// peer to a relay port with no allocation.
    NoAllocation,
    /// No permission for the peer's IP.
    NoPermission,
    /// ChannelData on a channel that is not bound.
    NoChannel,
    /// A Send indication to a peer the filter refuses.
    DeniedPeer,
    /// A payload too big to frame for the client.
    TooBig,
    /// Over the allocation's bandwidth limit (`max-bps`) in its direction.
    RateLimited,
}

impl DropReason {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnexpectedMessage => "unexpected_message",
            Self::NoAllocation => "no_allocation",
            Self::NoPermission => "no_permission",
            Self::NoChannel => "no_channel",
            Self::DeniedPeer => "denied_peer",
            Self::TooBig => "too_big",
            Self::RateLimited => "rate_limited",
        }
    }
}
