//! TLS for TURN over TLS (`turns:`, RFC 8656 §3.1 and RFC 7443's ALPN `stun.turn`): the
//! configuration, the certificates and their live reload. Connections are accepted and
//! driven by the worker that owns the socket; nothing here does I/O on sockets or runs an
//! async runtime.
//!
//! - rustls with the *ring* provider, TLS 1.2 and 1.3 only (`no-tlsv1`, `no-tlsv1_1` always
//!   hold; `no-tlsv1_2` is [`TlsSettings::tls13_only`]).
//! - The chain is served as the PEM file gives it; keys are PKCS#8, PKCS#1 or SEC1 PEM,
//!   unencrypted ([`TlsError::EncryptedKey`] otherwise, as with `pkey-pwd`).
//! - SNI picks among a default certificate and [`SniCert`]s; ALPN `stun.turn` is selected
//!   when the client offers it and never required ([`Generation::config_for_alpn`]).
//! - Session resumption: each [`Generation`] has ticket keys and a session cache that all
//!   workers share.
//! - `cipher-list` and `ec-curve-name` are mapped onto rustls ([`ciphers`], [`curves`]);
//!   what cannot be honoured is in [`Generation::warnings`].
//!
//! The drive, from the binary and a worker:
//!
//! ```no_run
//! # use std::io::Read;
//! use tern_server::tls::{Accepting, CertStore, TlsSettings};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // At start: an error names the file and stops the server.
//! let store = CertStore::load(TlsSettings::new("/etc/tern/cert.pem", "/etc/tern/key.pem"))?;
//! let now = std::time::SystemTime::now();
//! for cert in store.current().certificates() {
//!     let days = cert.expiry(now).days_left; // log it
//! }
//! // In the worker, for each accepted TCP connection:
//! # let mut socket = std::io::empty();
//! let mut accepting = Accepting::new(store.current());
//! accepting.read_tls(&mut socket)?;
//! if let Some(connection) = accepting.accept()? {
//!     // keep `connection` (a rustls::ServerConnection) beside the socket
//! }
//! // On SIGHUP, SIGUSR2 or a changed file (store.watched_files()): on error the old
//! // certificates stay; log it and count it as a failed reload.
//! if let Err(e) = store.reload() {
//!     eprintln!("{e}");
//! }
//! // Or, when the whole configuration was read again and its TLS settings loaded with it
//! // (what the binary does), serve that generation without reading the files again.
//! # let loaded = std::sync::Arc::new(tern_server::tls::Generation::load(TlsSettings::new("c", "k"))?);
//! store.install(loaded);
//! # Ok(())
//! # }
//! ```

mod accept;
mod cert;
pub mod ciphers;
pub mod curves;
mod error;
mod files;
mod generation;
mod resolver;
mod settings;
mod store;

pub use accept::{Accepting, Refused};
pub use cert::{CertificateFacts, Expiry};
pub use error::TlsError;
pub use generation::{Generation, SESSION_CACHE_SIZE};
pub use settings::{no_dhe_warning, SniCert, SniCertError, TlsSettings, NO_DHE_KEYS, SNI_CERT_KEY};
pub use store::CertStore;

/// The ALPN protocol of TURN over TLS (RFC 7443).
pub const ALPN_STUN_TURN: &[u8] = b"stun.turn";
