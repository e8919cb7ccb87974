//! STUN requests and indications from clients: authentication, then one handler per method
//! (Allocate and Refresh in `allocate.rs`, CreatePermission and ChannelBind in `bind.rs`).

use std::time::Instant;

use tern_wire::{attr, Class, Integrity, Message, Method};

use crate::addr::FiveTuple;
use crate::auth::{rest_expiry, Candidates};
use crate::error::{AuthFailure, DropReason, RequestError};
use crate::nonce::NonceError;
use crate::output::{ClientOutput, Destination};
use crate::response::{Failure, Success};
use crate::server::Server;

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
    ) -> ClientOutput {
        if msg.check_fingerprint() == Some(false) {
            return ClientOutput::Drop(DropReason::Malformed);
        }
        match (msg.class(), msg.method()) {
            (Class::Request, _) => {
                if self.locked_out(now, five_tuple, msg) {
                    return ClientOutput::Drop(DropReason::LockedOut);
                }
                let result = self.handle_request(now, wall, five_tuple, msg);
                // An error without integrity goes to an unverified address: limited per
                // source (`guard`). Nothing a failed request queued needs its reply.
                let unauthenticated = matches!(&result, Err(f) if f.key.is_none());
                if unauthenticated && !self.admit_unauthorized(now, five_tuple) {
                    return ClientOutput::Drop(DropReason::UnauthorizedRateLimited);
                }
                let outcome = result.as_ref().map(drop).map_err(|f| f.error);
                self.counters
                    .request(five_tuple.transport, msg.method(), outcome);
                // The reply is queued after what the request queued (a relay claim, a channel
                // bound) and before what its effect ends (a deleted allocation's release).
                let mut out = std::mem::take(&mut self.out);
                out.transmit(Destination::Client(five_tuple), |reply| {
                    self.write_response(reply, wall, five_tuple, msg, result);
                });
                self.out = out;
                if let Some((id, family)) = self.ending.take() {
                    let reason = crate::EndReason::Deleted;
                    match family {
                        Some(family) => self.end_relayed(id, family, now, reason),
                        None => self.end_allocation(id, now, reason),
                    }
                }
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
        let (key, username) = self.authenticate(wall, five_tuple, msg).map_err(|e| {
            self.note_auth_failure(now, five_tuple, msg, e);
            Failure::new(e, None)
        })?;
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
        let Some(id) = self.by_five_tuple.get(&five_tuple).copied() else {
            return Err(fail(RequestError::AllocationMismatch));
        };
        if &*self.allocation(id).username != username {
            return Err(fail(RequestError::WrongCredentials));
        }
        self.allocation_mut(id).last_activity = now;
        match method {
            Method::REFRESH => self.refresh(now, id, msg, key).map_err(fail),
            Method::CREATE_PERMISSION => self.create_permission(now, id, msg, key).map_err(fail),
            _ => self.channel_bind(now, id, msg, key).map_err(fail),
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
            .and_then(|id| self.allocations.get(*id))
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
}

/// The family byte of REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY (`typ`), if the
/// request carries it; a value of the wrong length is malformed (400).
pub(crate) fn requested_family(msg: &Message<'_>, typ: u16) -> Result<Option<u8>, RequestError> {
    msg.get(typ)
        .map(|a| attr::decode_address_family(a.value, a.typ))
        .transpose()
        .map_err(|_| RequestError::MalformedAttribute(typ))
}

impl Candidates {
    pub(crate) fn one(key: [u8; 16]) -> Self {
        let mut c = Candidates::default();
        c.push(key);
        c
    }
}
