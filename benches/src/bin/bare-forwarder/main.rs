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
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use clap::Parser;
use tern_bench::load::bare::{answer_hello, parse_hello, session_tag, ForwarderArgs, RelayPorts};
use tern_bench::load::sys::{enable_gro, Epoll, Interest, RecvBatch, SendBatch};

const BATCH: usize = 64;
const LISTEN: u64 = u64::MAX;

#[derive(Parser, Debug)]
#[command(about = "Bare UDP forwarder with TURN's path shape (loopback benchmarks)")]
struct Args {
    #[command(flatten)]
    forwarder: ForwarderArgs,
}

struct Session {
    client: SocketAddrV4,
    peer: SocketAddrV4,
    tag: [u8; 2],
    relay: UdpSocket,
}

fn main() -> anyhow::Result<()> {
    // Its own sends (to peers, to clients) use UDP GSO, as tern's do; NO_GSO=1 turns that
    // off. What the clients send is the generator's `--shape`.
    let gso = std::env::var_os("NO_GSO").is_none();
    let args = Args::parse().forwarder;
    let listen = args.bind_listener()?;
    let lfd = listen.as_fd();
    let mut epoll = Epoll::new()?;
    epoll.add(lfd, LISTEN, Interest::READABLE)?;
    let mut sessions: Vec<Session> = Vec::new();
    let mut by_client: HashMap<SocketAddrV4, usize> = HashMap::new();
    let mut ports = RelayPorts::new(&args);
    // The listening socket takes UDP GRO, as tern's do: a client's burst can arrive as one
    // buffer of up to 64 KB, split here into its datagrams.
    enable_gro(lfd);
    let mut lrb = RecvBatch::new(BATCH, 65_535, 0);
    let mut rb = RecvBatch::new(BATCH, 2048, 4);
    let mut to_peer = SendBatch::new(BATCH, 2048, gso);
    let mut to_clients = SendBatch::new(BATCH, 2048, gso);
    let mut ready = Vec::with_capacity(256);
    let stop = Instant::now() + Duration::from_secs(args.max_seconds);
    eprintln!("bare-forwarder listening on {}", args.listen);
    while Instant::now() < stop {
        epoll.wait(&mut ready, Duration::from_millis(100))?;
        for token in ready.iter().map(|r| r.token()) {
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
                            let Some(peer) = parse_hello(pkt) else {
                                continue;
                            };
                            let Some(relay) = ports.bind_next() else {
                                continue;
                            };
                            let k = sessions.len();
                            epoll.add(&relay, k as u64, Interest::READABLE)?;
                            answer_hello(&listen, &relay, src)?;
                            sessions.push(Session {
                                client: src,
                                peer,
                                tag: session_tag(k),
                                relay,
                            });
                            by_client.insert(src, k);
                            continue;
                        };
                        if parse_hello(pkt).is_some() {
                            // A repeated hello: answer again.
                            answer_hello(&listen, &sessions[k].relay, src)?;
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
                                to_peer.flush(&sessions[c].relay)?;
                            }
                            current = Some(k);
                        }
                        to_peer.push(sessions[k].peer, payload);
                    }
                    if let Some(c) = current {
                        to_peer.flush(&sessions[c].relay)?;
                    }
                    if n < BATCH {
                        break;
                    }
                }
                continue;
            }
            let s = &sessions[token as usize];
            let fd = s.relay.as_fd();
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
