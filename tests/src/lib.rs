//! End-to-end harness: start a real TURN server binary on loopback and talk to it with
//! clients nobody here wrote (coturn's `turnutils_*`, the webrtc-rs `turn` client).
//!
//! The server under test is one parameter, [`ServerKind`]: `Tern` runs `tern serve`, `Coturn`
//! runs coturn's `turnserver` with the same turnserver.conf keys. Every suite instantiates
//! each test for both kinds (`tern::…` and `coturn::…` test names), so the coturn variant
//! checks the test itself and the tern variant checks tern.
//!
//! How the `tern` binary is found and built: see [`tern_bin`].
//!
//! Network rule: everything here binds and sends to 127.0.0.1 or ::1 only; relay ports are taken
//! from 20000–32767, below Linux's ephemeral range (32768–60999) where every client socket
//! in these tests lives, so a client socket never steals a relay port.
//! The one exception is [`netns`]: private addresses inside two network namespaces a test
//! creates and deletes (the XDP suites and the load generator's namespace test, with tern
//! started by [`xdp_tern`]), which reach nothing outside them.

mod admin;
mod bin;
mod creds;
pub mod netns;
mod ports;
pub mod prereq;
mod process;
mod raw;
mod server;
mod stun;
mod uclient;
pub mod xdp_tern;

pub use admin::http_get;
pub use bin::{coturn_bin, tern_bin, turnutils_bin};
pub use creds::{rest_credentials, rest_credentials_at, rest_password, unix_now};
pub use ports::PortBlock;
pub use process::{assert_probe_relayed, run_bounded, Output};
pub use raw::RawClient;
pub use server::{Auth, ServerKind, ServerOptions, TestServer};
pub use stun::binding_request_once;
pub use uclient::{EchoPeer, Summary};

/// Generates one `#[test]` per server kind for each listed function `fn name(kind: ServerKind)`:
/// `tern::name` and `coturn::name`. A `coturn::` test whose `turnserver` is not installed
/// skips with a note on stderr (fails with `CI` set; see [`prereq`]).
#[macro_export]
macro_rules! for_each_server {
    ($($name:ident),* $(,)?) => {
        mod tern {
            $(#[test] fn $name() { super::$name($crate::ServerKind::Tern) })*
        }
        mod coturn {
            $(#[test] fn $name() {
                if $crate::ServerKind::Coturn.available() {
                    super::$name($crate::ServerKind::Coturn)
                }
            })*
        }
    };
}
