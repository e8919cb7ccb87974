//! Counters the core keeps as it works: plain integers in memory only its worker touches, so
//! counting a relayed packet costs an add, no atomic and no shared cache line. The I/O layer
//! copies them out now and then ([`crate::Server::counters`]) for metrics.

use tern_wire::Method;

use crate::error::{AuthFailure, DropReason, RequestError};
use crate::server::EndReason;

/// Packets and bytes of application data on one path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathCount {
    /// Packets relayed.
    pub packets: u64,
    /// Payload bytes relayed (without TURN framing).
    pub bytes: u64,
}

impl PathCount {
    #[inline]
    pub(crate) fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }

    fn merge(&mut self, o: &PathCount) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// Methods counted in [`Counters::requests`], by index.
pub const METHODS: [&str; 6] = [
    "binding",
    "allocate",
    "refresh",
    "create_permission",
    "channel_bind",
    "other",
];
/// Results counted in [`Counters::requests`], by index: 0 is success, the rest error codes.
pub const RESULTS: [u16; 13] = [
    0, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 486, 508,
];
/// Drop reasons counted in [`Counters::dropped`], by index.
pub const DROP_REASONS: [DropReason; 8] = [
    DropReason::Malformed,
    DropReason::UnexpectedMessage,
    DropReason::NoAllocation,
    DropReason::NoPermission,
    DropReason::NoChannel,
    DropReason::DeniedPeer,
    DropReason::TooBig,
    DropReason::RateLimited,
];
/// Authentication failure reasons counted in [`Counters::auth_failures`], by index.
pub const AUTH_FAILURES: [&str; 4] = [
    "unknown_user",
    "bad_integrity",
    "expired_rest_credential",
    "stale_nonce",
];
/// End reasons counted in [`Counters::allocations_ended`], by index.
pub const END_REASONS: [EndReason; 3] =
    [EndReason::Expired, EndReason::Deleted, EndReason::Shutdown];

/// Everything the core counts. Cumulative since the core started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// ChannelData from clients relayed to peers.
    pub channel_to_peer: PathCount,
    /// Peer data relayed to clients as ChannelData.
    pub channel_to_client: PathCount,
    /// Send indications from clients relayed to peers.
    pub send_to_peer: PathCount,
    /// Peer data relayed to clients as Data indications.
    pub data_to_client: PathCount,
    /// Datagrams dropped, by [`DROP_REASONS`] index.
    pub dropped: [u64; DROP_REASONS.len()],
    /// Requests answered, by [`METHODS`] index then [`RESULTS`] index.
    pub requests: [[u64; 14]; 6],
    /// Authentication failures, by [`AUTH_FAILURES`] index.
    pub auth_failures: [u64; 4],
    /// Allocations created.
    pub allocations_created: u64,
    /// Allocations ended, by [`END_REASONS`] index.
    pub allocations_ended: [u64; 3],
}

impl Counters {
    #[inline]
    pub(crate) fn drop(&mut self, reason: DropReason) {
        let i = DROP_REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        self.dropped[i] += 1;
    }

    pub(crate) fn request(&mut self, method: Method, result: Result<(), RequestError>) {
        let m = match method {
            Method::BINDING => 0,
            Method::ALLOCATE => 1,
            Method::REFRESH => 2,
            Method::CREATE_PERMISSION => 3,
            Method::CHANNEL_BIND => 4,
            _ => 5,
        };
        let code = result.err().map_or(0, RequestError::code);
        let r = RESULTS.iter().position(|c| *c == code).unwrap_or(0);
        self.requests[m][r] += 1;
        let auth = match result {
            Err(RequestError::Unauthorized(AuthFailure::UnknownUser)) => Some(0),
            Err(RequestError::Unauthorized(AuthFailure::BadIntegrity)) => Some(1),
            Err(RequestError::Unauthorized(AuthFailure::ExpiredRestCredential)) => Some(2),
            Err(RequestError::StaleNonce) => Some(3),
            _ => None,
        };
        if let Some(a) = auth {
            self.auth_failures[a] += 1;
        }
    }

    pub(crate) fn ended(&mut self, reason: EndReason) {
        let i = END_REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        self.allocations_ended[i] += 1;
    }

    /// Adds `other` into `self` (summing workers).
    pub fn merge(&mut self, other: &Counters) {
        self.channel_to_peer.merge(&other.channel_to_peer);
        self.channel_to_client.merge(&other.channel_to_client);
        self.send_to_peer.merge(&other.send_to_peer);
        self.data_to_client.merge(&other.data_to_client);
        for (a, b) in self.dropped.iter_mut().zip(other.dropped) {
            *a += b;
        }
        for (ra, rb) in self.requests.iter_mut().zip(other.requests) {
            for (a, b) in ra.iter_mut().zip(rb) {
                *a += b;
            }
        }
        for (a, b) in self.auth_failures.iter_mut().zip(other.auth_failures) {
            *a += b;
        }
        self.allocations_created += other.allocations_created;
        for (a, b) in self
            .allocations_ended
            .iter_mut()
            .zip(other.allocations_ended)
        {
            *a += b;
        }
    }
}
