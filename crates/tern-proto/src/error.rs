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
    /// RESERVATION-TOKEN together with REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY
    /// (400, RFC 8656 §7.2): the reservation fixes the family.
    ReservationWithAddressFamily,
    /// REQUESTED-ADDRESS-FAMILY together with ADDITIONAL-ADDRESS-FAMILY (400, RFC 8656 §7.2).
    BothAddressFamilies,
    /// ADDITIONAL-ADDRESS-FAMILY naming anything but IPv6 (400, RFC 8656 §7.2: IPv4 is
    /// implied and may not be asked for again).
    AdditionalFamilyNotIpv6,
    /// No or wrong credentials (401).
    Unauthorized(AuthFailure),
    /// The peer address is refused by the peer filter (403).
    Forbidden,
    /// An Allocate by a user an operator revoked with a refusal period that has not passed
    /// (403, [`crate::Server::revoke`]).
    UserRefused,
    /// Unknown comprehension-required attributes (420).
    UnknownAttributes,
    /// An Allocate on a 5-tuple that has an allocation, or a request on one that has none (437).
    AllocationMismatch,
    /// The nonce is expired or not ours (438).
    StaleNonce,
    /// REQUESTED-ADDRESS-FAMILY (or `allocation-default-address-family`) asks for a family
    /// this server does not relay in (440).
    AddressFamilyNotSupported,
    /// A request on an allocation with another user's credentials (441).
    WrongCredentials,
    /// REQUESTED-TRANSPORT other than UDP (442).
    UnsupportedTransport,
    /// XOR-PEER-ADDRESS of a family the allocation has no relayed address in, or a Refresh
    /// whose REQUESTED-ADDRESS-FAMILY names such a family (443).
    PeerAddressFamilyMismatch,
    /// `user-quota` or `total-quota` reached (486).
    QuotaReached,
    /// No relay port left, or too many permissions or channels on one allocation (508).
    InsufficientCapacity,
}

/// Why authentication failed (the `auth_failures` label is
/// [`crate::counters::AuthFailureReason`]).
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
    /// What the response says: the error code, also the `result` label of the request.
    pub fn result(self) -> RequestResult {
        match self {
            Self::TryAlternate => RequestResult::TryAlternate,
            Self::MissingAttribute(_)
            | Self::MalformedAttribute(_)
            | Self::BadChannelNumber
            | Self::ChannelConflict
            | Self::UnknownMethod
            | Self::ReservationWithEvenPort
            | Self::ReservationWithAddressFamily
            | Self::BothAddressFamilies
            | Self::AdditionalFamilyNotIpv6 => RequestResult::BadRequest,
            Self::Unauthorized(_) => RequestResult::Unauthorized,
            Self::Forbidden | Self::UserRefused => RequestResult::Forbidden,
            Self::UnknownAttributes => RequestResult::UnknownAttribute,
            Self::AllocationMismatch => RequestResult::AllocationMismatch,
            Self::StaleNonce => RequestResult::StaleNonce,
            Self::AddressFamilyNotSupported => RequestResult::AddressFamilyNotSupported,
            Self::WrongCredentials => RequestResult::WrongCredentials,
            Self::UnsupportedTransport => RequestResult::UnsupportedTransport,
            Self::PeerAddressFamilyMismatch => RequestResult::PeerAddressFamilyMismatch,
            Self::QuotaReached => RequestResult::AllocationQuotaReached,
            Self::InsufficientCapacity => RequestResult::InsufficientCapacity,
        }
    }

    /// The STUN error code.
    pub fn code(self) -> u16 {
        self.result().code()
    }

    /// The reason phrase RFC 8489/8656 suggest.
    pub fn reason(self) -> &'static str {
        self.result().reason()
    }
}

crate::label_enum! {
    /// How a request was answered: success or one STUN error code. The `result` label of
    /// [`crate::Counters::requests`] is the code itself (`"300"`, `"400"`, ...).
    pub enum RequestResult {
        /// A success response.
        Success => "success",
        /// 300 Try Alternate.
        TryAlternate => "300",
        /// 400 Bad Request.
        BadRequest => "400",
        /// 401 Unauthorized.
        Unauthorized => "401",
        /// 403 Forbidden.
        Forbidden => "403",
        /// 420 Unknown Attribute.
        UnknownAttribute => "420",
        /// 437 Allocation Mismatch.
        AllocationMismatch => "437",
        /// 438 Stale Nonce.
        StaleNonce => "438",
        /// 440 Address Family not Supported.
        AddressFamilyNotSupported => "440",
        /// 441 Wrong Credentials.
        WrongCredentials => "441",
        /// 442 Unsupported Transport Protocol.
        UnsupportedTransport => "442",
        /// 443 Peer Address Family Mismatch.
        PeerAddressFamilyMismatch => "443",
        /// 486 Allocation Quota Reached.
        AllocationQuotaReached => "486",
        /// 508 Insufficient Capacity.
        InsufficientCapacity => "508",
    }
}

impl RequestResult {
    /// The STUN error code; 0 for [`RequestResult::Success`], which has none.
    pub const fn code(self) -> u16 {
        match self {
            Self::Success => 0,
            Self::TryAlternate => 300,
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::UnknownAttribute => 420,
            Self::AllocationMismatch => 437,
            Self::StaleNonce => 438,
            Self::AddressFamilyNotSupported => 440,
            Self::WrongCredentials => 441,
            Self::UnsupportedTransport => 442,
            Self::PeerAddressFamilyMismatch => 443,
            Self::AllocationQuotaReached => 486,
            Self::InsufficientCapacity => 508,
        }
    }

    /// The reason phrase RFC 8489/8656 suggest.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::TryAlternate => "Try Alternate",
            Self::BadRequest => "Bad Request",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::UnknownAttribute => "Unknown Attribute",
            Self::AllocationMismatch => "Allocation Mismatch",
            Self::StaleNonce => "Stale Nonce",
            Self::AddressFamilyNotSupported => "Address Family not Supported",
            Self::WrongCredentials => "Wrong Credentials",
            Self::UnsupportedTransport => "Unsupported Transport Protocol",
            Self::PeerAddressFamilyMismatch => "Peer Address Family Mismatch",
            Self::AllocationQuotaReached => "Allocation Quota Reached",
            Self::InsufficientCapacity => "Insufficient Capacity",
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

crate::label_enum! {
    /// Why a datagram was dropped without an answer; a metrics label.
    #[non_exhaustive]
    pub enum DropReason {
        /// Not STUN and not ChannelData, or failed to parse, or a bad FINGERPRINT.
        Malformed => "malformed",
        /// A STUN response or an indication other than Send from a client.
        UnexpectedMessage => "unexpected_message",
        /// ChannelData or a Send indication from a 5-tuple with no allocation; or data from a
        /// peer to a relay port with no allocation.
        NoAllocation => "no_allocation",
        /// No permission for the peer's IP.
        NoPermission => "no_permission",
        /// ChannelData on a channel that is not bound.
        NoChannel => "no_channel",
        /// A Send indication to a peer the filter refuses.
        DeniedPeer => "denied_peer",
        /// A payload too big to frame for the client.
        TooBig => "too_big",
        /// Over the allocation's bandwidth limit (`max-bps`) in its direction.
        RateLimited => "rate_limited",
        /// Relayed data for a client on a stream connection whose write queue is full (the
        /// client reads more slowly than its peers send). Counted by the I/O layer
        /// ([`crate::Server::count_drops`]).
        ClientBacklog => "client_backlog",
        /// A request that did not authenticate, from a UDP source over its rate of
        /// unauthenticated answers ([`crate::GuardConfig::unauthorized_per_second`]).
        UnauthorizedRateLimited => "unauthorized_rate_limited",
        /// A request from a source locked out after failed authentications
        /// ([`crate::GuardConfig::auth_failures`]).
        LockedOut => "locked_out",
    }
}
