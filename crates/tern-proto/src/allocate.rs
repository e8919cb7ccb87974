//! Allocate and Refresh (RFC 8656 §7 and §8): an allocation begins with its relay claim
//! queued before the reply, and a Refresh with LIFETIME 0 ends it after the reply.

use std::time::{Duration, Instant};

use tern_wire::{attr, Message};

use crate::addr::{FiveTuple, RelayEndpoint, Relayed};
use crate::allocation::{Allocation, Traffic};
use crate::error::RequestError;
use crate::output::{Event, Output};
use crate::rate::RateState;
use crate::request::{family_of, requested_family};
use crate::response::Success;
use crate::server::{Server, Timer};
use crate::shared::PortRequest;
use crate::slab::AllocationId;

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
                let (lifetime, token) = (a.granted_lifetime, a.reservation_token);
                let relayed = a.relayed.first();
                return Ok(self.allocate_success(relayed, five_tuple, lifetime, token, key));
            }
            return Err(RequestError::AllocationMismatch);
        }
        if let Some(draining) = self.draining {
            return Err(match draining {
                Some(_) => RequestError::TryAlternate,
                None => RequestError::InsufficientCapacity,
            });
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
        if requested_family(msg)?.is_some_and(|f| f != family_of(self.config.relayed_ip)) {
            return Err(RequestError::AddressFamilyNotSupported);
        }
        let lifetime = self.grant(self.desired_lifetime(msg)?);
        let (port, new_token) =
            self.take_relay_port(now, username, even_port.is_some(), reserve_next, token)?;
        let relayed = RelayEndpoint {
            family: self.relay_family(),
            port,
        };
        let granted = lifetime.as_secs() as u32;
        let rate =
            (self.config.max_bps != 0).then(|| Box::new(RateState::new(now, self.config.max_bps)));
        let id = self.allocations.insert(Allocation {
            five_tuple,
            transport: five_tuple.transport.label(),
            relayed: Relayed::one(relayed),
            username: username.into(),
            key,
            created: now,
            expires: now + lifetime,
            allocate_tid: msg.transaction_id(),
            granted_lifetime: granted,
            reservation_token: new_token,
            permissions: Vec::new(),
            channels: Vec::new(),
            traffic: Traffic::default(),
            rate,
        });
        self.by_five_tuple.insert(five_tuple, id);
        self.index_relay(relayed, Some(id));
        self.counters.created(five_tuple.transport);
        self.timers.insert(now + lifetime, Timer::Allocation { id });
        // The claim goes out before the reply that tells the client the address.
        self.out.push(Output::Claim {
            relayed,
            allocation: id,
        });
        self.out.push(Output::Event(Event::AllocationCreated {
            five_tuple,
            relayed: self.relayed_addr(relayed),
            username: username.to_owned(),
        }));
        Ok(self.allocate_success(relayed, five_tuple, granted, new_token, key))
    }

    /// A relay port for a new allocation: the one a RESERVATION-TOKEN holds, or an even one
    /// (reserving its successor under a new token when asked), or any.
    fn take_relay_port(
        &mut self,
        now: Instant,
        username: &str,
        even: bool,
        reserve_next: bool,
        token: Option<u64>,
    ) -> Result<(u16, Option<u64>), RequestError> {
        let (user_quota, total_quota) = (self.config.user_quota, self.config.total_quota);
        let new_token = (token.is_none() && reserve_next).then(|| self.rng.next_u64());
        let request = match (token, new_token) {
            (Some(t), _) => PortRequest::Reserved(t),
            (None, Some(t)) => PortRequest::EvenReservingNext(t),
            (None, None) if even => PortRequest::Even,
            (None, None) => PortRequest::Any,
        };
        let port = self
            .shared
            .admit(username, user_quota, total_quota, request)?;
        if let Some(token) = new_token {
            let next = port + 1;
            let at = now + self.config.reservation_lifetime;
            self.timers
                .insert(at, Timer::Reservation { port: next, token });
        }
        Ok((port, new_token))
    }

    fn allocate_success(
        &self,
        relayed: RelayEndpoint,
        five_tuple: FiveTuple,
        lifetime: u32,
        reservation_token: Option<u64>,
        key: [u8; 16],
    ) -> Success {
        Success::Allocate {
            relayed: self.relayed_addr(relayed),
            mapped: five_tuple.client,
            lifetime,
            reservation_token,
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
        if requested_family(msg)?.is_some_and(|f| f != family_of(self.config.relayed_ip)) {
            return Err(RequestError::PeerAddressFamilyMismatch);
        }
        let requested = self.desired_lifetime(msg)?;
        if requested == Some(0) {
            // Ended once the reply is queued, so its release follows the reply.
            self.ending = Some(id);
            return Ok(Success::Refresh { lifetime: 0, key });
        }
        let lifetime = self.grant(requested);
        let alloc = self.allocation_mut(id);
        alloc.expires = now + lifetime;
        Ok(Success::Refresh {
            lifetime: lifetime.as_secs() as u32,
            key,
        })
    }
}
