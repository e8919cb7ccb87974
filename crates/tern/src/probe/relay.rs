//! The relay steps: a second local socket plays the peer; the client creates a permission for
//! it, moves data both ways in Send/Data indications, binds a channel and moves data both
//! ways in ChannelData messages. The client's side goes over its link (UDP, TCP or TLS); the
//! peer always speaks UDP, as WebRTC peers do.
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tern_wire::{
    attr, classify, ChannelData, ChannelNumber, Class, Message, MessageWriter, Method, PacketKind,
};

use super::client::{transaction_id, Session, TxError};
use super::link::{Datagrams, Inbox, Link};
use super::Report;

/// The channel the probe binds: the first one RFC 8656 §12 allows.
const CHANNEL: u16 = ChannelNumber::MIN;
/// Times test data is sent, spread over the timeout, before giving up on it. Over a stream
/// the client's leg cannot lose it, but the relay's leg to the peer is UDP.
const DATA_SENDS: u32 = 3;
/// Most messages read while waiting for one (bounds a flood of strays).
const MAX_READS: usize = 64;

const NEVER_REACHED_PEER: &str = "never reached the peer: does the server relay from another \
    address than the relayed one, or does a firewall drop traffic to the peer?";
const NEVER_ARRIVED: &str = "data sent by the peer to the relayed address never arrived: \
    something between the peer and the server rewrites source addresses (source NAT), or the \
    relay port is not forwarded";

/// Runs the relay steps for an allocation at `relayed`, with the peer socket on `peer_ip`.
/// `stun` is the server's UDP address the peer sends a Binding request to, to learn how the
/// server sees it (`None`: the server was reached in another family than the peer's).
/// Stops at the first failure.
pub(super) fn exchange(
    session: &mut Session,
    report: &mut Report,
    relayed: SocketAddr,
    peer_ip: IpAddr,
    stun: Option<SocketAddr>,
) {
    let peer = match UdpSocket::bind((peer_ip, 0)) {
        Ok(peer) => peer,
        Err(e) => {
            let what = format!("cannot open a socket on {peer_ip}: {e}");
            report.fail(
                "peer",
                what,
                "choose a local address for the peer with --peer-bind",
            );
            return;
        }
    };
    if let Err(e) = steps(session, report, relayed, &peer, stun) {
        report.fail(
            "peer",
            format!("socket error: {e}"),
            "a local socket failed",
        );
    }
}

/// The steps after the peer socket is open; `Err` when a local socket fails.
fn steps(
    session: &mut Session,
    report: &mut Report,
    relayed: SocketAddr,
    peer: &UdpSocket,
    stun: Option<SocketAddr>,
) -> io::Result<()> {
    let peer_local = peer.local_addr()?;
    let seen = match stun {
        Some(stun) => seen_by_server(peer, stun, session.timeout)?,
        None => None,
    };
    let how = match (seen, stun) {
        (Some(seen), _) => format!("the server sees it as {seen}"),
        (None, Some(stun)) => format!(
            "its Binding request to UDP {stun} got no answer (--stun-port), so the server is \
             assumed to see it as {peer_local}"
        ),
        (None, None) => format!(
            "the server was reached in the other address family, so the server is assumed to \
             see it as {peer_local}"
        ),
    };
    report.ok(
        "peer",
        format!("a second socket {peer_local} plays the peer; {how}"),
    );
    let peer_seen = seen.unwrap_or(peer_local);
    let timeout = session.timeout;
    let mut peer_rx = Datagrams::new(peer);

    let add_peer = |w: &mut MessageWriter<'_>| {
        w.xor_address(attr::XOR_PEER_ADDRESS, peer_seen);
    };
    let step = "create-permission";
    if !request(session, report, step, Method::CREATE_PERMISSION, &add_peer) {
        return Ok(());
    }
    report.ok(
        step,
        format!("the relay accepts data from {}", peer_seen.ip()),
    );

    // Send indication: client -> server -> peer.
    let step = "send-indication";
    let data = payload("client->peer")?;
    let send = || {
        session.indicate(Method::SEND, &|w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, peer_seen);
            w.attr(attr::DATA, &data);
        })
    };
    let r = deliver(&mut peer_rx, timeout, send, |b| b == data);
    // The server naming another address than the peer's own means a source NAT in between:
    // the relay then sends to the translator, whose mapping may not lead back to the peer.
    let why = if peer_seen.ip() != peer_local.ip() && !peer_local.ip().is_unspecified() {
        format!(
            "data sent in a Send indication never reached the peer, and the server sees the \
             peer as {peer_seen} although it sends from {peer_local}: something between the \
             peer and the server rewrites source addresses (source NAT, e.g. kube-proxy with \
             externalTrafficPolicy: Cluster, or a masquerade rule), so the relay answers the \
             translator instead of the peer"
        )
    } else {
        format!("data sent in a Send indication {NEVER_REACHED_PEER}")
    };
    let Some(from) = landed(report, step, r, "the peer got nothing", why) else {
        return Ok(());
    };
    report.ok(
        step,
        format!(
            "the peer got {} bytes from {}",
            data.len(),
            source(from, relayed)
        ),
    );

    // Data indication: peer -> relayed address -> client.
    let step = "data-indication";
    let data = payload("peer->client")?;
    let send = || peer.send_to(&data, relayed).map(drop);
    let arrived = |b: &[u8]| data_indication(b).is_some_and(|d| d == data);
    let r = deliver(&mut session.link, timeout, send, arrived);
    if landed(
        report,
        step,
        r,
        "the client got no Data indication",
        NEVER_ARRIVED,
    )
    .is_none()
    {
        return Ok(());
    }
    report.ok(
        step,
        format!("the client got {} bytes from the peer", data.len()),
    );

    let step = "channel-bind";
    let bind = |w: &mut MessageWriter<'_>| {
        let [hi, lo] = CHANNEL.to_be_bytes();
        w.attr(attr::CHANNEL_NUMBER, &[hi, lo, 0, 0]);
        w.xor_address(attr::XOR_PEER_ADDRESS, peer_seen);
    };
    if !request(session, report, step, Method::CHANNEL_BIND, &bind) {
        return Ok(());
    }
    report.ok(step, format!("channel {CHANNEL:#06x} bound to {peer_seen}"));

    // ChannelData: client -> channel -> peer.
    let step = "channel-data";
    let data = payload("client->channel->peer")?;
    let channel = ChannelNumber::new(CHANNEL).expect("CHANNEL is in range");
    let send = || session.link.send_channel_data(channel, &data);
    let r = deliver(&mut peer_rx, timeout, send, |b| b == data);
    let why = format!("data sent through the channel {NEVER_REACHED_PEER}");
    let Some(from) = landed(report, step, r, "the peer got nothing", why) else {
        return Ok(());
    };
    report.ok(
        step,
        format!(
            "the peer got {} bytes from {}",
            data.len(),
            source(from, relayed)
        ),
    );

    // ChannelData: peer -> relayed address -> channel -> client.
    let data = payload("peer->channel->client")?;
    let send = || peer.send_to(&data, relayed).map(drop);
    let arrived = |b: &[u8]| {
        let cd = (classify(b) == PacketKind::ChannelData).then(|| ChannelData::parse(b).ok());
        cd.flatten()
            .is_some_and(|cd| cd.channel.get() == CHANNEL && cd.payload == data)
    };
    let r = deliver(&mut session.link, timeout, send, arrived);
    let missing = "the client got no ChannelData from the peer";
    if landed(report, step, r, missing, NEVER_ARRIVED).is_none() {
        return Ok(());
    }
    report.ok(
        step,
        format!(
            "the client got {} bytes from the peer on the channel",
            data.len()
        ),
    );
    Ok(())
}

/// Sends a request that needs no answer but success; reports an error answer or none.
fn request(
    session: &mut Session,
    report: &mut Report,
    step: &str,
    method: Method,
    build: &dyn Fn(&mut MessageWriter<'_>),
) -> bool {
    match session.request(method, build) {
        Ok(reply) => match reply.answer.error() {
            None => true,
            Some((code, reason)) => {
                report.error_response(step, code, &reason, reply.with_credentials);
                false
            }
        },
        Err(e) => {
            report.no_answer(step, e);
            false
        }
    }
}

/// The peer socket's address as the server at `stun` (UDP) sees it: what a Binding request
/// from it says; `None` without an answer.
fn seen_by_server(
    peer: &UdpSocket,
    stun: SocketAddr,
    timeout: Duration,
) -> io::Result<Option<SocketAddr>> {
    let link = Link::udp(peer.try_clone()?, stun, false);
    let mut probe = Session::new(link, timeout, None);
    let reply = probe.request(Method::BINDING, &|_| {});
    Ok(reply
        .ok()
        .and_then(|r| r.answer.xor_address(attr::XOR_MAPPED_ADDRESS)))
}

/// `tag` and eight random bytes, so a stray datagram cannot pass for ours.
fn payload(tag: &str) -> io::Result<Vec<u8>> {
    let mut data = format!("tern-probe {tag} ").into_bytes();
    data.extend_from_slice(&transaction_id()?.0[..8]);
    Ok(data)
}

/// The DATA of a Data indication.
fn data_indication(b: &[u8]) -> Option<&[u8]> {
    let msg = Message::parse(b).ok()?;
    let is_data = msg.method() == Method::DATA && msg.class() == Class::Indication;
    is_data
        .then(|| msg.get(attr::DATA))
        .flatten()
        .map(|a| a.value)
}

fn source(from: SocketAddr, relayed: SocketAddr) -> String {
    if from == relayed {
        format!("the relayed address {from}")
    } else {
        format!("{from} (not the relayed address {relayed}: the relay is behind NAT)")
    }
}

/// The source of a message that arrived, or a failed step.
fn landed(
    report: &mut Report,
    step: &str,
    r: Result<Option<SocketAddr>, TxError>,
    missing: &str,
    diagnosis: impl std::fmt::Display,
) -> Option<SocketAddr> {
    match r {
        Ok(Some(from)) => Some(from),
        Ok(None) => {
            report.fail(step, missing, diagnosis);
            None
        }
        Err(e) => {
            report.no_answer(step, e);
            None
        }
    }
}

/// Sends with `send` up to [`DATA_SENDS`] times, spread over `timeout`, until `arrived`
/// accepts a message read from `rx`; returns that message's source.
fn deliver(
    rx: &mut impl Inbox,
    timeout: Duration,
    mut send: impl FnMut() -> io::Result<()>,
    mut arrived: impl FnMut(&[u8]) -> bool,
) -> Result<Option<SocketAddr>, TxError> {
    let start = Instant::now();
    for i in 1..=DATA_SENDS {
        send()?;
        let until = start + timeout * i / DATA_SENDS;
        for _ in 0..MAX_READS {
            match rx.recv_until(until)? {
                Some((b, from)) if arrived(b) => return Ok(Some(from)),
                Some(_) => {}
                None => break,
            }
        }
    }
    Ok(None)
}
