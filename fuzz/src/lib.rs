//! The bodies of tern's fuzz targets, one function per target, and the seed corpus
//! generator.
//!
//! Each `fuzz_targets/<name>.rs` is one line calling the function of the same name here, so
//! the same code runs under libFuzzer (`cargo +nightly fuzz run <name>`, see `run.sh`) and on
//! stable, where the main workspace's `tests/tests/fuzz_corpus.rs` replays every committed
//! seed through it. A target returns normally for any input; a panic is a finding, whether it
//! comes from tern's code or from an invariant asserted here.
//!
//! | target | what it drives |
//! |---|---|
//! | `stun_message` | `Message::parse`, then every attribute through every decoder, the integrity and fingerprint checks, and a rebuild with `MessageWriter` that must parse back alike |
//! | `attribute` | every attribute decoder on one arbitrary value |
//! | `channel_data` | `ChannelData::parse` and `parse_rfc5766` |
//! | `writer` | the encoders: `MessageWriter` with arbitrary attributes, `frame_data_indication`, stream framing of ChannelData, all read back |
//! | `stream` | the stream framer: `decode_frame` on every prefix, `frames` over the whole buffer |
//! | `proxy` | the PROXY protocol v1/v2 header decoder on every prefix |
//! | `conf` | the turnserver.conf reader, the settings built from it and their mapping onto the server's configuration |
//! | `core` | the sans-IO core: two workers, seven clients and many peers, a virtual clock, and invariants checked after every step (see [`core`]) |

pub mod conf;
pub mod core;
pub mod input;
pub mod proxy;
pub mod seeds;

pub mod stream;
pub mod wire;

pub use crate::conf::conf;
pub use crate::core::core;
pub use crate::proxy::proxy;
pub use crate::stream::stream;
pub use crate::wire::{attribute, channel_data, stun_message, writer};

/// A target's body: runs one input, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz_targets/` and `seeds/` name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("stun_message", stun_message),
    ("attribute", attribute),
    ("channel_data", channel_data),
    ("writer", writer),
    ("stream", stream),
    ("proxy", proxy),
    ("conf", conf),
    ("core", core),
];
