//! Which peers a client may reach through the relay. (Being written.)
use std::net::IpAddr;

/// An inclusive range of IP addresses, as coturn's `allowed-peer-ip`/`denied-peer-ip` take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    /// First address.
    pub start: IpAddr,
    /// Last address.
    pub end: IpAddr,
}

/// Peer filtering configuration.
#[derive(Debug, Clone, Default)]
pub struct PeerFilterConfig {
    /// Allow 127.0.0.0/8 and ::1 (coturn's `allow-loopback-peers`).
    pub allow_loopback: bool,
    /// Refuse multicast peers even when otherwise allowed (coturn's `no-multicast-peers`).
    pub no_multicast: bool,
    /// Ranges allowed even though the defaults refuse them (`allowed-peer-ip`).
    pub allowed: Vec<IpRange>,
    /// Ranges refused (`denied-peer-ip`).
    pub denied: Vec<IpRange>,
}
