//! tern's binary, as a library so its parts can be tested: the turnserver.conf reader, the
//! environment and command-line override layers, validated settings, the mapping onto
//! `tern_server::ServerConfig`, TURN REST credentials and logging setup.
//!
//! Configuration contract: every coturn key tern implements may come from the file
//! (`key=value` or a bare flag), an environment variable `TERN_<KEY>` (uppercase, `-` → `_`,
//! lists comma-separated) or a `tern serve --<key>[=value]` flag; file < environment <
//! flags. Other coturn keys draw one warning each and are ignored.

pub mod conf;
pub mod credentials;
pub mod keys;
pub mod lifecycle;
pub mod logging;
pub mod mapping;
pub mod memory;
pub mod overrides;
pub mod reload;
pub mod sessions_cli;
pub mod settings;
pub mod startup;
pub mod values;
