//! Accepting a TLS connection without an async runtime: read the ClientHello, choose the
//! configuration for it, and hand back a `rustls::ServerConnection` that the worker owning
//! the socket keeps beside it.

use std::fmt;
use std::io;
use std::sync::Arc;

use rustls::server::{AcceptedAlert, Acceptor};
use rustls::ServerConnection;

use super::Generation;

/// A connection whose ClientHello has not been read in full yet. It serves the generation it
/// was started with, so a reload in the middle of the handshake does not change its
/// certificate.
pub struct Accepting {
    acceptor: Acceptor,
    generation: Arc<Generation>,
}

/// A ClientHello that could not be accepted (malformed, or nothing in common). Write
/// `alert` to the socket, then close it.
pub struct Refused {
    /// What was wrong.
    pub error: rustls::Error,
    /// The TLS alert to send the client.
    pub alert: AcceptedAlert,
}

impl fmt::Debug for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS ClientHello refused: {}", self.error)
    }
}

impl std::error::Error for Refused {}

impl fmt::Debug for Accepting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepting").finish_non_exhaustive()
    }
}

impl From<(rustls::Error, AcceptedAlert)> for Refused {
    fn from((error, alert): (rustls::Error, AcceptedAlert)) -> Self {
        Self { error, alert }
    }
}

impl Accepting {
    /// Starts accepting a connection with `generation` (the store's current one, taken once
    /// per connection).
    pub fn new(generation: Arc<Generation>) -> Self {
        Self {
            acceptor: Acceptor::default(),
            generation,
        }
    }

    /// Reads TLS bytes from the client, as `ServerConnection::read_tls` does.
    pub fn read_tls(&mut self, rd: &mut dyn io::Read) -> io::Result<usize> {
        self.acceptor.read_tls(rd)
    }

    /// The connection once the whole ClientHello is in (`None`: read more). Its
    /// configuration is [`Generation::config_for_alpn`] of what the client offered, so a
    /// client that offers ALPN without `stun.turn` is served without ALPN instead of being
    /// refused. After an error, this `Accepting` is spent.
    pub fn accept(&mut self) -> Result<Option<ServerConnection>, Refused> {
        let Some(accepted) = self.acceptor.accept()? else {
            return Ok(None);
        };
        let config = self
            .generation
            .config_for_alpn(accepted.client_hello().alpn())
            .clone();
        Ok(Some(accepted.into_connection(config)?))
    }

    /// The generation this connection is served from.
    pub fn generation(&self) -> &Arc<Generation> {
        &self.generation
    }
}
