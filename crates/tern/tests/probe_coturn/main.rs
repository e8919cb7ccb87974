//! `tern probe` against coturn's `turnserver` on loopback: success with REST and long-term
//! credentials over UDP, TCP and TLS, and the diagnosis of each failure it is meant to
//! explain, certificate problems included.
//!
//! Network rule: every socket here binds and sends to 127.0.0.1 only. Each server gets its
//! own block of ports in 20000–32767, below Linux's ephemeral range, so no client socket
//! takes a relay port. Tests needing coturn skip with a note on stderr when `turnserver` is
//! not installed, and fail if `CI` is set (`tern_e2e::prereq`; CI installs coturn).
mod harness;
mod pki;
mod stream;
mod tls;
mod udp;
