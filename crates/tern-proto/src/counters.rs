//! Counters the core keeps as it works: plain integers in memory only its worker touches, so
//! counting a relayed packet costs an add, no atomic and no shared cache line. The I/O layer
//! copies them out now and then ([`crate::Server::counters`]) for metrics.

use tern_wire::Method;

use crate::addr::{Family, PerFamily, Transport, TransportLabel};
use crate::error::{AuthFailure, DropReason, RequestError, RequestResult};
use crate::guard::LockoutTrigger;
use crate::output::EndReason;

/// A count kept per client transport, by [`TransportLabel::index`].
pub type PerTransport<T> = [T; TransportLabel::ALL.len()];

/// A count kept per client transport, then per relayed address family (by
/// [`Family::index`]).
pub type PerTransportFamily<T> = PerTransport<PerFamily<T>>;

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

    /// The sum over every transport and family.
    pub fn total(counts: &PerTransportFamily<PathCount>) -> PathCount {
        let mut sum = PathCount::default();
        for c in counts.as_flattened() {
            sum.merge(c);
        }
        sum
    }
}

crate::label_enum! {
    /// The method of a request, a `method` label of [`Counters::requests`].
    pub enum RequestMethod {
        /// Binding.
        Binding => "binding",
        /// Allocate.
        Allocate => "allocate",
        /// Refresh.
        Refresh => "refresh",
        /// CreatePermission.
        CreatePermission => "create_permission",
        /// ChannelBind.
        ChannelBind => "channel_bind",
        /// Any other method (answered 400).
        Other => "other",
    }
}

impl RequestMethod {
    /// The label of `method`.
    pub fn of(method: Method) -> Self {
        match method {
            Method::BINDING => Self::Binding,
            Method::ALLOCATE => Self::Allocate,
            Method::REFRESH => Self::Refresh,
            Method::CREATE_PERMISSION => Self::CreatePermission,
            Method::CHANNEL_BIND => Self::ChannelBind,
            _ => Self::Other,
        }
    }
}

crate::label_enum! {
    /// Why authentication failed, an `auth_failures` label. The nonce challenge (the first
    /// 401 of every client) is not a failure and has none.
    pub enum AuthFailureReason {
        /// [`AuthFailure::UnknownUser`].
        UnknownUser => "unknown_user",
        /// [`AuthFailure::BadIntegrity`].
        BadIntegrity => "bad_integrity",
        /// [`AuthFailure::ExpiredRestCredential`].
        ExpiredRestCredential => "expired_rest_credential",
        /// [`RequestError::StaleNonce`]: routine, the client retries with the new nonce.
        StaleNonce => "stale_nonce",
    }
}

impl AuthFailureReason {
    /// The authentication failure `error` counts as, if any.
    pub fn of(error: RequestError) -> Option<Self> {
        match error {
            RequestError::Unauthorized(why) => match why {
                AuthFailure::Challenge => None,
                AuthFailure::UnknownUser => Some(Self::UnknownUser),
                AuthFailure::BadIntegrity => Some(Self::BadIntegrity),
                AuthFailure::ExpiredRestCredential => Some(Self::ExpiredRestCredential),
            },
            RequestError::StaleNonce => Some(Self::StaleNonce),
            _ => None,
        }
    }
}

/// Everything the core counts. Cumulative since the core started. Relayed data and
/// allocations are kept per client transport and per relayed address family
/// ([`PerTransportFamily`]: the family of the relayed endpoint the data went through), requests
/// per client transport ([`PerTransport`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// ChannelData from clients relayed to peers.
    pub channel_to_peer: PerTransportFamily<PathCount>,
    /// Peer data relayed to clients as ChannelData.
    pub channel_to_client: PerTransportFamily<PathCount>,
    /// Send indications from clients relayed to peers.
    pub send_to_peer: PerTransportFamily<PathCount>,
    /// Peer data relayed to clients as Data indications.
    pub data_to_client: PerTransportFamily<PathCount>,
    /// Datagrams dropped, by [`DropReason::index`].
    pub dropped: [u64; DropReason::ALL.len()],
    /// Requests answered, by transport, then [`RequestMethod::index`], then
    /// [`RequestResult::index`].
    pub requests: PerTransport<[[u64; RequestResult::ALL.len()]; RequestMethod::ALL.len()]>,
    /// Authentication failures, by [`AuthFailureReason::index`].
    pub auth_failures: [u64; AuthFailureReason::ALL.len()],
    /// Relayed addresses created, by transport and family: one per allocation, two for a
    /// dual allocation.
    pub allocations_created: PerTransportFamily<u64>,
    /// Relayed addresses ended, by transport, family, then [`EndReason::index`] (one
    /// family of a dual allocation may end before the other).
    pub allocations_ended: PerTransportFamily<[u64; EndReason::ALL.len()]>,
    /// Of those, the ones whose allocation had relayed no application data either way by
    /// then (failed ICE, or an allocation taken and never used), by transport, family,
    /// then [`EndReason::index`].
    pub allocations_ended_unrelayed: PerTransportFamily<[u64; EndReason::ALL.len()]>,
    /// Sources locked out after failed authentications, by [`LockoutTrigger::index`].
    pub lockouts: [u64; LockoutTrigger::ALL.len()],
    /// Of the ChannelData relayed, what a fast path (XDP) carried without the sockets:
    /// client → peer, then peer → client ([`crate::Server::handle_fast_path_traffic`]).
    pub fast_path: [PathCount; 2],
}

impl Counters {
    #[inline]
    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }

    pub(crate) fn request(
        &mut self,
        transport: Transport,
        method: Method,
        result: Result<(), RequestError>,
    ) {
        let r = result.map_or_else(RequestError::result, |()| RequestResult::Success);
        let t = transport.label().index();
        self.requests[t][RequestMethod::of(method).index()][r.index()] += 1;
        if let Some(a) = result.err().and_then(AuthFailureReason::of) {
            self.auth_failures[a.index()] += 1;
        }
    }

    pub(crate) fn created(&mut self, transport: Transport, family: Family) {
        self.allocations_created[transport.label().index()][family.index()] += 1;
    }

    pub(crate) fn ended(
        &mut self,
        transport: Transport,
        family: Family,
        reason: EndReason,
        relayed: bool,
    ) {
        let (t, f, r) = (transport.label().index(), family.index(), reason.index());
        self.allocations_ended[t][f][r] += 1;
        if !relayed {
            self.allocations_ended_unrelayed[t][f][r] += 1;
        }
    }

    /// Requests of `method` answered with `result`, over every transport.
    pub fn requests(&self, method: RequestMethod, result: RequestResult) -> u64 {
        self.requests
            .iter()
            .map(|t| t[method.index()][result.index()])
            .sum()
    }

    /// Relayed addresses created, over every transport and family.
    pub fn created_total(&self) -> u64 {
        self.allocations_created.as_flattened().iter().sum()
    }

    /// Relayed addresses ended for `reason`, over every transport and family.
    pub fn ended_total(&self, reason: EndReason) -> u64 {
        self.allocations_ended
            .as_flattened()
            .iter()
            .map(|t| t[reason.index()])
            .sum()
    }

    /// Relayed addresses ended for `reason` whose allocation had relayed nothing, over every
    /// transport and family.
    pub fn ended_unrelayed_total(&self, reason: EndReason) -> u64 {
        self.allocations_ended_unrelayed
            .as_flattened()
            .iter()
            .map(|t| t[reason.index()])
            .sum()
    }

    /// Relayed addresses live on `transport` in `family`: created less ended.
    pub fn live(&self, transport: TransportLabel, family: Family) -> u64 {
        let (t, f) = (transport.index(), family.index());
        let ended: u64 = self.allocations_ended[t][f].iter().sum();
        self.allocations_created[t][f].saturating_sub(ended)
    }

    /// Datagrams dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Authentication failures for `reason`.
    pub fn auth_failures(&self, reason: AuthFailureReason) -> u64 {
        self.auth_failures[reason.index()]
    }

    /// Lockouts started by `trigger`.
    pub fn lockouts(&self, trigger: LockoutTrigger) -> u64 {
        self.lockouts[trigger.index()]
    }

    /// Adds `other` into `self` (summing workers).
    pub fn merge(&mut self, other: &Counters) {
        for t in 0..TransportLabel::ALL.len() {
            for f in 0..Family::ALL.len() {
                self.channel_to_peer[t][f].merge(&other.channel_to_peer[t][f]);
                self.channel_to_client[t][f].merge(&other.channel_to_client[t][f]);
                self.send_to_peer[t][f].merge(&other.send_to_peer[t][f]);
                self.data_to_client[t][f].merge(&other.data_to_client[t][f]);
                self.allocations_created[t][f] += other.allocations_created[t][f];
                add_all(
                    &mut self.allocations_ended[t][f],
                    &other.allocations_ended[t][f],
                );
                add_all(
                    &mut self.allocations_ended_unrelayed[t][f],
                    &other.allocations_ended_unrelayed[t][f],
                );
            }
            add_all(
                self.requests[t].as_flattened_mut(),
                other.requests[t].as_flattened(),
            );
        }
        add_all(&mut self.dropped, &other.dropped);
        add_all(&mut self.auth_failures, &other.auth_failures);
        add_all(&mut self.lockouts, &other.lockouts);
        for (a, b) in self.fast_path.iter_mut().zip(&other.fast_path) {
            a.merge(b);
        }
    }
}

/// `a[i] += b[i]` for every `i`.
fn add_all(a: &mut [u64], b: &[u64]) {
    for (a, b) in a.iter_mut().zip(b) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label::assert_indexed;

    #[test]
    fn every_label_enum_is_indexed() {
        assert_indexed(&RequestMethod::ALL.map(|x| (x as usize, x.label())));
        assert_indexed(&RequestResult::ALL.map(|x| (x as usize, x.label())));
        assert_indexed(&AuthFailureReason::ALL.map(|x| (x as usize, x.label())));
        assert_indexed(&DropReason::ALL.map(|x| (x as usize, x.label())));
        assert_indexed(&EndReason::ALL.map(|x| (x as usize, x.label())));
        assert_indexed(&TransportLabel::ALL.map(|x| (x as usize, x.label())));
        assert_indexed(&LockoutTrigger::ALL.map(|x| (x as usize, x.label())));
    }

    #[test]
    fn every_result_label_is_success_or_its_code() {
        for r in RequestResult::ALL {
            match r {
                RequestResult::Success => assert_eq!(r.label(), "success"),
                _ => assert_eq!(r.label(), r.code().to_string()),
            }
        }
        assert_eq!(
            RequestError::TryAlternate.result(),
            RequestResult::TryAlternate
        );
    }

    #[test]
    fn a_300_is_counted_as_300() {
        let mut c = Counters::default();
        let udp = Transport::Udp {
            listener: crate::ListenerId(0),
        };
        c.request(udp, Method::ALLOCATE, Err(RequestError::TryAlternate));
        c.request(udp, Method::ALLOCATE, Ok(()));
        assert_eq!(
            c.requests(RequestMethod::Allocate, RequestResult::TryAlternate),
            1
        );
        assert_eq!(
            c.requests(RequestMethod::Allocate, RequestResult::Success),
            1
        );
    }
}
