//! TLS configuration and certificates (`tern_server::tls`): in-memory handshakes with a
//! rustls client trusting a test CA made with rcgen.

// A failed handshake carries both sides' rustls errors; its size matters nothing in a test.
#![allow(clippy::result_large_err)]

mod errors;
mod handshakes;
mod pki;
mod pump;
mod reload;

use std::sync::Arc;

use rustls::version::{TLS12, TLS13};
use rustls::SupportedProtocolVersion;
use tern_server::tls::{CertStore, Generation, TlsSettings};

/// Both TLS versions, for a client.
pub const BOTH: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];
/// TLS 1.2 only, for a client.
pub const ONLY_12: &[&SupportedProtocolVersion] = &[&TLS12];
/// TLS 1.3 only, for a client.
pub const ONLY_13: &[&SupportedProtocolVersion] = &[&TLS13];

/// Loads a generation, panicking with the error's message.
pub fn load(settings: TlsSettings) -> Arc<Generation> {
    Arc::new(Generation::load(settings).unwrap_or_else(|e| panic!("{e}")))
}

/// Loads a store, panicking with the error's message.
pub fn store(settings: TlsSettings) -> CertStore {
    CertStore::load(settings).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn shared_across_worker_threads() {
    fn shared<T: Send + Sync>() {}
    fn moved<T: Send>() {}
    shared::<CertStore>();
    shared::<Generation>();
    moved::<tern_server::tls::Accepting>();
    moved::<rustls::ServerConnection>();
}
