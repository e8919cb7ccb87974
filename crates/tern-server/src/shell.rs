//! The socket tasks around the core.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tern_proto::{
    ClientOutput, Event, FiveTuple, PeerOutput, Server, PEER_HEADROOM, PEER_TAILROOM,
};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::relay_ports::bind_range;
use crate::ServerConfig;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

struct Shared {
    core: RefCell<Server>,
    listeners: Vec<(SocketAddr, UdpSocket)>,
    /// Relay sockets indexed by `port - base_port`.
    relays: Vec<Option<UdpSocket>>,
    base_port: u16,
    /// One receive buffer for all relay sockets, with headroom and tailroom for framing.
    peer_buf: RefCell<Vec<u8>>,
}

fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn log_events(core: &mut Server) {
    while let Some(ev) = core.poll_event() {
        match ev {
            Event::AllocationCreated {
                five_tuple,
                relayed,
                username,
            } => {
                info!(client = %five_tuple.client, %relayed, %username, "allocation created");
            }
            Event::AllocationEnded {
                five_tuple,
                relayed,
                reason,
                duration,
                traffic,
            } => {
                info!(
                    client = %five_tuple.client,
                    %relayed,
                    reason = reason.as_str(),
                    duration_s = duration.as_secs(),
                    bytes_to_peers = traffic.bytes_to_peers,
                    bytes_to_client = traffic.bytes_to_client,
                    "allocation ended"
                );
            }
        }
    }
}

pub async fn serve(mut config: ServerConfig, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let mut listeners = Vec::new();
    for addr in &config.listen {
        let std = std::net::UdpSocket::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on udp {addr}: {e}")))?;
        std.set_nonblocking(true)?;
        let sock = UdpSocket::from_std(std)?;
        listeners.push((sock.local_addr()?, sock));
    }
    let range = config.core.relay_port_range.clone();
    let bound = bind_range(config.relay_bind_ip, range.clone())?;
    config.core.relay_ports = bound.sockets.iter().map(|(p, _)| *p).collect();
    let base_port = *range.start();
    let mut relays: Vec<Option<UdpSocket>> = (range.clone()).map(|_| None).collect();
    for (port, s) in bound.sockets {
        relays[usize::from(port - base_port)] = Some(UdpSocket::from_std(s)?);
    }
    for (addr, _) in &listeners {
        info!(listen = %addr, "tern listening (udp)");
    }
    info!(
        relay_ip = %config.relay_bind_ip,
        advertised = %config.core.relayed_ip,
        ports = config.core.relay_ports.len(),
        min_port = range.start(),
        max_port = range.end(),
        "relay ports bound"
    );
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
    let shared = Rc::new(Shared {
        core: RefCell::new(Server::new(config.core, Instant::now(), seed)),
        listeners,
        relays,
        base_port,
        peer_buf: RefCell::new(vec![0u8; PEER_HEADROOM + MAX_DATAGRAM + PEER_TAILROOM]),
    });
    let mut tasks = Vec::new();
    for i in 0..shared.listeners.len() {
        tasks.push(tokio::task::spawn_local(client_loop(shared.clone(), i)));
    }
    for (i, s) in shared.relays.iter().enumerate() {
        if s.is_some() {
            tasks.push(tokio::task::spawn_local(peer_loop(shared.clone(), i)));
        }
    }
    tasks.push(tokio::task::spawn_local(timer_loop(shared.clone())));
    shutdown.await;
    for t in &tasks {
        t.abort();
    }
    let mut core = shared.core.borrow_mut();
    core.shutdown(Instant::now());
    log_events(&mut core);
    info!("tern stopped");
    Ok(())
}

async fn client_loop(shared: Rc<Shared>, index: usize) {
    let (local, sock) = &shared.listeners[index];
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut reply = Vec::with_capacity(1500);
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "recv on listening socket");
                continue;
            }
        };
        let five_tuple = FiveTuple {
            client: from,
            server: *local,
        };
        let out = {
            let mut core = shared.core.borrow_mut();
            let out = core.handle_client_datagram(
                Instant::now(),
                wall_now(),
                five_tuple,
                &buf[..n],
                &mut reply,
            );
            log_events(&mut core);
            out
        };
        match out {
            ClientOutput::Reply => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    log_error_reply(&buf[..n], &reply, from);
                }
                if let Err(e) = sock.send_to(&reply, from).await {
                    debug!(error = %e, client = %from, "send reply");
                }
            }
            ClientOutput::Relay {
                relay_port,
                peer,
                payload,
            } => {
                let idx = usize::from(relay_port.wrapping_sub(shared.base_port));
                if let Some(Some(relay)) = shared.relays.get(idx) {
                    // UDP: a full socket buffer drops the packet, as the network would.
                    let _ = relay.try_send_to(&buf[payload], peer);
                }
            }
            ClientOutput::Drop(_) => {}
        }
    }
}

/// Attributes whose 4-byte values are numbers worth logging; nothing that could carry a
/// credential.
const NUMERIC: &[u16] = &[
    tern_wire::attr::LIFETIME,
    tern_wire::attr::CHANNEL_NUMBER,
    tern_wire::attr::REQUESTED_TRANSPORT,
    tern_wire::attr::REQUESTED_ADDRESS_FAMILY,
];

/// At debug level, says which request failed and why.
fn log_error_reply(request: &[u8], reply: &[u8], client: SocketAddr) {
    use tern_wire::{attr, Class, Message};
    let Ok(msg) = Message::parse(reply) else {
        return;
    };
    if msg.class() != Class::Error {
        return;
    }
    let Some((code, reason)) = msg
        .get(attr::ERROR_CODE)
        .and_then(|a| attr::decode_error_code(a.value).ok())
    else {
        return;
    };
    // Attribute types, and the values of the short numeric ones (LIFETIME, CHANNEL-NUMBER, ...).
    let attrs: Vec<String> = Message::parse(request)
        .map(|m| {
            m.attributes()
                .map(|a| match a.value {
                    [x, y, z, w] if NUMERIC.contains(&a.typ) => {
                        format!("{:#06x}={:02x}{:02x}{:02x}{:02x}", a.typ, x, y, z, w)
                    }
                    _ => format!("{:#06x}", a.typ),
                })
                .collect()
        })
        .unwrap_or_default();
    debug!(%client, method = msg.method().name(), code, reason, request_attributes = ?attrs, "error response");
}

async fn peer_loop(shared: Rc<Shared>, index: usize) {
    let sock = shared.relays[index].as_ref().expect("bound relay socket");
    let port = shared.base_port + index as u16;
    loop {
        if let Err(e) = sock.readable().await {
            warn!(port, error = %e, "relay socket failed");
            return;
        }
        // Drain what is queued, borrowing the shared buffer only between awaits.
        loop {
            let mut buf = shared.peer_buf.borrow_mut();
            let recv = sock.try_recv_from(&mut buf[PEER_HEADROOM..PEER_HEADROOM + MAX_DATAGRAM]);
            let (n, from) = match recv {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(port, error = %e, "recv on relay socket");
                    break;
                }
            };
            let out = shared
                .core
                .borrow_mut()
                .handle_peer_datagram(port, from, &mut buf, n);
            if let PeerOutput::Forward { five_tuple, range } = out {
                if let Some((_, listener)) = shared
                    .listeners
                    .iter()
                    .find(|(a, _)| *a == five_tuple.server)
                {
                    let _ = listener.try_send_to(&buf[range], five_tuple.client);
                }
            }
        }
    }
}

async fn timer_loop(shared: Rc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut core = shared.core.borrow_mut();
        core.handle_timeout(Instant::now());
        log_events(&mut core);
    }
}
