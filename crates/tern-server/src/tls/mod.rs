//! TLS for TURN over TLS (`turns:`, RFC 8656 §3.1 and RFC 7443's ALPN `stun.turn`): the
//! configuration, the certificates and their live reload. Connections are accepted and
//! driven by the worker that owns the socket; nothing here does I/O on sockets or runs an
//! async runtime.
//!
//! - rustls with the *ring* provider, TLS 1.2 and 1.3 only (`no-tlsv1`, `no-tlsv1_1` always
//!   hold; `no-tlsv1_2` is [`TlsSettings::tls13_only`]).
//! - `cipher-list` and `ec-curve-name` are mapped onto rustls ([`ciphers`], [`curves`]).

pub mod ciphers;
pub mod curves;
mod error;
mod settings;

pub use error::TlsError;
pub use settings::{no_dhe_warning, SniCert, SniCertError, TlsSettings, NO_DHE_KEYS, SNI_CERT_KEY};

/// The ALPN protocol of TURN over TLS (RFC 7443).
pub const ALPN_STUN_TURN: &[u8] = b"stun.turn";
