//! `bare-forwarder`: the kernel's ceiling for a relay with TURN's path shape and no TURN.
//!
//! Path shape (the same sockets and system calls a TURN relay uses for ChannelData):
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

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clap::Parser;
use tern_bench::load::bare::{parse_hello, PORT};
use tern_bench::load::net::bind_udp;
use tern_bench::load::sys::{enable_gro, Epoll, RecvBatch, SendBatch};

const BATCH: usize = 64;
const LISTEN: u64 = u64::MAX;

#[derive(Parser, Debug)]
#[command(about = "Bare UDP forwarder with TURN's path shape (loopback benchmarks)")]
struct Args {
    /// The listening address.
    #[arg(long, default_value = "127.0.0.1:3478")]
    listen: SocketAddrV4,
    /// The address relay sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    relay_ip: Ipv4Addr,
    /// First relay port.
    #[arg(long, default_value_t = 49152)]
    min_port: u16,
    /// Last relay port.
    #[arg(long, default_value_t = 49252)]
    max_port: u16,
    /// Exit after this many seconds (a bound for benchmark runs).
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
}

struct Session {
    client: SocketAddrV4,
    peer: SocketAddrV4,
    tag: [u8; 2],
    relay: UdpSocket,
}

fn main() -> anyhow::Result<()> {
    // UDP GSO on by default (the best batched I/O there is); NO_GSO=1 compares without it.
    tern_bench::load::sys::set_gso(std::env::var_os("NO_GSO").is_none());
    let args = Args::parse();
    anyhow::ensure!(
        args.listen.ip().is_loopback() && args.relay_ip.is_loopback(),
        "loopback only"
    );
    let listen = bind_udp(args.listen)?;
    let lfd = listen.as_raw_fd();
    let mut epoll = Epoll::new()?;
    epoll.add(lfd, LISTEN)?;
    let mut sessions: Vec<Session> = Vec::new();
    let mut by_client: HashMap<SocketAddrV4, usize> = HashMap::new();
    let mut next_port = args.min_port;
    // The listening socket takes UDP GRO, as tern's do: a client's burst can arrive as one
    // buffer of up to 64 KB, split here into its datagrams.
    enable_gro(lfd);
    let mut lrb = RecvBatch::new(BATCH, 65_535, 0);
    let mut rb = RecvBatch::new(BATCH, 2048, 4);
    let mut to_peer = SendBatch::new(BATCH, 2048);
    let mut to_clients = SendBatch::new(BATCH, 2048);
    let mut ready = Vec::with_capacity(256);
    let stop = Instant::now() + Duration::from_secs(args.max_seconds);
    eprintln!("bare-forwarder listening on {}", args.listen);
    while Instant::now() < stop {
        epoll.wait(&mut ready, 100)?;
        for &token in &ready {
            if token == LISTEN {
                loop {
                    let n = lrb.recv(lfd)?;
                    let mut current: Option<usize> = None;
                    let datagrams = (0..n).flat_map(|i| {
                        let (all, src) = lrb.get(i);
                        all.chunks(lrb.segment(i).max(1)).map(move |pkt| (pkt, src))
                    });
                    for (pkt, src) in datagrams {
                        let Some(&k) = by_client.get(&src) else {
                            if let Some(peer) = parse_hello(pkt) {
                                let k = register(&args, &mut next_port, &mut sessions, src, peer);
                                if let Some(k) = k {
                                    by_client.insert(src, k);
                                    epoll.add(sessions[k].relay.as_raw_fd(), k as u64)?;
                                    let port = sessions[k].relay.local_addr()?.port();
                                    let mut answer = [0u8; 6];
                                    answer[..4].copy_from_slice(PORT);
                                    answer[4..].copy_from_slice(&port.to_be_bytes());
                                    let _ = listen.send_to(&answer, src);
                                }
                            }
                            continue;
                        };
                        if let Some(peer) = parse_hello(pkt) {
                            // A repeated hello: answer again.
                            let _ = peer;
                            let port = sessions[k].relay.local_addr()?.port();
                            let mut answer = [0u8; 6];
                            answer[..4].copy_from_slice(PORT);
                            answer[4..].copy_from_slice(&port.to_be_bytes());
                            let _ = listen.send_to(&answer, src);
                            continue;
                        }
                        if pkt.len() < 4 {
                            continue;
                        }
                        let len = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
                        let Some(payload) = pkt.get(4..4 + len) else {
                            continue;
                        };
                        if current != Some(k) || to_peer.is_full() {
                            if let Some(c) = current {
                                to_peer.flush(sessions[c].relay.as_raw_fd())?;
                            }
                            current = Some(k);
                        }
                        to_peer.push(sessions[k].peer, payload);
                    }
                    if let Some(c) = current {
                        to_peer.flush(sessions[c].relay.as_raw_fd())?;
                    }
                    if n < BATCH {
                        break;
                    }
                }
                continue;
            }
            let s = &sessions[token as usize];
            let fd = s.relay.as_raw_fd();
            loop {
                let n = rb.recv(fd)?;
                for i in 0..n {
                    let (buf, src) = rb.get_with_headroom(i);
                    if src != s.peer {
                        continue;
                    }
                    let len = (buf.len() - 4) as u16;
                    buf[..2].copy_from_slice(&s.tag);
                    buf[2..4].copy_from_slice(&len.to_be_bytes());
                    if to_clients.is_full() {
                        to_clients.flush(lfd)?;
                    }
                    to_clients.push(s.client, buf);
                }
                if n < BATCH {
                    break;
                }
            }
        }
        if !to_clients.is_empty() {
            to_clients.flush(lfd)?;
        }
    }
    Ok(())
}

/// Binds the next free relay port for a new client; `None` when the range is exhausted.
fn register(
    args: &Args,
    next_port: &mut u16,
    sessions: &mut Vec<Session>,
    client: SocketAddrV4,
    peer: SocketAddrV4,
) -> Option<usize> {
    while *next_port <= args.max_port && *next_port != 0 {
        let port = *next_port;
        *next_port = next_port.wrapping_add(1);
        if let Ok(relay) = bind_udp(SocketAddrV4::new(args.relay_ip, port)) {
            let tag = 0x4000u16 | (sessions.len() as u16 & 0x3FFF);
            sessions.push(Session {
                client,
                peer,
                tag: tag.to_be_bytes(),
                relay,
            });
            return Some(sessions.len() - 1);
        }
    }
    None
}
