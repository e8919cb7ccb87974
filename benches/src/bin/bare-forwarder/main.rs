//! `bare-forwarder`: the kernel's ceiling for a relay with TURN's path shape and no TURN.
//!
//! Path shape over UDP (the same sockets and system calls a TURN relay uses for ChannelData):
//!
//! ```text
//! client --[4-byte header | payload]--> listening socket (one, shared by all clients)
//!          look up the client's source address (one hash lookup, like the 5-tuple)
//!          strip the header
//!        relay socket of that client (bound in --min-port..=--max-port, like a relay port)
//!          --[payload]--> peer
//! peer   --[payload]--> relay socket: check the source is the client's peer (like a permission)
//!          prepend the 4-byte header in the receive buffer's headroom
//!        listening socket --[4-byte header | payload]--> client
//! ```
//!
//! The header is shaped like ChannelData: a 2-byte session tag and a 2-byte length. Clients
//! register with a `HELO` handshake naming their peer and get `PORT` + relay port back (see
//! `tern_bench::load::bare`). I/O is one thread: epoll, `recvmmsg` on every socket (64 per
//! call), `sendmmsg` for packets that leave through the same socket (consecutive packets of
//! one client towards its peer; everything towards clients, which shares the listening socket).
//!
//! The same address also takes TCP connections, the client leg of TURN over TCP with the peer
//! leg UDP: the stream starts with the same handshake, then carries the frames padded to four
//! bytes as TURN-over-TCP ChannelData is (see [`stream`]). Both paths share the one epoll loop.

mod stream;

use std::collections::HashMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use clap::Parser;
use tern_bench::load::bare::{answer_hello, parse_hello, session_tag, ForwarderArgs, RelayPorts};
use tern_bench::load::sys::{
    enable_gro, raise_nofile_limit, Epoll, Interest, RecvBatch, SendBatch,
};

const BATCH: usize = 64;
/// The epoll token of the UDP listening socket.
const LISTEN: u64 = u64::MAX;
/// The epoll token of the TCP listening socket.
const LISTEN_TCP: u64 = u64::MAX - 1;
/// The other tokens: an index in the low 32 bits, what it indexes above them.
const KIND_SHIFT: u32 = 32;
/// A UDP client's relay socket (index into the UDP sessions).
const KIND_UDP_RELAY: u64 = 0;
/// A TCP connection (index into the connections).
const KIND_STREAM: u64 = 1;
/// A TCP connection's relay socket.
const KIND_STREAM_RELAY: u64 = 2;

/// The epoll token of index `index` of kind `kind`.
fn token(kind: u64, index: usize) -> u64 {
    (kind << KIND_SHIFT) | index as u64
}

/// The index in epoll token `token`.
fn index_of(token: u64) -> usize {
    (token & u64::from(u32::MAX)) as usize
}

#[derive(Parser, Debug)]
#[command(
    about = "Bare forwarder with TURN's path shape, client leg UDP or TCP (loopback benchmarks)"
)]
struct Args {
    #[command(flatten)]
    forwarder: ForwarderArgs,
}

fn main() -> anyhow::Result<()> {
    // Its own sends (to peers, to clients) use UDP GSO, as tern's do; NO_GSO=1 turns that
    // off. What the clients send is the generator's `--shape`.
    let gso = std::env::var_os("NO_GSO").is_none();
    let args = Args::parse().forwarder;
    let mut epoll = Epoll::new()?;
    let mut ports = RelayPorts::new(&args);
    // A relay socket per client, and for TCP clients their connection too.
    let range = u64::from(args.max_port.saturating_sub(args.min_port)) + 1;
    raise_nofile_limit(2 * range + 64);
    let mut udp = Udp::new(args.bind_listener()?, gso);
    epoll.add(udp.listen.as_fd(), LISTEN, Interest::READABLE)?;
    let listener = args.bind_stream_listener()?;
    epoll.add(&listener, LISTEN_TCP, Interest::READABLE)?;
    let mut tcp = stream::Streams::new(listener, gso);
    let mut ready = Vec::with_capacity(256);
    let stop = Instant::now() + Duration::from_secs(args.max_seconds);
    eprintln!("bare-forwarder listening on {} (UDP and TCP)", args.listen);
    while Instant::now() < stop {
        epoll.wait(&mut ready, Duration::from_millis(100))?;
        for &r in ready.iter() {
            match r.token() {
                LISTEN => udp.on_listen(&epoll, &mut ports)?,
                t if t >> KIND_SHIFT == KIND_UDP_RELAY => udp.on_relay(index_of(t))?,
                _ => tcp.on_ready(r, &epoll, &mut ports)?,
            }
        }
        udp.end_turn()?;
        tcp.end_turn(&epoll, &mut ports);
    }
    let [gone, malformed, no_port] = tcp.closed();
    eprintln!(
        "bare-forwarder: {} UDP clients; TCP connections closed: {gone} by the client or a \
         failed socket, {malformed} malformed, {no_port} without a relay port",
        udp.sessions.len()
    );
    Ok(())
}

/// A UDP client.
struct Session {
    client: SocketAddrV4,
    peer: SocketAddrV4,
    tag: [u8; 2],
    relay: UdpSocket,
}

/// The UDP path: the listening socket, its clients and the batches.
struct Udp {
    listen: UdpSocket,
    sessions: Vec<Session>,
    by_client: HashMap<SocketAddrV4, usize>,
    /// Receives on the listening socket.
    lrb: RecvBatch,
    /// Receives on the relay sockets, with headroom for the header.
    rb: RecvBatch,
    to_peer: SendBatch,
    to_clients: SendBatch,
}

impl Udp {
    fn new(listen: UdpSocket, gso: bool) -> Self {
        // The listening socket takes UDP GRO, as tern's do: a client's burst can arrive as one
        // buffer of up to 64 KB, split here into its datagrams.
        enable_gro(listen.as_fd());
        Self {
            listen,
            sessions: Vec::new(),
            by_client: HashMap::new(),
            lrb: RecvBatch::new(BATCH, 65_535, 0),
            rb: RecvBatch::new(BATCH, 2048, 4),
            to_peer: SendBatch::new(BATCH, 2048, gso),
            to_clients: SendBatch::new(BATCH, 2048, gso),
        }
    }

    /// Drains the listening socket: hellos register clients, frames go to their peers.
    fn on_listen(&mut self, epoll: &Epoll, ports: &mut RelayPorts) -> anyhow::Result<()> {
        let lfd = self.listen.as_fd();
        loop {
            let n = self.lrb.recv(lfd)?;
            let mut current: Option<usize> = None;
            let lrb = &self.lrb;
            let datagrams = (0..n).flat_map(|i| {
                let (all, src) = lrb.get(i);
                all.chunks(lrb.segment(i).max(1)).map(move |pkt| (pkt, src))
            });
            for (pkt, src) in datagrams {
                let Some(&k) = self.by_client.get(&src) else {
                    let Some(peer) = parse_hello(pkt) else {
                        continue;
                    };
                    let Some(relay) = ports.bind_next() else {
                        continue;
                    };
                    let k = self.sessions.len();
                    epoll.add(&relay, token(KIND_UDP_RELAY, k), Interest::READABLE)?;
                    answer_hello(&self.listen, &relay, src)?;
                    self.sessions.push(Session {
                        client: src,
                        peer,
                        tag: session_tag(k),
                        relay,
                    });
                    self.by_client.insert(src, k);
                    continue;
                };
                if parse_hello(pkt).is_some() {
                    // A repeated hello: answer again.
                    answer_hello(&self.listen, &self.sessions[k].relay, src)?;
                    continue;
                }
                if pkt.len() < 4 {
                    continue;
                }
                let len = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
                let Some(payload) = pkt.get(4..4 + len) else {
                    continue;
                };
                if current != Some(k) || self.to_peer.is_full() {
                    if let Some(c) = current {
                        self.to_peer.flush(&self.sessions[c].relay)?;
                    }
                    current = Some(k);
                }
                self.to_peer.push(self.sessions[k].peer, payload);
            }
            if let Some(c) = current {
                self.to_peer.flush(&self.sessions[c].relay)?;
            }
            if n < BATCH {
                return Ok(());
            }
        }
    }

    /// Drains session `k`'s relay socket: its peer's datagrams, framed, towards the client.
    fn on_relay(&mut self, k: usize) -> anyhow::Result<()> {
        let Some(s) = self.sessions.get(k) else {
            return Ok(());
        };
        let fd = s.relay.as_fd();
        loop {
            let n = self.rb.recv(fd)?;
            for i in 0..n {
                let (buf, src) = self.rb.get_with_headroom(i);
                if src != s.peer {
                    continue;
                }
                let len = (buf.len() - 4) as u16;
                buf[..2].copy_from_slice(&s.tag);
                buf[2..4].copy_from_slice(&len.to_be_bytes());
                if self.to_clients.is_full() {
                    self.to_clients.flush(&self.listen)?;
                }
                self.to_clients.push(s.client, buf);
            }
            if n < BATCH {
                return Ok(());
            }
        }
    }

    /// Sends what the turn queued towards clients.
    fn end_turn(&mut self) -> anyhow::Result<()> {
        if !self.to_clients.is_empty() {
            self.to_clients.flush(&self.listen)?;
        }
        Ok(())
    }
}
