//! Allocate and Refresh (RFC 8656 §7 and §8): an allocation begins with its relay claims
//! queued before the reply, and a Refresh with LIFETIME 0 ends it (or one family of it)
//! after the reply.
//!
//! # Address families (RFC 8656 §7.2, RFC 6156)
//!
//! An allocation relays in one family or, asked with ADDITIONAL-ADDRESS-FAMILY (IPv6), in
//! both: a dual allocation, with one relayed endpoint per family, each with its own port
//! from its family's pool and its own lifetime.
//! - REQUESTED-ADDRESS-FAMILY picks the one family; a family the server has no relayed IP
//!   for gets 440. Without it the family is [`crate::DefaultFamily`]'s (IPv4 unless
//!   configured otherwise).
//! - ADDITIONAL-ADDRESS-FAMILY IPv6 asks for IPv4 and IPv6 (also at 0x8032, the draft
//!   codepoint coturn's tools still send; the answer's ADDRESS-ERROR-CODE then goes at
//!   coturn's 0x8033). A family the server cannot give
//!   (no relayed IP: 440; its pool empty: 508) is named in ADDRESS-ERROR-CODE of a success
//!   that carries the other; with neither, the error itself.
//! - Both attributes, or ADDITIONAL-ADDRESS-FAMILY with anything but IPv6: 400. With
//!   RESERVATION-TOKEN, neither may appear (the reservation fixes the families): 400.
//! - A Refresh with REQUESTED-ADDRESS-FAMILY refreshes (or, with LIFETIME 0, deletes) only
//!   that family's relayed endpoint; a family the allocation lacks gets 443.

use std::time::{Duration, Instant};

use tern_wire::{attr, Message};

use crate::addr::{Family, FiveTuple, Relayed};
use crate::allocation::{Allocation, Traffic};
use crate::error::{RequestError, RequestResult};
use crate::output::{Event, Output};
use crate::rate::RateState;
use crate::request::requested_family;
use crate::response::Success;
use crate::server::{Server, Timer};
use crate::shared::{Admitted, PortRequest};
use crate::slab::AllocationId;

/// The families a new allocation asks for, the one it asks for that the server does not
/// relay in (for ADDRESS-ERROR-CODE 440), and whether it asked for two at coturn's draft
/// codepoint (then ADDRESS-ERROR-CODE goes at the draft codepoint too).
#[derive(Debug, Clone, Copy)]
struct Families {
    wanted: [Option<Family>; Family::ALL.len()],
    unsupported: Option<Family>,
    draft: bool,
}

impl Families {
    fn list(&self) -> impl Iterator<Item = Family> + '_ {
        self.wanted.iter().flatten().copied()
    }
}

impl Server {
    /// The lifetime to grant for a requested one (RFC 8656 §7.2 and §8.2): the default unless
    /// more was asked, capped at the maximum; zero stays zero only for Refresh.
    fn desired_lifetime(&self, msg: &Message<'_>) -> Result<Option<u32>, RequestError> {
        let Some(a) = msg.get(attr::LIFETIME) else {
            return Ok(None);
        };
        attr::decode_u32(a.value, attr::LIFETIME)
            .map(Some)
            .map_err(|_| RequestError::MalformedAttribute(attr::LIFETIME))
    }

    fn grant(&self, requested: Option<u32>) -> Duration {
        let default = self.config.default_lifetime;
        match requested {
            Some(r) => Duration::from_secs(u64::from(r))
                .min(self.config.max_lifetime)
                .max(default),
            None => default,
        }
    }

    /// Which families a new allocation relays in (module docs). With a RESERVATION-TOKEN
    /// the reservation decides, and none is listed.
    fn allocation_families(
        &self,
        five_tuple: FiveTuple,
        msg: &Message<'_>,
        token: bool,
    ) -> Result<Families, RequestError> {
        let requested = requested_family(msg, attr::REQUESTED_ADDRESS_FAMILY)?;
        let rfc = requested_family(msg, attr::ADDITIONAL_ADDRESS_FAMILY)?;
        let draft = requested_family(msg, attr::ADDITIONAL_ADDRESS_FAMILY_DRAFT)?;
        let additional = rfc.or(draft);
        let mut families = Families {
            wanted: [None; Family::ALL.len()],
            unsupported: None,
            draft: rfc.is_none() && draft.is_some(),
        };
        if token {
            if requested.is_some() || additional.is_some() {
                return Err(RequestError::ReservationWithAddressFamily);
            }
            return Ok(families);
        }
        if requested.is_some() && additional.is_some() {
            return Err(RequestError::BothAddressFamilies);
        }
        if let Some(additional) = additional {
            if Family::from_wire(additional) != Some(Family::V6) {
                return Err(RequestError::AdditionalFamilyNotIpv6);
            }
            for f in Family::ALL {
                if self.config.relayed_ip(f).is_some() {
                    families.wanted[f.index()] = Some(f);
                } else {
                    families.unsupported = Some(f);
                }
            }
            if families.list().next().is_none() {
                return Err(RequestError::AddressFamilyNotSupported);
            }
            return Ok(families);
        }
        let family = match requested {
            Some(byte) => Family::from_wire(byte).ok_or(RequestError::AddressFamilyNotSupported)?,
            None => self
                .config
                .default_family
                .for_client(five_tuple.server.ip()),
        };
        if self.config.relayed_ip(family).is_none() {
            return Err(RequestError::AddressFamilyNotSupported);
        }
        families.wanted[family.index()] = Some(family);
        Ok(families)
    }

    pub(crate) fn allocate(
        &mut self,
        now: Instant,
        five_tuple: FiveTuple,
        msg: &Message<'_>,
        key: [u8; 16],
        username: &str,
    ) -> Result<Success, RequestError> {
        if let Some(&id) = self.by_five_tuple.get(&five_tuple) {
            let a = self.allocation(id);
            if a.allocate_tid == msg.transaction_id() {
                // A retransmission is a request for the existing allocation, so it must come
                // from the allocation's user (RFC 8656 §5), like every other request on it.
                if &*a.username != username {
                    return Err(RequestError::WrongCredentials);
                }
                return Ok(self.allocate_success(a, key));
            }
            return Err(RequestError::AllocationMismatch);
        }
        if let Some(draining) = self.draining {
            return Err(match draining {
                Some(_) => RequestError::TryAlternate,
                None => RequestError::InsufficientCapacity,
            });
        }
        if self.refused(username, now) {
            return Err(RequestError::UserRefused);
        }
        let transport = msg
            .get(attr::REQUESTED_TRANSPORT)
            .ok_or(RequestError::MissingAttribute(attr::REQUESTED_TRANSPORT))?;
        let transport = attr::decode_requested_transport(transport.value)
            .map_err(|_| RequestError::MalformedAttribute(attr::REQUESTED_TRANSPORT))?;
        if transport != attr::TRANSPORT_UDP {
            return Err(RequestError::UnsupportedTransport);
        }
        let even_port = msg.get(attr::EVEN_PORT);
        let token = msg.get(attr::RESERVATION_TOKEN);
        if token.is_some() && even_port.is_some() {
            return Err(RequestError::ReservationWithEvenPort);
        }
        let token = match token {
            Some(t) => Some(u64::from_be_bytes(t.value.try_into().map_err(|_| {
                RequestError::MalformedAttribute(attr::RESERVATION_TOKEN)
            })?)),
            None => None,
        };
        // The R bit asks to reserve the next port too (RFC 8656 §14.6).
        let reserve_next =
            even_port.is_some_and(|a| a.value.first().is_some_and(|b| b & 0x80 != 0));
        let families = self.allocation_families(five_tuple, msg, token.is_some())?;
        let lifetime = self.grant(self.desired_lifetime(msg)?);
        let (admitted, new_token) = self.take_relay_ports(
            now,
            username,
            even_port.is_some(),
            reserve_next,
            token,
            &families,
        )?;
        let relayed = admitted.relayed;
        let address_error = match (families.unsupported, admitted.exhausted) {
            (Some(f), _) => Some((f, RequestResult::AddressFamilyNotSupported)),
            (None, Some(f)) => Some((f, RequestResult::InsufficientCapacity)),
            (None, None) => None,
        };
        let granted = lifetime.as_secs() as u32;
        let rate =
            (self.config.max_bps != 0).then(|| Box::new(RateState::new(now, self.config.max_bps)));
        let id = self.allocations.insert(Allocation {
            five_tuple,
            transport: five_tuple.transport.label(),
            relayed,
            username: username.into(),
            key,
            created: now,
            last_activity: now,
            expires: [now + lifetime; Family::ALL.len()],
            allocate_tid: msg.transaction_id(),
            granted_lifetime: granted,
            address_error,
            draft_codepoints: families.draft,
            reservation_token: new_token,
            permissions: Vec::new(),
            channels: Vec::new(),
            traffic: Traffic::default(),
            peers_seen: Vec::new(),
            rate,
        });
        self.by_five_tuple.insert(five_tuple, id);
        for endpoint in relayed.iter() {
            self.index_relay(endpoint, Some(id));
            self.counters.created(five_tuple.transport, endpoint.family);
            let family = endpoint.family;
            self.timers
                .insert(now + lifetime, Timer::Allocation { id, family });
            // The claims go out before the reply that tells the client the addresses.
            self.out.push(Output::Claim {
                relayed: endpoint,
                allocation: id,
            });
        }
        let (first, additional) = self.advertised(relayed);
        self.out.push(Output::Event(Event::AllocationCreated {
            five_tuple,
            relayed: first,
            additional,
            username: username.to_owned(),
        }));
        Ok(self.allocate_success(self.allocation(id), key))
    }

    /// Relay ports for a new allocation: the endpoints a RESERVATION-TOKEN holds, or even
    /// ones (reserving their successors under a new token when asked), or any; one in each
    /// family of `families`.
    fn take_relay_ports(
        &mut self,
        now: Instant,
        username: &str,
        even: bool,
        reserve_next: bool,
        token: Option<u64>,
        families: &Families,
    ) -> Result<(Admitted, Option<u64>), RequestError> {
        let (user_quota, total_quota) = (self.config.user_quota, self.config.total_quota);
        let new_token = (token.is_none() && reserve_next).then(|| self.rng.next_u64());
        let request = match (token, new_token) {
            (Some(t), _) => PortRequest::Reserved(t),
            (None, Some(t)) => PortRequest::EvenReservingNext(t),
            (None, None) if even => PortRequest::Even,
            (None, None) => PortRequest::Any,
        };
        let mut list = [Family::V4; Family::ALL.len()];
        let mut n = 0;
        for f in families.list() {
            list[n] = f;
            n += 1;
        }
        let admitted = self
            .shared
            .admit(username, user_quota, total_quota, request, &list[..n])?;
        if let Some(token) = new_token {
            let at = now + self.config.reservation_lifetime;
            self.timers.insert(at, Timer::Reservation { token });
        }
        Ok((admitted, new_token))
    }

    /// The advertised addresses of `relayed`: the first (IPv4 of a dual allocation) and the
    /// additional one (IPv6 of a dual allocation).
    pub(crate) fn advertised(
        &self,
        relayed: Relayed,
    ) -> (std::net::SocketAddr, Option<std::net::SocketAddr>) {
        let mut it = relayed.iter().map(|e| self.relayed_addr(e));
        let first = it.next().expect("an allocation has a relayed endpoint");
        (first, it.next())
    }

    fn allocate_success(&self, a: &Allocation, key: [u8; 16]) -> Success {
        Success::Allocate {
            relayed: Family::ALL.map(|f| a.relayed.get(f).map(|e| self.relayed_addr(e))),
            address_error: a.address_error,
            address_error_type: if a.draft_codepoints {
                attr::ADDRESS_ERROR_CODE_DRAFT
            } else {
                attr::ADDRESS_ERROR_CODE
            },
            mapped: a.five_tuple.client,
            lifetime: a.granted_lifetime,
            reservation_token: a.reservation_token,
            key,
        }
    }

    pub(crate) fn refresh(
        &mut self,
        now: Instant,
        id: AllocationId,
        msg: &Message<'_>,
        key: [u8; 16],
    ) -> Result<Success, RequestError> {
        let relayed = self.allocation(id).relayed;
        // RFC 8656 §8.2: a family the allocation does not relay in is a mismatch (443).
        let family = match requested_family(msg, attr::REQUESTED_ADDRESS_FAMILY)? {
            Some(byte) => match Family::from_wire(byte) {
                Some(f) if relayed.get(f).is_some() => Some(f),
                _ => return Err(RequestError::PeerAddressFamilyMismatch),
            },
            None => None,
        };
        let requested = self.desired_lifetime(msg)?;
        if requested == Some(0) {
            // Ended once the reply is queued, so its release follows the reply.
            self.ending = Some((id, family));
            return Ok(Success::Refresh { lifetime: 0, key });
        }
        let lifetime = self.grant(requested);
        let alloc = self.allocation_mut(id);
        for f in Family::ALL {
            if family.is_none_or(|only| only == f) {
                alloc.expires[f.index()] = now + lifetime;
            }
        }
        Ok(Success::Refresh {
            lifetime: lifetime.as_secs() as u32,
            key,
        })
    }
}
