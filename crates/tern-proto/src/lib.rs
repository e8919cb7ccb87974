//! The sans-IO TURN server core of tern. (Being written.)
mod config;
pub mod peer_filter;

pub use config::{Config, StaticUser, UserSecret};
pub use peer_filter::{IpRange, PeerFilter, PeerFilterConfig};
