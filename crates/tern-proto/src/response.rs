//! Building responses: one success shape per method, and error responses whose attributes
//! follow from the [`RequestError`].

use std::net::SocketAddr;

use tern_wire::{attr, Class, Message, MessageType, MessageWriter};

use crate::addr::{Family, FiveTuple, PerFamily};
use crate::error::{RequestError, RequestResult};
use crate::request::Unknown;
use crate::server::Server;

/// What a successful request answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Success {
    Binding {
        mapped: SocketAddr,
    },
    Allocate {
        /// The relayed addresses by family: one, or two for a dual allocation.
        relayed: PerFamily<Option<SocketAddr>>,
        /// The family a dual allocation could not get, and why (440 or 508).
        address_error: Option<(Family, RequestResult)>,
        /// The attribute type to name it with (RFC 8656's, or coturn's draft one).
        address_error_type: u16,
        mapped: SocketAddr,
        lifetime: u32,
        reservation_token: Option<u64>,
        key: [u8; 16],
    },
    Refresh {
        lifetime: u32,
        key: [u8; 16],
    },
    /// CreatePermission and ChannelBind: nothing but integrity.
    Empty {
        key: [u8; 16],
    },
}

/// A failed request: the error, and the key when the request had authenticated (so the
/// error response carries MESSAGE-INTEGRITY).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failure {
    pub error: RequestError,
    pub key: Option<[u8; 16]>,
    pub unknown: Unknown,
}

impl Failure {
    pub fn new(error: RequestError, key: Option<[u8; 16]>) -> Self {
        Self {
            error,
            key,
            unknown: Unknown::default(),
        }
    }

    pub fn unknown(unknown: Unknown, key: Option<[u8; 16]>) -> Self {
        Self {
            error: RequestError::UnknownAttributes,
            key,
            unknown,
        }
    }
}

impl Server {
    pub(crate) fn write_response(
        &self,
        reply: &mut Vec<u8>,
        wall: u64,
        five_tuple: FiveTuple,
        msg: &Message<'_>,
        result: Result<Success, Failure>,
    ) {
        let fingerprint = self.config.always_fingerprint || msg.check_fingerprint().is_some();
        let class = if result.is_ok() {
            Class::Success
        } else {
            Class::Error
        };
        let mut w = MessageWriter::new(
            reply,
            MessageType::new(msg.method(), class),
            msg.transaction_id(),
        );
        if let Some(software) = &self.config.software {
            w.attr(attr::SOFTWARE, software.as_bytes());
        }
        let key = match result {
            Ok(Success::Binding { mapped }) => {
                // XOR-MAPPED-ADDRESS alone: MAPPED-ADDRESS serves only RFC 3489 clients
                // (RFC 8489 §14.1), recognised by the missing magic cookie, and such requests
                // are dropped as malformed. Every byte here is reflected to an address nobody
                // has verified.
                w.xor_address(attr::XOR_MAPPED_ADDRESS, mapped);
                None
            }
            Ok(Success::Allocate {
                relayed,
                address_error,
                address_error_type,
                mapped,
                lifetime,
                reservation_token,
                key,
            }) => {
                // IPv4 first: a client that reads one XOR-RELAYED-ADDRESS gets the one it
                // asked for when it did not ask for two.
                for addr in relayed.into_iter().flatten() {
                    w.xor_address(attr::XOR_RELAYED_ADDRESS, addr);
                }
                if let Some((family, error)) = address_error {
                    let (code, reason) = (error.code(), error.reason());
                    w.address_error_code_as(address_error_type, family.to_wire(), code, reason);
                }
                w.u32(attr::LIFETIME, lifetime);
                if let Some(token) = reservation_token {
                    w.attr(attr::RESERVATION_TOKEN, &token.to_be_bytes());
                }
                w.xor_address(attr::XOR_MAPPED_ADDRESS, mapped);
                Some(key)
            }
            Ok(Success::Refresh { lifetime, key }) => {
                w.u32(attr::LIFETIME, lifetime);
                Some(key)
            }
            Ok(Success::Empty { key }) => Some(key),
            Err(f) => {
                // Without integrity the answer goes to an address nobody verified: every
                // byte of it can be reflected at someone else, and the reason phrase is
                // optional (RFC 8489 §14.8 bounds it, asks for none), so the code says it
                // alone. A client that authenticated gets the phrase.
                let reason = if f.key.is_some() {
                    f.error.reason()
                } else {
                    ""
                };
                w.error_code(f.error.code(), reason);
                match f.error {
                    RequestError::UnknownAttributes => {
                        w.unknown_attributes(&f.unknown.types[..f.unknown.len]);
                    }
                    RequestError::TryAlternate => {
                        if let Some(Some(alternate)) = self.draining {
                            w.address(attr::ALTERNATE_SERVER, alternate);
                        }
                    }
                    RequestError::Unauthorized(_) | RequestError::StaleNonce => {
                        w.attr(attr::REALM, self.credentials.realm().as_bytes());
                        w.attr(
                            attr::NONCE,
                            &self.nonces.issue(wall, five_tuple.client.ip()),
                        );
                    }
                    _ => {}
                }
                f.key
            }
        };
        if let Some(key) = key {
            // Answer in kind: a request signed only with MESSAGE-INTEGRITY-SHA256 gets a
            // response signed the same way (RFC 8489 §9.2.4).
            if msg.integrity_offset().is_none() && msg.integrity_sha256_offset().is_some() {
                w.message_integrity_sha256(&key);
            } else {
                w.message_integrity(&key);
            }
        }
        if fingerprint {
            w.fingerprint();
        }
        w.finish();
    }
}
