//! The I/O shell of tern: binds the listening socket(s) and one socket per relay port, and
//! drives the sans-IO core from `tern-proto` with datagrams, time and timer ticks.
//!
//! One thread, one current-thread runtime: the core lives in a `RefCell` that every socket
//! task borrows only between awaits, so no lock is taken per packet.

mod relay_ports;
mod shell;
mod sys;

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

/// Binds every socket, then serves until `shutdown` completes; allocations end and their
/// ports are released before it returns.
///
/// Its tasks run on a `LocalSet` on the calling thread: await it with `block_on` of any tokio
/// runtime (the future is not `Send`), or use [`run_blocking`].
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    tokio::task::LocalSet::new()
        .run_until(shell::serve(config, shutdown))
        .await
}

/// Builds a current-thread runtime and runs [`run`] on it until `shutdown` completes.
pub fn run_blocking(config: ServerConfig, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(config, shutdown))
}
