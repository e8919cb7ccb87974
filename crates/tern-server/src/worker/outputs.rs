//! A worker acting on its core's output queue, in order: transmits, relay claims, channel
//! changes (for the XDP fast path) and events for the log.

use std::net::SocketAddr;
use std::os::fd::AsFd;

use tern_proto::{Destination, Event, Family, Output, RelayEndpoint, Transport};
use tern_sys::{send_to, Epoll, Interest};
use tracing::{debug, info, warn};

use super::Worker;
use crate::control::IoErrorKind;
use crate::relay_ports::RelayTable;
use crate::token::Token;
use crate::usage::UsageRecord;

impl Worker {
    /// Acts on the core's outputs in the order it queued them, so that a new allocation's
    /// relay socket is claimed before the reply that names it goes out. `request`, at debug
    /// level, is the request a reply answers (to log why it failed).
    pub(super) fn act_on_outputs(&mut self, request: Option<&[u8]>) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit(t) => {
                    let (fd, to, kind) = match t.destination {
                        Destination::Client(five_tuple) => {
                            let listener = match five_tuple.transport {
                                Transport::Udp { listener } => listener,
                                Transport::Stream { conn, .. } => {
                                    if let Some(request) = request {
                                        log_error_reply(request, t.contents, five_tuple.client);
                                    }
                                    // Written at the end of the loop's turn (flush_conns).
                                    if !self.conns.queue(conn, &[t.contents]) {
                                        self.conns.backlog_drops += 1;
                                    }
                                    continue;
                                }
                                _ => continue,
                            };
                            let Some(l) = self.listeners.get(listener.index()) else {
                                continue;
                            };
                            if let Some(request) = request {
                                log_error_reply(request, t.contents, five_tuple.client);
                            }
                            let fd = l.socket.as_fd();
                            (fd, five_tuple.client, IoErrorKind::SendToClient)
                        }
                        Destination::Peer { relayed, peer } => {
                            let Some((sock, _)) = self.relays.socket(relayed) else {
                                continue;
                            };
                            (sock.as_fd(), peer, IoErrorKind::SendToPeer)
                        }
                        _ => continue,
                    };
                    if let Err(e) = send_to(fd, t.contents, to) {
                        self.io_errors[kind.index()] += 1;
                        debug!(error = %e, to = %to, "{}", kind.label());
                    }
                }
                Output::Claim { relayed, .. } => claim(&self.relays, &self.epoll, self.id, relayed),
                // The socket stays watched by this worker until another one claims it, so
                // stray peer datagrams are read and counted as dropped (no allocation) rather
                // than left queued for the port's next allocation. With the XDP fast path the
                // core holds the port until now (its map entries went on the ChannelUnbound
                // outputs before this one); otherwise this does nothing.
                Output::Release { relayed, .. } => self.core.handle_released(relayed),
                // The XDP fast path's maps follow these two outputs alone.
                #[cfg(feature = "xdp")]
                Output::ChannelBound(b) => {
                    if let Some(feed) = &mut self.xdp {
                        feed.bound(&mut self.core, std::time::Instant::now(), b);
                    }
                }
                #[cfg(feature = "xdp")]
                Output::ChannelUnbound(b) => {
                    if let Some(feed) = &mut self.xdp {
                        feed.unbound(&mut self.core, std::time::Instant::now(), b);
                    }
                }
                #[cfg(not(feature = "xdp"))]
                Output::ChannelBound(_) | Output::ChannelUnbound(_) => {}
                #[cfg_attr(not(feature = "xdp"), allow(unused_mut))]
                Output::Event(mut event) => {
                    #[cfg(feature = "xdp")]
                    if let Some(feed) = &mut self.xdp {
                        feed.complete(&mut event);
                    }
                    self.note_allocation(&event);
                    self.log_event(event);
                }
                _ => {}
            }
        }
    }

    /// Marks a stream connection as holding an allocation or not (one without is closed
    /// when idle).
    fn note_allocation(&mut self, event: &Event) {
        let (five_tuple, allocated) = match event {
            Event::AllocationCreated { five_tuple, .. } => (five_tuple, true),
            Event::AllocationEnded { five_tuple, .. } => (five_tuple, false),
            _ => return,
        };
        if let Transport::Stream { conn, .. } = five_tuple.transport {
            if let Some(c) = self.conns.get_mut(conn) {
                c.allocated = allocated;
            }
        }
    }

    /// Logs allocations beginning and ending.
    fn log_event(&mut self, event: Event) {
        match event {
            Event::AllocationCreated {
                five_tuple,
                relayed,
                additional,
                username,
            } => {
                let transport = five_tuple.transport.label().label();
                let family = family_label(relayed, additional);
                match additional {
                    Some(additional) => {
                        info!(client = %five_tuple.client, transport, family, %relayed, %additional, %username, worker = self.id, "allocation created")
                    }
                    None => {
                        info!(client = %five_tuple.client, transport, family, %relayed, %username, worker = self.id, "allocation created")
                    }
                }
            }
            Event::AllocationEnded {
                five_tuple,
                relayed,
                additional,
                username,
                reason,
                duration,
                traffic,
            } => {
                info!(
                    client = %five_tuple.client,
                    transport = five_tuple.transport.label().label(),
                    family = family_label(relayed, additional),
                    %relayed,
                    additional = additional.map(tracing::field::display),
                    %username,
                    reason = reason.label(),
                    duration_s = duration.as_secs(),
                    packets_to_peers = traffic.packets_to_peers,
                    bytes_to_peers = traffic.bytes_to_peers,
                    packets_to_client = traffic.packets_to_client,
                    bytes_to_client = traffic.bytes_to_client,
                    peers = traffic.peers,
                    relayed_data = traffic.relayed(),
                    worker = self.id,
                    "allocation ended"
                );
                if self.port.usage.enabled() {
                    let duration_s = duration.as_secs();
                    self.port.usage.submit(UsageRecord {
                        username,
                        client_ip: five_tuple.client.ip(),
                        transport: five_tuple.transport.label(),
                        family: match (Family::of(relayed.ip()), additional) {
                            (_, Some(_)) => "dual",
                            (f, None) => f.label(),
                        },
                        start: super::wall_now().saturating_sub(duration_s),
                        duration_s,
                        reason,
                        traffic,
                    });
                }
            }
            // The address and the limits, never the username (a password typed into the
            // username field would land here) nor anything of the request.
            Event::AuthLockout {
                client,
                trigger,
                failures,
                window,
                duration,
            } => {
                warn!(
                    %client,
                    trigger = trigger.label(),
                    failures,
                    window_s = window.as_secs(),
                    lockout_s = duration.as_secs(),
                    worker = self.id,
                    "authentication lockout: too many failed integrity checks; requests from this address are dropped"
                );
            }
            Event::RelayedAddressEnded {
                five_tuple,
                relayed,
                reason,
            } => {
                info!(
                    client = %five_tuple.client,
                    family = family_label(relayed, None),
                    %relayed,
                    reason = reason.label(),
                    "relayed address ended; the allocation relays on in the other family"
                );
            }
            _ => {}
        }
    }
}

/// The `family` of an allocation's log lines: `ipv4`, `ipv6`, or `ipv4+ipv6` for a dual
/// allocation.
fn family_label(relayed: SocketAddr, additional: Option<SocketAddr>) -> &'static str {
    match (Family::of(relayed.ip()), additional) {
        (_, Some(_)) => "ipv4+ipv6",
        (f, None) => f.label(),
    }
}

/// Makes worker `id` the reader of `relayed`'s socket and watches it.
fn claim(relays: &RelayTable, epoll: &Epoll, id: u32, relayed: RelayEndpoint) {
    let Some((sock, _)) = relays.socket(relayed) else {
        return;
    };
    relays.claim(relayed, id);
    let token = Token::Relay(relayed).encode();
    if let Err(e) = epoll.add(sock, token, Interest::READABLE) {
        debug!(port = relayed.port, error = %e, "watch relay socket");
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
                        format!("{:#06x}={x:02x}{y:02x}{z:02x}{w:02x}", a.typ)
                    }
                    _ => format!("{:#06x}", a.typ),
                })
                .collect()
        })
        .unwrap_or_default();
    debug!(%client, method = msg.method().name(), code, reason, request_attributes = ?attrs, "error response");
}
