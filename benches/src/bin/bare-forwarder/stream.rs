//! The TCP path: the client leg of TURN over TCP with no TURN, the best the kernel's epoll
//! socket path allows, as tern's TCP path is shaped.
//!
//! ```text
//! client --[hello]--> connection (accepted from the listening socket, TCP_NODELAY)
//!          bind the client's relay socket from the range; answer [PORT | relay port]
//! client --[header | payload | padding]...--> one read of up to 64 KiB
//!          every whole frame: its payload --[one sendmmsg per read]--> peer
//!          the partial frame at the end stays for the next read
//! peer   --[payload]--> relay socket (recvmmsg): check the source is the client's peer
//!          frame it (header, payload, padding) onto the connection's out buffer
//! end of the epoll turn: one write per connection with bytes queued; what the socket does
//!          not take stays queued and EPOLLOUT is watched until it is all out
//! ```
//!
//! Level-triggered epoll, nonblocking sockets, one read per ready connection per turn. Every
//! buffer is made when a connection is accepted; relaying allocates nothing. Closing a
//! connection closes its relay socket and gives its port back to the range.

use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;

use tern_bench::load::bare::{
    answer, parse_hello, push_stream_frame, session_tag, stream_frame_len, stream_frames,
    RelayPorts, HELLO_LEN, MAX_STREAM_FRAME,
};
use tern_bench::load::sys::{Epoll, Interest, Ready, RecvBatch, SendBatch};

use super::{index_of, token, BATCH, KIND_SHIFT, KIND_STREAM, KIND_STREAM_RELAY, LISTEN_TCP};

/// A connection's read buffer: one read takes up to this much, and the longest frame fits
/// whole behind any partial frame kept from the read before (which is shorter than a frame).
const READ_BUF: usize = MAX_STREAM_FRAME;
/// Most bytes queued for one client; a peer datagram that does not fit is dropped, as a full
/// socket buffer drops it on the UDP path (tern's write queue has the same bound).
const OUT_CAP: usize = 256 * 1024;
/// The largest payload relayed to a peer (a send slot); longer ones are dropped. The
/// generator sends at most 1400 bytes.
const SLOT: usize = 2048;
/// Connections accepted per turn at most, so a burst of them does not starve the others.
const ACCEPTS_PER_TURN: usize = 64;

/// A client's relay socket, bound once its hello is in.
struct Relay {
    sock: UdpSocket,
    port: u16,
    peer: SocketAddrV4,
}

/// One client's connection.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet framed: `rbuf[..filled]`.
    rbuf: Box<[u8]>,
    filled: usize,
    /// Bytes for the client.
    out: Out,
    /// `None` until the hello is in.
    relay: Option<Relay>,
    /// The tag on frames towards the client.
    tag: [u8; 2],
    /// Whether it is on the list of connections to write at the end of the turn.
    dirty: bool,
    /// Whether epoll watches it for room to write (only while bytes wait).
    watching_writes: bool,
}

impl Conn {
    fn new(stream: TcpStream, tag: [u8; 2]) -> Self {
        Self {
            stream,
            rbuf: vec![0; READ_BUF].into_boxed_slice(),
            filled: 0,
            out: Out {
                buf: Vec::with_capacity(OUT_CAP),
                sent: 0,
            },
            relay: None,
            tag,
            dirty: false,
            watching_writes: false,
        }
    }

    /// One `write` of what is queued; `Ok(true)` when all of it is out.
    fn write_once(&mut self) -> io::Result<bool> {
        let out = &mut self.out;
        match self.stream.write(&out.buf[out.sent..]) {
            Ok(n) => out.sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
        if out.sent == out.buf.len() {
            out.buf.clear();
            out.sent = 0;
            return Ok(true);
        }
        Ok(false)
    }
}

/// A connection's bytes for its client, at most [`OUT_CAP`]: `buf[sent..]` are still to be
/// written. The buffer is made with that capacity and never grows.
struct Out {
    buf: Vec<u8>,
    sent: usize,
}

impl Out {
    /// Makes room for `len` more bytes without growing the buffer: moves what is still to be
    /// written to the front when needed. False when it does not fit.
    fn room_for(&mut self, len: usize) -> bool {
        if self.buf.len() + len <= OUT_CAP {
            return true;
        }
        if self.sent > 0 {
            self.buf.copy_within(self.sent.., 0);
            self.buf.truncate(self.buf.len() - self.sent);
            self.sent = 0;
        }
        self.buf.len() + len <= OUT_CAP
    }
}

/// Why a connection is closed.
enum Close {
    /// The client ended the stream, or the socket failed.
    Gone,
    /// The stream broke the framing (a bad hello or a bad tag).
    Malformed,
    /// No relay port was left for it.
    NoPort,
}

/// The TCP listening socket and its connections, in a slab indexed by the epoll token.
pub(crate) struct Streams {
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    /// Free slots of `conns`.
    free: Vec<usize>,
    /// Connections with bytes queued this turn.
    dirty: Vec<usize>,
    /// Peer datagrams from relay sockets.
    rb: RecvBatch,
    /// A read's payloads towards its peer.
    to_peer: SendBatch,
    /// Connections closed for each reason (`Close` as index), reported when the run ends.
    closed: [u64; 3],
}

impl Streams {
    /// Takes connections on `listener`; sends to peers with UDP GSO when `gso`.
    pub(crate) fn new(listener: TcpListener, gso: bool) -> Self {
        Self {
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            rb: RecvBatch::new(BATCH, SLOT, 0),
            to_peer: SendBatch::new(BATCH, SLOT, gso),
            closed: [0; 3],
        }
    }

    /// Acts on an epoll event of the TCP listening socket, a connection or a connection's
    /// relay socket (other tokens are not its own and are ignored). An error is a relay
    /// socket's `recvmmsg` failing.
    pub(crate) fn on_ready(
        &mut self,
        ready: Ready,
        epoll: &Epoll,
        ports: &mut RelayPorts,
    ) -> io::Result<()> {
        let t = ready.token();
        match t >> KIND_SHIFT {
            _ if t == LISTEN_TCP => self.accept(epoll),
            KIND_STREAM => self.on_conn(index_of(t), ready, epoll, ports),
            KIND_STREAM_RELAY => self.on_relay(index_of(t))?,
            _ => {}
        }
        Ok(())
    }

    /// Accepts what the listening socket holds (up to [`ACCEPTS_PER_TURN`]).
    fn accept(&mut self, epoll: &Epoll) {
        for _ in 0..ACCEPTS_PER_TURN {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, say: the connection waits in the backlog.
                    eprintln!("accept: {e}");
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
                continue;
            }
            let k = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if epoll
                .add(&stream, token(KIND_STREAM, k), Interest::READABLE)
                .is_err()
            {
                self.free.push(k);
                continue;
            }
            self.conns[k] = Some(Conn::new(stream, session_tag(k)));
        }
    }

    /// Acts on an epoll event of connection `k`.
    fn on_conn(&mut self, k: usize, ready: Ready, epoll: &Epoll, ports: &mut RelayPorts) {
        let mut result = Ok(());
        if ready.is_writable() {
            result = self.on_writable(k, epoll);
        }
        if result.is_ok() && (ready.is_readable() || ready.is_read_closed() || ready.is_error()) {
            result = self.on_readable(k, epoll, ports);
        }
        if let Err(why) = result {
            self.close(k, why, epoll, ports);
        }
    }

    /// Writes what waited for room; stops watching for it once all is out.
    fn on_writable(&mut self, k: usize, epoll: &Epoll) -> Result<(), Close> {
        let Some(c) = self.conns.get_mut(k).and_then(Option::as_mut) else {
            return Ok(());
        };
        let all_out = c.write_once().map_err(|_| Close::Gone)?;
        watch_writes(c, k, !all_out, epoll)
    }

    /// One read: the hello first, then every whole frame's payload to the peer in one
    /// `sendmmsg` (more only past [`BATCH`] frames); the partial frame at the end stays.
    fn on_readable(
        &mut self,
        k: usize,
        epoll: &Epoll,
        ports: &mut RelayPorts,
    ) -> Result<(), Close> {
        let Some(c) = self.conns.get_mut(k).and_then(Option::as_mut) else {
            return Ok(());
        };
        match c.stream.read(&mut c.rbuf[c.filled..]) {
            Ok(0) => return Err(Close::Gone),
            Ok(n) => c.filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(())
            }
            Err(_) => return Err(Close::Gone),
        }
        if c.relay.is_none() {
            if c.filled < HELLO_LEN {
                return Ok(());
            }
            let peer = parse_hello(&c.rbuf[..HELLO_LEN]).ok_or(Close::Malformed)?;
            let relay = bind_relay(k, peer, epoll, ports)?;
            c.out.buf.extend_from_slice(&answer(relay.port));
            c.relay = Some(relay);
            c.rbuf.copy_within(HELLO_LEN..c.filled, 0);
            c.filled -= HELLO_LEN;
            mark_dirty(c, k, &mut self.dirty);
        }
        let relay = c.relay.as_ref().ok_or(Close::Malformed)?;
        let mut frames = stream_frames(&c.rbuf[..c.filled]);
        for frame in &mut frames {
            let payload = frame.map_err(|_| Close::Malformed)?.payload();
            if payload.len() > SLOT {
                continue;
            }
            if self.to_peer.is_full() {
                flush_to_peer(&mut self.to_peer, &relay.sock)?;
            }
            self.to_peer.push(relay.peer, payload);
        }
        let consumed = frames.consumed();
        if !self.to_peer.is_empty() {
            flush_to_peer(&mut self.to_peer, &relay.sock)?;
        }
        c.rbuf.copy_within(consumed..c.filled, 0);
        c.filled -= consumed;
        Ok(())
    }

    /// Drains connection `k`'s relay socket: each of its peer's datagrams, framed, onto the
    /// connection's out buffer (dropped when the buffer is full).
    fn on_relay(&mut self, k: usize) -> io::Result<()> {
        let Some(c) = self.conns.get_mut(k).and_then(Option::as_mut) else {
            return Ok(());
        };
        let Some(relay) = c.relay.as_ref() else {
            return Ok(());
        };
        let (fd, peer) = (relay.sock.as_fd(), relay.peer);
        let (out, tag) = (&mut c.out, c.tag);
        let mut queued = false;
        loop {
            let n = self.rb.recv(fd)?;
            for i in 0..n {
                let (payload, src) = self.rb.get(i);
                if src != peer || !out.room_for(stream_frame_len(payload.len())) {
                    continue;
                }
                push_stream_frame(&mut out.buf, tag, payload);
                queued = true;
            }
            if n < BATCH {
                break;
            }
        }
        if queued {
            mark_dirty(c, k, &mut self.dirty);
        }
        Ok(())
    }

    /// Ends an epoll turn: one `write` per connection with bytes queued (those waiting for
    /// room are written when epoll says there is some).
    pub(crate) fn end_turn(&mut self, epoll: &Epoll, ports: &mut RelayPorts) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &k in &dirty {
            let Some(c) = self.conns.get_mut(k).and_then(Option::as_mut) else {
                continue;
            };
            c.dirty = false;
            if c.watching_writes {
                continue;
            }
            let result = match c.write_once() {
                Ok(all_out) => watch_writes(c, k, !all_out, epoll),
                Err(_) => Err(Close::Gone),
            };
            if let Err(why) = result {
                self.close(k, why, epoll, ports);
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Closes connection `k` and its relay socket, and gives the port back.
    fn close(&mut self, k: usize, why: Close, epoll: &Epoll, ports: &mut RelayPorts) {
        let Some(c) = self.conns.get_mut(k).and_then(Option::take) else {
            return;
        };
        self.closed[why as usize] += 1;
        let _ = epoll.delete(&c.stream);
        if let Some(relay) = c.relay {
            let _ = epoll.delete(&relay.sock);
            drop(relay.sock);
            ports.release(relay.port);
        }
        self.free.push(k);
    }

    /// Connections closed so far: by the client or a failed socket, for a malformed stream,
    /// for want of a relay port.
    pub(crate) fn closed(&self) -> [u64; 3] {
        self.closed
    }
}

/// Binds connection `k`'s relay socket for `peer` and watches it.
fn bind_relay(
    k: usize,
    peer: SocketAddrV4,
    epoll: &Epoll,
    ports: &mut RelayPorts,
) -> Result<Relay, Close> {
    let sock = ports.bind_next().ok_or(Close::NoPort)?;
    let port = match sock.local_addr() {
        Ok(a) => a.port(),
        Err(_) => return Err(Close::NoPort),
    };
    if epoll
        .add(&sock, token(KIND_STREAM_RELAY, k), Interest::READABLE)
        .is_err()
    {
        ports.release(port);
        return Err(Close::NoPort);
    }
    Ok(Relay { sock, port, peer })
}

/// Sends the batch to the peer; a failed send is the relay socket's, which closes the
/// connection.
fn flush_to_peer(batch: &mut SendBatch, sock: &UdpSocket) -> Result<(), Close> {
    batch.flush(sock).map(drop).map_err(|_| Close::Gone)
}

/// Puts connection `k` on the list to write at the end of the turn, once.
fn mark_dirty(c: &mut Conn, k: usize, dirty: &mut Vec<usize>) {
    if !c.dirty {
        c.dirty = true;
        dirty.push(k);
    }
}

/// Watches connection `k` for room to write when `want`, and only then.
fn watch_writes(c: &mut Conn, k: usize, want: bool, epoll: &Epoll) -> Result<(), Close> {
    if want == c.watching_writes {
        return Ok(());
    }
    c.watching_writes = want;
    let interest = if want {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    };
    epoll
        .modify(&c.stream, token(KIND_STREAM, k), interest)
        .map_err(|_| Close::Gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::{Duration, Instant};

    use tern_bench::load::bare::{hello, parse_answer, ForwarderArgs, ANSWER_LEN};
    use tern_bench::load::net::bind_udp;

    /// The forwarder's TCP path on loopback, driven turn by turn as `main` drives it.
    struct Rig {
        streams: Streams,
        epoll: Epoll,
        ports: RelayPorts,
        ready: Vec<Ready>,
    }

    impl Rig {
        /// A forwarder listening on an ephemeral TCP port with a one-port relay range.
        fn new() -> (Self, SocketAddrV4) {
            let lo = Ipv4Addr::LOCALHOST;
            // A port that was free a moment ago, for the one-port range.
            let port = bind_udp(SocketAddrV4::new(lo, 0))
                .and_then(|s| s.local_addr())
                .expect("a free port")
                .port();
            let args = ForwarderArgs {
                listen: SocketAddrV4::new(lo, 0),
                relay_ip: lo,
                min_port: port,
                max_port: port,
                max_seconds: 10,
            };
            let listener = args.bind_stream_listener().expect("listen");
            let addr = match listener.local_addr().expect("local address") {
                SocketAddr::V4(a) => a,
                SocketAddr::V6(a) => panic!("IPv6 listener {a}"),
            };
            let epoll = Epoll::new().expect("epoll");
            epoll
                .add(&listener, LISTEN_TCP, Interest::READABLE)
                .expect("watch the listener");
            let rig = Self {
                streams: Streams::new(listener, false),
                epoll,
                ports: RelayPorts::new(&args),
                ready: Vec::new(),
            };
            (rig, addr)
        }

        /// Runs turns until `done`, shown the connections, says so (at most 2 s); returns
        /// whether it did.
        fn turn_until(&mut self, mut done: impl FnMut(&Streams) -> bool) -> bool {
            let end = Instant::now() + Duration::from_secs(2);
            while Instant::now() < end {
                self.epoll
                    .wait(&mut self.ready, Duration::from_millis(5))
                    .expect("epoll_wait");
                for &r in &self.ready {
                    self.streams
                        .on_ready(r, &self.epoll, &mut self.ports)
                        .expect("relay socket");
                }
                self.streams.end_turn(&self.epoll, &mut self.ports);
                if done(&self.streams) {
                    return true;
                }
            }
            false
        }
    }

    /// What `sock` received within one nonblocking call, if anything.
    fn try_recv(sock: &UdpSocket) -> Option<Vec<u8>> {
        let mut buf = [0u8; 2048];
        sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    }

    /// Reads exactly `n` bytes from `client` (blocking, bounded by its read timeout).
    fn read_n(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        client
            .read_exact(&mut got)
            .expect("bytes from the forwarder");
        got
    }

    #[test]
    fn a_read_that_ends_mid_frame_relays_the_whole_frames_and_keeps_the_rest() {
        let (mut rig, addr) = Rig::new();
        let peer = bind_udp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("peer");
        let peer_addr = match peer.local_addr().expect("peer address") {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => panic!("IPv6 peer {a}"),
        };
        let mut client = TcpStream::connect(addr).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("read timeout");
        let mut sent = hello(peer_addr).to_vec();
        push_stream_frame(&mut sent, [0x40, 0x07], b"first");
        let second_at = sent.len();
        push_stream_frame(&mut sent, [0x40, 0x07], b"second!");
        // The hello, the first frame and the second one's header and 2 bytes of payload.
        client.write_all(&sent[..second_at + 6]).expect("write");
        let mut got = None;
        assert!(rig.turn_until(|_| {
            got = try_recv(&peer);
            got.is_some()
        }));
        assert_eq!(got.as_deref(), Some(&b"first"[..]));
        let port = parse_answer(&read_n(&mut client, ANSWER_LEN)).expect("a PORT answer");
        // Nothing of the partial frame reaches the peer.
        assert!(!rig.turn_until(|_| try_recv(&peer).is_some()));
        client.write_all(&sent[second_at + 6..]).expect("write");
        let mut got = None;
        assert!(rig.turn_until(|_| {
            got = try_recv(&peer);
            got.is_some()
        }));
        assert_eq!(got.as_deref(), Some(&b"second!"[..]));
        // Back from the peer: framed with the connection's tag and padded.
        peer.send_to(b"back!", SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
            .expect("send to the relay port");
        let mut expected = Vec::new();
        push_stream_frame(&mut expected, session_tag(0), b"back!");
        let mut peeked = [0u8; 64];
        client.set_nonblocking(true).expect("nonblocking");
        let arrived = |n: usize| n >= expected.len();
        assert!(rig.turn_until(|_| client.peek(&mut peeked).is_ok_and(arrived)));
        client.set_nonblocking(false).expect("blocking");
        assert_eq!(read_n(&mut client, expected.len()), expected);
        // Closing the connection closes its relay socket and frees the port.
        drop(client);
        assert!(rig.turn_until(|s| s.closed() != [0; 3]));
        assert_eq!(rig.streams.closed(), [1, 0, 0], "closed by the client");
        let again = rig.ports.bind_next().expect("the port is free again");
        assert_eq!(again.local_addr().expect("address").port(), port);
    }
}
