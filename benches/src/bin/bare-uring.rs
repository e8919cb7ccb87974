//! `bare-uring`: the bare forwarder (see `bare-forwarder`, same path shape and framing) on
//! io_uring instead of epoll + recvmmsg/sendmmsg: one `io_uring_enter` per wake-up submits
//! the sends queued since the last one, re-arms the receives and waits. It answers one
//! question: does a different system-call model lower the CPU cost per packet at a light
//! load, where every wake-up carries about one packet and nothing can be batched?
//!
//! Each socket has one receive in flight. Sends are issued with MSG_DONTWAIT (done, or
//! failed with EAGAIN, by the time `io_uring_enter` returns, so their buffers can be reused)
//! and post no completion on success (IOSQE_CQE_SKIP_SUCCESS, Linux 5.17+).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clap::Parser;
use io_uring::{opcode, squeue, types, IoUring};
use tern_bench::load::bare::{answer_hello, parse_hello, session_tag, ForwarderArgs, RelayPorts};

/// Receive slot of the listening socket (relay sockets use their session index).
const LISTEN: u64 = 1 << 32;
/// user_data of sends (their completions are only posted on failure).
const SEND: u64 = 1 << 33;
/// Send slots: more than can be queued between two submissions (one per received datagram).
const SEND_SLOTS: usize = 1024;
const BUF: usize = 2048;
const HEADROOM: usize = 4;

#[derive(Parser, Debug)]
#[command(about = "Bare UDP forwarder with TURN's path shape, on io_uring (loopback benchmarks)")]
struct Args {
    #[command(flatten)]
    forwarder: ForwarderArgs,
}

/// A buffer with the message header that describes it; boxed, so the kernel's pointers into
/// it stay valid while the Vec holding it grows.
struct Msg {
    buf: [u8; HEADROOM + BUF],
    iov: libc::iovec,
    addr: libc::sockaddr_in,
    hdr: libc::msghdr,
}

impl Msg {
    fn new() -> Box<Self> {
        // SAFETY: plain-old-data structs; all zeroes is valid for each.
        let mut m: Box<Self> = Box::new(unsafe { std::mem::zeroed() });
        m.iov.iov_base = m.buf[HEADROOM..].as_mut_ptr().cast();
        m.iov.iov_len = BUF;
        m.hdr.msg_iov = &mut m.iov;
        m.hdr.msg_iovlen = 1;
        m.hdr.msg_name = (&mut m.addr as *mut libc::sockaddr_in).cast();
        m.hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        m
    }

    fn source(&self) -> SocketAddrV4 {
        SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(self.addr.sin_addr.s_addr)),
            u16::from_be(self.addr.sin_port),
        )
    }

    /// Sets the buffer's `len` bytes from `start` and the destination, for a send.
    fn prepare_send(&mut self, start: usize, len: usize, to: SocketAddrV4) {
        self.iov.iov_base = self.buf[start..].as_mut_ptr().cast();
        self.iov.iov_len = len;
        self.addr.sin_family = libc::AF_INET as libc::sa_family_t;
        self.addr.sin_port = to.port().to_be();
        self.addr.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        self.hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    }

    fn rearm(&mut self) {
        self.iov.iov_base = self.buf[HEADROOM..].as_mut_ptr().cast();
        self.iov.iov_len = BUF;
        self.hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    }
}

struct Session {
    client: SocketAddrV4,
    peer: SocketAddrV4,
    tag: [u8; 2],
    relay: UdpSocket,
    rx: Box<Msg>,
}

struct Forwarder {
    ring: IoUring,
    #[allow(clippy::vec_box)] // each Msg points into itself: it must not move
    sends: Vec<Box<Msg>>,
    next_send: usize,
}

impl Forwarder {
    fn recv(&mut self, fd: i32, msg: &mut Msg, token: u64) {
        msg.rearm();
        let e = opcode::RecvMsg::new(types::Fd(fd), &mut msg.hdr)
            .build()
            .user_data(token);
        self.push(e);
    }

    /// Queues `data` to `to` from `fd`, copied into the next send slot.
    fn send(&mut self, fd: i32, data: &[u8], to: SocketAddrV4) {
        let slot = self.next_send;
        self.next_send = (slot + 1) % SEND_SLOTS;
        let m = &mut self.sends[slot];
        m.buf[..data.len()].copy_from_slice(data);
        m.prepare_send(0, data.len(), to);
        let e = opcode::SendMsg::new(types::Fd(fd), &m.hdr)
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(SEND | slot as u64);
        self.push(e);
    }

    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every entry points at a boxed Msg that outlives its operation: receive
        // slots live as long as their socket, and a send slot is reused only after
        // SEND_SLOTS more sends, each submitted (and, with MSG_DONTWAIT, finished) by then.
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            self.ring.submit().expect("io_uring submit");
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse().forwarder;
    let listen = args.bind_listener()?;
    let lfd = listen.as_raw_fd();
    let mut f = Forwarder {
        ring: IoUring::new(4096)?,
        sends: (0..SEND_SLOTS).map(|_| Msg::new()).collect(),
        next_send: 0,
    };
    let mut lrx = Msg::new();
    f.recv(lfd, &mut lrx, LISTEN);
    let mut sessions: Vec<Session> = Vec::new();
    let mut by_client: HashMap<SocketAddrV4, usize> = HashMap::new();
    let mut ports = RelayPorts::new(&args);
    let stop = Instant::now() + Duration::from_secs(args.max_seconds);
    let timeout = types::Timespec::new().nsec(100_000_000);
    let wait = types::SubmitArgs::new().timespec(&timeout);
    eprintln!("bare-uring listening on {}", args.listen);
    let mut done = Vec::with_capacity(256);
    while Instant::now() < stop {
        match f.ring.submitter().submit_with_args(1, &wait) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e.into()),
        }
        done.clear();
        done.extend(f.ring.completion().map(|c| (c.user_data(), c.result())));
        for &(token, result) in &done {
            if token & SEND != 0 {
                continue; // a failed send (EAGAIN: the socket buffer was full): dropped
            }
            if token == LISTEN {
                if result >= 0 {
                    let len = result as usize;
                    let mut state = (&mut sessions, &mut by_client, &mut ports);
                    on_client(&mut f, &listen, &lrx, len, &mut state)?;
                }
                f.recv(lfd, &mut lrx, LISTEN);
                continue;
            }
            let k = token as usize;
            let (fd, peer, client, tag) = {
                let s = &sessions[k];
                (s.relay.as_raw_fd(), s.peer, s.client, s.tag)
            };
            if result >= 0 && sessions[k].rx.source() == peer {
                let len = result as usize;
                let rx = &mut sessions[k].rx;
                rx.buf[..2].copy_from_slice(&tag);
                rx.buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                // Copied into a send slot, so the receive buffer can be re-armed at once.
                f.send(lfd, &rx.buf[..HEADROOM + len], client);
            }
            f.recv(fd, &mut sessions[k].rx, k as u64);
        }
    }
    Ok(())
}

type Sessions<'a> = (
    &'a mut Vec<Session>,
    &'a mut HashMap<SocketAddrV4, usize>,
    &'a mut RelayPorts,
);

/// A datagram from a client: a hello (register and answer) or data for its peer.
fn on_client(
    f: &mut Forwarder,
    listen: &UdpSocket,
    rx: &Msg,
    len: usize,
    (sessions, by_client, ports): &mut Sessions<'_>,
) -> anyhow::Result<()> {
    let pkt = &rx.buf[HEADROOM..HEADROOM + len];
    let src = rx.source();
    let Some(&k) = by_client.get(&src) else {
        let Some(peer) = parse_hello(pkt) else {
            return Ok(());
        };
        let Some(relay) = ports.bind_next() else {
            return Ok(());
        };
        let k = sessions.len();
        sessions.push(Session {
            client: src,
            peer,
            tag: session_tag(k),
            relay,
            rx: Msg::new(),
        });
        by_client.insert(src, k);
        let fd = sessions[k].relay.as_raw_fd();
        f.recv(fd, &mut sessions[k].rx, k as u64);
        answer_hello(listen, &sessions[k].relay, src)?;
        return Ok(());
    };
    if parse_hello(pkt).is_some() {
        answer_hello(listen, &sessions[k].relay, src)?;
        return Ok(());
    }
    if pkt.len() < 4 {
        return Ok(());
    }
    let n = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    if let Some(payload) = pkt.get(4..4 + n) {
        f.send(sessions[k].relay.as_raw_fd(), payload, sessions[k].peer);
    }
    Ok(())
}
