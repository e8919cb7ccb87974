//! The I/O shell of tern: binds the listening and relay sockets, drives the sans-IO core
//! from `tern-proto` with datagrams, time and timers. (Being written.)

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// What the server binds and how the core behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// UDP addresses to listen on for STUN/TURN (`listening-ip` × `listening-port`).
    pub listen: Vec<SocketAddr>,
    /// The IP relay sockets bind to (`relay-ip`, else the private part of `external-ip`,
    /// else the unspecified address).
    pub relay_bind_ip: IpAddr,
    /// The core's configuration. `core.relay_port_range` is the range to bind; the server
    /// fills `core.relay_ports` with the ports it managed to bind.
    pub core: tern_proto::Config,
}

/// Runs the server until `shutdown` completes.
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let _ = (config, shutdown);
    Err(io::Error::other("tern-server is being written"))
}
