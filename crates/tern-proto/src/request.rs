//! STUN requests and indications from clients: authentication, then one handler per method.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tern_wire::{attr, Class, Integrity, Message, Method};

use crate::allocation::{Allocation, ChannelBinding, FiveTuple, Permission, Traffic};
use crate::auth::{rest_expiry, Candidates};
use crate::error::{AuthFailure, DropReason, RequestError};
use crate::nonce::NonceError;
use crate::peer_check::{decode_peer, PeerUse};
use crate::rate::RateState;
use crate::response::{Failure, Success};
use crate::server::{ClientOutput, Event, Server, Timer};
use crate::shared::PortRequest;

/// Comprehension-required attributes this server understands.
const KNOWN: &[u16] = &[
    attr::MAPPED_ADDRESS,
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::ERROR_CODE,
    attr::UNKNOWN_ATTRIBUTES,
    attr::CHANNEL_NUMBER,
    attr::LIFETIME,
    attr::XOR_PEER_ADDRESS,
    attr::DATA,
    attr::REALM,
    attr::NONCE,
    attr::XOR_RELAYED_ADDRESS,
    attr::REQUESTED_ADDRESS_FAMILY,
    attr::EVEN_PORT,
    attr::REQUESTED_TRANSPORT,
    attr::DONT_FRAGMENT,
    attr::MESSAGE_INTEGRITY_SHA256,
    attr::XOR_MAPPED_ADDRESS,
    attr::RESERVATION_TOKEN,
    attr::PRIORITY,
    attr::USE_CANDIDATE,
];

/// Up to this many unknown attribute types are reported in one 420.
pub(crate) const MAX_UNKNOWN: usize = 16;

/// The unknown comprehension-required attributes of a request.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Unknown {
    pub types: [u16; MAX_UNKNOWN],
    pub len: usize,
}

fn unknown_attributes(msg: &Message<'_>) -> Unknown {
    let mut u = Unknown::default();
    for a in msg.attributes() {
        let unknown = attr::is_comprehension_required(a.typ) && !KNOWN.contains(&a.typ);
        if unknown && u.len < MAX_UNKNOWN && !u.types[..u.len].contains(&a.typ) {
            u.types[u.len] = a.typ;
            u.len += 1;
        }
    }
    u
}

impl Server {
    pub(crate) fn handle_stun(
        &mut self,
        now: Instant,
        wall: u64,
        five_tuple: FiveTuple,
        msg: &Message<'_>,
        reply: &mut Vec<u8>,
    ) -> ClientOutput {
        if msg.check_fingerprint() == Some(false) {
            return ClientOutput::Drop(DropReason::Malformed);
        }
        match (msg.class(), msg.method()) {
            (Class::Request, _) => {
                let result = self.handle_request(now, wall, five_tuple, msg);
                let outcome = result.as_ref().map(drop).map_err(|f| f.error);
                self.counters.request(msg.method(), outcome);
                self.write_response(reply, wall, five_tuple, msg, result);
                ClientOutput::Reply
            }
            (Class::Indication, Method::SEND) => self.handle_send(now, five_tuple, msg),
            _ => ClientOutput::Drop(DropReason::UnexpectedMessage),
        }
    }

    fn handle_request(
        &mut self,
        now: Instant,
        wall: u64,
        five_tuple: FiveTuple,
        msg: &Message<'_>,
    ) -> Result<Success, Failure> {
        let method = msg.method();
        if method == Method::BINDING {
            let unknown = unknown_attributes(msg);
            if unknown.len > 0 {
                return Err(Failure::unknown(unknown, None));
            }
            return Ok(Success::Binding {
                mapped: five_tuple.client,
            });
        }
        if ![
            Method::ALLOCATE,
            Method::REFRESH,
            Method::CREATE_PERMISSION,
            Method::CHANNEL_BIND,
        ]
        .contains(&method)
        {
            return Err(Failure::new(RequestError::UnknownMethod, None));
        }
        let (key, username) = self
            .authenticate(wall, five_tuple, msg)
            .map_err(|e| Failure::new(e, None))?;
        let fail = |e: RequestError| Failure::new(e, Some(key));
        let unknown = unknown_attributes(msg);
        if unknown.len > 0 {
            return Err(Failure::unknown(unknown, Some(key)));
        }
        if method == Method::ALLOCATE {
            return self
                .allocate(now, five_tuple, msg, key, username)
                .map_err(fail);
        }
        // The other methods act on the existing allocation of this 5-tuple.
        let Some(port) = self.by_five_tuple.get(&five_tuple).copied() else {
            return Err(fail(RequestError::AllocationMismatch));
        };
        let alloc = self.slot_mut(port).expect("indexed allocation exists");
        if &*alloc.username != username {
            return Err(fail(RequestError::WrongCredentials));
        }
        match method {
            Method::REFRESH => self.refresh(now, port, msg, key).map_err(fail),
            Method::CREATE_PERMISSION => self.create_permission(now, port, msg, key).map_err(fail),
            _ => self.channel_bind(now, port, msg, key).map_err(fail),
        }
    }

    /// The long-term credential mechanism (RFC 8489 §9.2.4): returns the key that validated
    /// the request and the username.
    fn authenticate<'m>(
        &self,
        wall: u64,
        five_tuple: FiveTuple,
        msg: &Message<'m>,
    ) -> Result<([u8; 16], &'m str), RequestError> {
        if msg.integrity_offset().is_none() && msg.integrity_sha256_offset().is_none() {
            return Err(RequestError::Unauthorized(AuthFailure::Challenge));
        }
        let text = |t: u16| -> Result<&'m str, RequestError> {
            let a = msg.get(t).ok_or(RequestError::MissingAttribute(t))?;
            attr::decode_str(a.value, t).map_err(|_| RequestError::MalformedAttribute(t))
        };
        let username = text(attr::USERNAME)?;
        text(attr::REALM)?;
        let nonce = msg
            .get(attr::NONCE)
            .ok_or(RequestError::MissingAttribute(attr::NONCE))?;
        let lifetime = self.config.nonce_lifetime.as_secs();
        match self
            .nonces
            .check(nonce.value, wall, five_tuple.client.ip(), lifetime)
        {
            Ok(()) => {}
            Err(NonceError::Invalid | NonceError::Expired) => return Err(RequestError::StaleNonce),
        }
        // An allocation's own user is checked against the key it authenticated with, which
        // saves deriving REST keys on every Refresh; REST expiry still applies.
        let known = self
            .by_five_tuple
            .get(&five_tuple)
            .and_then(|p| self.slots[usize::from(p.wrapping_sub(self.base_port))].as_ref())
            .filter(|a| &*a.username == username)
            .map(|a| a.key);
        let candidates = match known {
            Some(key) => {
                if rest_expiry(username).is_some_and(|e| e < wall)
                    && !self.config.auth_secrets.is_empty()
                {
                    return Err(RequestError::Unauthorized(
                        AuthFailure::ExpiredRestCredential,
                    ));
                }
                Candidates::one(key)
            }
            None => self
                .credentials
                .candidates(username, wall)
                .map_err(RequestError::Unauthorized)?,
        };
        let valid = candidates
            .iter()
            .find(|k| msg.check_integrity(&k[..]) == Integrity::Valid)
            .copied();
        valid
            .map(|k| (k, username))
            .ok_or(RequestError::Unauthorized(AuthFailure::BadIntegrity))
    }

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

    fn allocate(
        &mut self,
        now: Instant,
        five_tuple: FiveTuple,
        msg: &Message<'_>,
        key: [u8; 16],
        username: &str,
    ) -> Result<Success, RequestError> {
        if let Some(&port) = self.by_five_tuple.get(&five_tuple) {
            let a = self.slot_mut(port).expect("indexed allocation exists");
            if a.allocate_tid == msg.transaction_id() {
                let (lifetime, token) = (a.granted_lifetime, a.reservation_token);
                return Ok(self.allocate_success(port, five_tuple, lifetime, token, key));
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
        let id = self.next_id;
        self.next_id += 1;
        let granted = lifetime.as_secs() as u32;
        let alloc = Allocation {
            id,
            five_tuple,
            relay_port: port,
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
            rate: (self.config.max_bps != 0)
                .then(|| Box::new(RateState::new(now, self.config.max_bps))),
        };
        self.slots[usize::from(port - self.base_port)] = Some(alloc);
        self.by_five_tuple.insert(five_tuple, port);
        self.allocations += 1;
        self.counters.allocations_created += 1;
        self.timers
            .insert(now + lifetime, Timer::Allocation { port, id });
        let relayed = SocketAddr::new(self.config.relayed_ip, port);
        self.events.push_back(Event::AllocationCreated {
            five_tuple,
            relayed,
            username: username.to_owned(),
        });
        Ok(self.allocate_success(port, five_tuple, granted, new_token, key))
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
        port: u16,
        five_tuple: FiveTuple,
        lifetime: u32,
        reservation_token: Option<u64>,
        key: [u8; 16],
    ) -> Success {
        Success::Allocate {
            relayed: SocketAddr::new(self.config.relayed_ip, port),
            mapped: five_tuple.client,
            lifetime,
            reservation_token,
            key,
        }
    }

    fn refresh(
        &mut self,
        now: Instant,
        port: u16,
        msg: &Message<'_>,
        key: [u8; 16],
    ) -> Result<Success, RequestError> {
        if requested_family(msg)?.is_some_and(|f| f != family_of(self.config.relayed_ip)) {
            return Err(RequestError::PeerAddressFamilyMismatch);
        }
        let requested = self.desired_lifetime(msg)?;
        if requested == Some(0) {
            self.end_allocation(port, now, crate::EndReason::Deleted);
            return Ok(Success::Refresh { lifetime: 0, key });
        }
        let lifetime = self.grant(requested);
        let alloc = self.slot_mut(port).expect("allocation exists");
        alloc.expires = now + lifetime;
        Ok(Success::Refresh {
            lifetime: lifetime.as_secs() as u32,
            key,
        })
    }

    /// Decodes and vets one XOR-PEER-ADDRESS named `how`: the peer check, then the family.
    fn vet_peer(
        &self,
        value: &[u8],
        msg: &Message<'_>,
        how: PeerUse,
    ) -> Result<SocketAddr, RequestError> {
        let peer = decode_peer(value, msg)
            .ok_or(RequestError::MalformedAttribute(attr::XOR_PEER_ADDRESS))?;
        if !self.peer_allowed(peer, how) {
            return Err(RequestError::Forbidden);
        }
        if family_of(peer.ip()) != family_of(self.config.relayed_ip) {
            return Err(RequestError::PeerAddressFamilyMismatch);
        }
        Ok(peer)
    }

    fn create_permission(
        &mut self,
        now: Instant,
        port: u16,
        msg: &Message<'_>,
        key: [u8; 16],
    ) -> Result<Success, RequestError> {
        // All or nothing (RFC 8656 §9.2): vet every peer before installing any.
        let (mut count, mut new) = (0, 0);
        for a in msg.attributes().filter(|a| a.typ == attr::XOR_PEER_ADDRESS) {
            let peer = self.vet_peer(a.value, msg, PeerUse::Permission)?;
            count += 1;
            if !self.slot(port).has_permission(peer.ip()) {
                new += 1;
            }
        }
        if count == 0 {
            return Err(RequestError::MissingAttribute(attr::XOR_PEER_ADDRESS));
        }
        if self.slot(port).permissions.len() + new > self.config.max_permissions_per_allocation {
            return Err(RequestError::InsufficientCapacity);
        }
        for a in msg.attributes().filter(|a| a.typ == attr::XOR_PEER_ADDRESS) {
            let peer = self.vet_peer(a.value, msg, PeerUse::Permission)?;
            self.install_permission(now, port, peer.ip());
        }
        Ok(Success::Empty { key })
    }

    fn install_permission(&mut self, now: Instant, port: u16, ip: IpAddr) {
        let expires = now + self.config.permission_lifetime;
        let alloc = self.slot_mut(port).expect("allocation exists");
        if let Some(p) = alloc.permissions.iter_mut().find(|p| p.ip == ip) {
            p.expires = expires;
            return;
        }
        alloc.permissions.push(Permission { ip, expires });
        let id = alloc.id;
        self.permissions += 1;
        self.timers
            .insert(expires, Timer::Permission { port, id, ip });
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        port: u16,
        msg: &Message<'_>,
        key: [u8; 16],
    ) -> Result<Success, RequestError> {
        let number = msg
            .get(attr::CHANNEL_NUMBER)
            .ok_or(RequestError::MissingAttribute(attr::CHANNEL_NUMBER))?;
        let number = attr::decode_channel_number(number.value)
            .map_err(|_| RequestError::MalformedAttribute(attr::CHANNEL_NUMBER))?;
        let number = if self.config.rfc5766_channels {
            tern_wire::ChannelNumber::new_rfc5766(number)
        } else {
            tern_wire::ChannelNumber::new(number)
        }
        .map_err(|_| RequestError::BadChannelNumber)?;
        let peer = msg
            .get(attr::XOR_PEER_ADDRESS)
            .ok_or(RequestError::MissingAttribute(attr::XOR_PEER_ADDRESS))?;
        let peer = self.vet_peer(peer.value, msg, PeerUse::Channel)?;
        let (max_channels, max_permissions) = (
            self.config.max_channels_per_allocation,
            self.config.max_permissions_per_allocation,
        );
        let expires = now + self.config.channel_lifetime;
        let alloc = self.slot_mut(port).expect("allocation exists");
        // Rebinding rules (RFC 8656 §12.2): a channel keeps its peer, a peer keeps its channel.
        let by_number = alloc.channels.iter().position(|c| c.number == number);
        let by_peer = alloc.channels.iter().position(|c| c.peer == peer);
        let new_permission = !alloc.has_permission(peer.ip());
        if new_permission && alloc.permissions.len() >= max_permissions {
            return Err(RequestError::InsufficientCapacity);
        }
        match (by_number, by_peer) {
            (Some(i), Some(j)) if i == j => alloc.channels[i].expires = expires,
            (None, None) => {
                if alloc.channels.len() >= max_channels {
                    return Err(RequestError::InsufficientCapacity);
                }
                alloc.channels.push(ChannelBinding {
                    number,
                    peer,
                    expires,
                });
                let id = alloc.id;
                self.channels += 1;
                self.timers.insert(
                    expires,
                    Timer::Channel {
                        port,
                        id,
                        number: number.get(),
                    },
                );
            }
            _ => return Err(RequestError::ChannelConflict),
        }
        self.install_permission(now, port, peer.ip());
        Ok(Success::Empty { key })
    }
}

/// REQUESTED-ADDRESS-FAMILY, if the request carries it.
fn requested_family(msg: &Message<'_>) -> Result<Option<u8>, RequestError> {
    msg.get(attr::REQUESTED_ADDRESS_FAMILY)
        .map(|a| attr::decode_address_family(a.value, a.typ))
        .transpose()
        .map_err(|_| RequestError::MalformedAttribute(attr::REQUESTED_ADDRESS_FAMILY))
}

pub(crate) fn family_of(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => attr::FAMILY_IPV4,
        IpAddr::V6(_) => attr::FAMILY_IPV6,
    }
}

impl Candidates {
    pub(crate) fn one(key: [u8; 16]) -> Self {
        let mut c = Candidates::default();
        c.push(key);
        c
    }
}
