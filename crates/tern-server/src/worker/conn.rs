//! A worker's stream connections (TURN over TCP, RFC 8656 §3.1): each one's socket, read
//! buffer and bounded write queue, in a slab whose ids carry a generation so a stale epoll
//! event or output never reaches the connection that reused a slot.
//!
//! On a port that requires the PROXY protocol, a connection first reads its header into the
//! read buffer ([`Conn::take_proxy_header`]); whatever came after the header in the same reads
//! is kept aside and read before the socket ([`Incoming`]), so a ClientHello or a STUN
//! message sent right behind the header is not lost.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::tls::CertStore;

use super::tls::Mode;

use tern_proto::{ConnId, FiveTuple};
use tern_wire::proxy::{self, Command, Decoded, ProxyError};
use tern_wire::stream::MAX_FRAME_LEN;

/// Most connections one worker can hold; more are accepted and closed at once. The real
/// bound is `max-connections` over all workers ([`crate::conn_limits`]); this one only caps
/// the slab, which grows one slot at a time as connections arrive.
pub(super) const MAX_CONNS: usize = 1 << INDEX_BITS;
/// Bits of a [`ConnId`] that index the slab; the bits above count the slot's reuses.
const INDEX_BITS: u32 = 16;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// A connection's read buffer at most: one whole frame of the largest size always fits.
pub(super) const READ_BUF: usize = MAX_FRAME_LEN;
/// A connection's read buffer at first; it grows (up to [`READ_BUF`]) only for a client
/// whose messages do not fit, so idle connections hold little memory.
const FIRST_READ_BUF: usize = 4096;
/// The bounds on a PROXY header: a version 2 header must fit the first read buffer, so it
/// is read without growing it.
const PROXY_LIMITS: proxy::Limits = proxy::Limits {
    max_v2_len: FIRST_READ_BUF,
};
const _: () = assert!(proxy::V1_MAX_LEN <= FIRST_READ_BUF);
/// Most bytes waiting to be written to one connection; relayed data beyond it is dropped.
pub(super) const WRITE_QUEUE: usize = 256 * 1024;
/// Writes tried per flush of one connection before the loop turns to the others.
const WRITES_PER_FLUSH: usize = 16;

/// One client's stream connection.
#[derive(Debug)]
pub(super) struct Conn {
    /// The socket, nonblocking.
    pub stream: TcpStream,
    /// Its 5-tuple as the core knows it.
    pub five: FiveTuple,
    /// Bytes read and not yet framed: `buf[..filled]`.
    pub buf: Vec<u8>,
    pub filled: usize,
    /// Bytes queued for the client: `out[sent..]` are still to be written.
    out: Vec<u8>,
    sent: usize,
    /// Whether epoll watches it for room to write (only while bytes wait).
    pub watching_writes: bool,
    /// When the client last sent bytes.
    pub last_read: Instant,
    /// Whether the core holds an allocation for it (an idle connection without one closes).
    pub allocated: bool,
    /// Whether it is on the list of connections to flush.
    dirty: bool,
    /// Plain or TLS (and the TLS state).
    pub tls: Mode,
    /// When it was accepted (the TLS handshake and PROXY header timeouts count from here).
    pub opened: Instant,
    /// Whether its PROXY header is still to come (the read buffer holds what came so far).
    pub awaiting_proxy: bool,
    /// Bytes that came after the PROXY header, read before the socket.
    early: Vec<u8>,
    /// Whether its client IP is counted in the shared per-IP table.
    pub ip_counted: bool,
    /// Whether the last read left nothing behind: the socket gave less than was asked and
    /// everything decrypted fit the buffer. Another read now would only say EAGAIN, and
    /// epoll (level-triggered) reports the socket again when more arrives.
    pub drained: bool,
}

impl Conn {
    fn new(
        stream: TcpStream,
        five: FiveTuple,
        tls: Option<Arc<CertStore>>,
        proxy: bool,
        now: Instant,
    ) -> Self {
        Self {
            stream,
            five,
            buf: vec![0; FIRST_READ_BUF],
            filled: 0,
            out: Vec::new(),
            sent: 0,
            watching_writes: false,
            last_read: now,
            allocated: false,
            dirty: false,
            tls: Mode::new(tls),
            opened: now,
            awaiting_proxy: proxy,
            early: Vec::new(),
            ip_counted: false,
            drained: false,
        }
    }

    /// Bytes waiting to be written (TLS records waiting count as one).
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent + usize::from(self.tls.wants_write())
    }

    /// Plaintext bytes queued and not yet handed to the socket (or to TLS).
    fn queued(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Reads once into the free part of the read buffer, growing a full buffer first. For
    /// TLS the count is of bytes taken from the socket ([`Mode::read`]).
    /// While a PROXY header is awaited, the bytes go to the read buffer as they are.
    pub fn read(&mut self) -> io::Result<usize> {
        if self.awaiting_proxy {
            let n = self.stream.read(&mut self.buf[self.filled..])?;
            self.filled += n;
            return Ok(n);
        }
        if self.filled == self.buf.len() && self.buf.len() < READ_BUF {
            let grown = (self.buf.len() * 4).min(READ_BUF);
            self.buf.resize(grown, 0);
        }
        let mut incoming = Incoming {
            early: &mut self.early,
            stream: &mut self.stream,
            short: false,
        };
        let n = self
            .tls
            .read(&mut incoming, &mut self.buf, &mut self.filled)?;
        self.drained = incoming.short && self.filled < self.buf.len();
        Ok(n)
    }

    /// Whether bytes that came after the PROXY header wait to be read.
    pub fn has_early(&self) -> bool {
        !self.early.is_empty()
    }

    /// Looks for the PROXY header in what was read so far. `Ok(None)`: not all of it yet.
    /// `Ok(Some(client))`: the header is taken off, the bytes after it wait in front of the
    /// socket, and `five.client` is the client the header names (the socket's peer for a
    /// version 2 `LOCAL` or version 1 `UNKNOWN` header, or one without IP addresses).
    pub fn take_proxy_header(&mut self) -> Result<Option<SocketAddr>, ProxyError> {
        let header = match proxy::decode_header(&self.buf[..self.filled], PROXY_LIMITS)? {
            Decoded::NeedMore { .. } => return Ok(None),
            Decoded::Header(header) => header,
        };
        if let (Command::Proxy, Some(a)) = (header.command, header.addresses) {
            self.five.client = SocketAddr::new(a.source.ip().to_canonical(), a.source.port());
        }
        self.early = self.buf[header.consumed..self.filled].to_vec();
        self.filled = 0;
        self.awaiting_proxy = false;
        Ok(Some(self.five.client))
    }

    /// Writes what is queued until it is all out or the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        if let Mode::Tls(c) = &mut self.tls {
            Mode::flush_tls(
                c,
                &mut self.stream,
                &self.out,
                &mut self.sent,
                WRITES_PER_FLUSH,
            )?;
            self.compact();
            return Ok(());
        }
        for _ in 0..WRITES_PER_FLUSH {
            if self.sent == self.out.len() {
                break;
            }
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.compact();
        Ok(())
    }

    /// Drops the written part of the queue once it is all out or half of it.
    fn compact(&mut self) {
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.sent >= self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }
}

/// What a connection reads from: the bytes that came after its PROXY header first, then
/// the socket. The socket is there for writing too (TLS alerts).
pub(super) struct Incoming<'a> {
    early: &'a mut Vec<u8>,
    pub stream: &'a mut TcpStream,
    /// Whether a read from the socket gave less than was asked (it is drained for now).
    short: bool,
}

impl Incoming<'_> {
    /// The next byte without taking it; `None` at the end of the stream.
    pub fn peek(&self) -> io::Result<Option<u8>> {
        if let Some(&b) = self.early.first() {
            return Ok(Some(b));
        }
        let mut first = [0u8; 1];
        Ok((self.stream.peek(&mut first)? == 1).then_some(first[0]))
    }
}

impl Read for Incoming<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.early.is_empty() {
            let n = self.stream.read(out)?;
            self.short = n < out.len();
            return Ok(n);
        }
        let n = out.len().min(self.early.len());
        out[..n].copy_from_slice(&self.early[..n]);
        self.early.drain(..n);
        if self.early.is_empty() {
            *self.early = Vec::new(); // Give the memory back.
        }
        Ok(n)
    }
}

/// A slot of the slab: the connection, and how often the slot was used.
#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// The connections of one worker.
#[derive(Debug, Default)]
pub(super) struct Conns {
    slots: Vec<Slot>,
    free: Vec<u32>,
    open: usize,
    /// Connections with bytes queued since the last flush.
    dirty: Vec<ConnId>,
    /// Datagrams dropped because a write queue was full, not yet counted by the core.
    pub backlog_drops: u64,
}

fn index(id: ConnId) -> usize {
    (id.0 & INDEX_MASK) as usize
}

impl Conns {
    /// Open connections.
    pub fn len(&self) -> usize {
        self.open
    }

    /// Adds a connection whose 5-tuple `five` makes from its id, awaiting a PROXY header
    /// first when `proxy`; `None` when the slab is full.
    pub fn insert(
        &mut self,
        stream: TcpStream,
        five: impl FnOnce(ConnId) -> FiveTuple,
        tls: Option<Arc<CertStore>>,
        proxy: bool,
        now: Instant,
    ) -> Option<(ConnId, &Conn)> {
        let i = match self.free.pop() {
            Some(i) => i as usize,
            None if self.slots.len() < MAX_CONNS => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
            None => return None,
        };
        let slot = &mut self.slots[i];
        let id = ConnId(slot.generation << INDEX_BITS | i as u32);
        slot.conn = Some(Conn::new(stream, five(id), tls, proxy, now));
        self.open += 1;
        slot.conn.as_ref().map(|c| (id, c))
    }

    /// The connection `id`, unless it closed.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(index(id))?;
        let current = slot.generation << INDEX_BITS | index(id) as u32;
        (current == id.0).then_some(slot.conn.as_mut()).flatten()
    }

    /// Removes connection `id`; its slot is reused under another id.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        self.get_mut(id)?;
        let slot = &mut self.slots[index(id)];
        let conn = slot.conn.take();
        slot.generation = (slot.generation + 1) & (u32::MAX >> INDEX_BITS);
        self.free.push(index(id) as u32);
        self.open -= 1;
        conn
    }

    /// Every open connection's id.
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.conn
                .as_ref()
                .map(|_| ConnId(s.generation << INDEX_BITS | i as u32))
        })
    }

    /// Queues `parts`, one message, for connection `id`. Returns false, queueing nothing, when
    /// the connection is gone or its queue has no room for the whole message.
    pub fn queue(&mut self, id: ConnId, parts: &[&[u8]]) -> bool {
        let Some(conn) = self.get_mut(id) else {
            return false;
        };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if conn.queued() + len > WRITE_QUEUE {
            return false;
        }
        for p in parts {
            conn.out.extend_from_slice(p);
        }
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(id);
        }
        true
    }

    /// Takes the list of connections with bytes queued since the last call.
    pub fn take_dirty(&mut self, into: &mut Vec<ConnId>) {
        into.clear();
        into.append(&mut self.dirty);
        for &id in into.iter() {
            if let Some(c) = self.get_mut(id) {
                c.dirty = false;
            }
        }
    }

    /// Writes connection `id`'s queue; `Some(pending bytes)` unless it is gone.
    pub fn flush(&mut self, id: ConnId) -> Option<io::Result<usize>> {
        let conn = self.get_mut(id)?;
        Some(conn.flush().map(|()| conn.pending()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{SocketAddr, TcpListener};
    use tern_proto::Transport;

    /// A connected pair on loopback: the server's end (nonblocking) and the client's.
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (server, client)
    }

    fn five(id: ConnId) -> FiveTuple {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        FiveTuple {
            transport: Transport::Stream {
                conn: id,
                tls: false,
            },
            client: a,
            server: a,
        }
    }

    #[test]
    fn a_reused_slot_gets_a_new_id_and_the_old_one_finds_nothing() {
        let now = Instant::now();
        let mut conns = Conns::default();
        let (a, _ca) = pair();
        let (first, c) = conns.insert(a, five, None, false, now).unwrap();
        assert_eq!(c.five, five(first));
        assert!(conns.remove(first).is_some());
        assert!(conns.remove(first).is_none());
        let (b, _cb) = pair();
        let (second, _) = conns.insert(b, five, None, false, now).unwrap();
        assert_eq!(index(first), index(second), "the slot is reused");
        assert_ne!(first, second, "under another id");
        assert!(conns.get_mut(first).is_none());
        assert!(!conns.queue(first, &[b"stale"]));
        assert_eq!(
            (conns.len(), conns.ids().collect::<Vec<_>>()),
            (1, vec![second])
        );
    }

    #[test]
    fn the_write_queue_is_bounded_and_flushes_in_order() {
        let now = Instant::now();
        let mut conns = Conns::default();
        let (s, mut client) = pair();
        let (id, _) = conns.insert(s, five, None, false, now).unwrap();
        let big = vec![7u8; WRITE_QUEUE - 4];
        assert!(conns.queue(id, &[&big]));
        assert!(conns.queue(id, &[b"ab", b"cd"]));
        assert!(!conns.queue(id, &[b"x"]), "one byte over the bound");
        let mut dirty = Vec::new();
        conns.take_dirty(&mut dirty);
        assert_eq!(dirty, vec![id], "listed once however often queued");
        // Flush until the queue is out, reading on the other side so the socket drains.
        let mut got = Vec::new();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        for _ in 0..10_000 {
            let pending = conns.flush(id).unwrap().unwrap();
            if pending == 0 && got.len() == WRITE_QUEUE {
                break;
            }
            let mut buf = [0u8; 65536];
            if got.len() < WRITE_QUEUE {
                let n = client.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert_eq!(got.len(), WRITE_QUEUE);
        assert!(got[..WRITE_QUEUE - 4].iter().all(|&b| b == 7));
        assert_eq!(&got[WRITE_QUEUE - 4..], b"abcd");
        assert!(conns.queue(id, &[b"room again"]));
    }

    #[test]
    fn the_read_buffer_grows_only_when_full() {
        let now = Instant::now();
        let mut conns = Conns::default();
        let (s, mut client) = pair();
        let (id, _) = conns.insert(s, five, None, false, now).unwrap();
        client.write_all(&vec![1u8; READ_BUF]).unwrap();
        let conn = conns.get_mut(id).unwrap();
        assert_eq!(conn.buf.len(), FIRST_READ_BUF);
        for _ in 0..10_000 {
            match conn.read() {
                Ok(_) if conn.filled == READ_BUF => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((conn.filled, conn.buf.len()), (READ_BUF, READ_BUF));
    }

    /// Reads once from `conn`, waiting (bounded) for bytes to arrive.
    fn read_some(conn: &mut Conn) -> usize {
        for _ in 0..10_000 {
            match conn.read() {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("nothing to read within 10 s");
    }

    #[test]
    fn a_proxy_header_in_pieces_names_the_client_and_keeps_what_follows() {
        let now = Instant::now();
        let mut conns = Conns::default();
        let (s, mut client) = pair();
        let peer = client.local_addr().unwrap();
        let (id, _) = conns.insert(s, five, None, true, now).unwrap();
        let header = b"PROXY TCP4 203.0.113.7 192.0.2.1 4242 3478\r\n";
        let mut sent = header.to_vec();
        sent.extend_from_slice(b"\x00\x01after the header");
        let conn = conns.get_mut(id).unwrap();
        // Three reads: inside the address, just before the LF, then the rest with data.
        for piece in [&sent[..14], &sent[14..header.len() - 1]] {
            client.write_all(piece).unwrap();
            let before = conn.filled;
            while conn.filled < before + piece.len() {
                read_some(conn);
            }
            assert_eq!(conn.take_proxy_header(), Ok(None), "not all of it yet");
            assert!(conn.awaiting_proxy);
        }
        client.write_all(&sent[header.len() - 1..]).unwrap();
        while conn.filled < sent.len() {
            read_some(conn);
        }
        let named: SocketAddr = "203.0.113.7:4242".parse().unwrap();
        assert_eq!(conn.take_proxy_header(), Ok(Some(named)));
        assert_eq!(conn.five.client, named);
        assert!(!conn.awaiting_proxy && conn.has_early());
        assert_eq!(conn.filled, 0);
        // The bytes behind the header come next, before anything else the socket has.
        client.write_all(b"; later").unwrap();
        let mut got = Vec::new();
        while got.len() < b"\x00\x01after the header; later".len() {
            let n = read_some(conn);
            got.extend_from_slice(&conn.buf[..conn.filled]);
            conn.filled = 0;
            assert!(n > 0);
        }
        assert_eq!(got, b"\x00\x01after the header; later");
        assert!(!conn.has_early());
        assert_ne!(peer, named);
    }

    #[test]
    fn a_local_header_keeps_the_peer_and_a_bad_one_is_refused() {
        let now = Instant::now();
        let mut conns = Conns::default();
        let (s, mut client) = pair();
        let (id, _) = conns.insert(s, five, None, true, now).unwrap();
        let before = conns.get_mut(id).unwrap().five.client;
        // Version 2 LOCAL (a health check): no addresses, nothing after.
        let mut local = proxy::V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        client.write_all(&local).unwrap();
        let conn = conns.get_mut(id).unwrap();
        while conn.filled < local.len() {
            read_some(conn);
        }
        assert_eq!(conn.take_proxy_header(), Ok(Some(before)));
        assert!(!conn.has_early());

        // Version 1 UNKNOWN: the same.
        let (s, mut client) = pair();
        let (id, _) = conns.insert(s, five, None, true, now).unwrap();
        let before = conns.get_mut(id).unwrap().five.client;
        client.write_all(b"PROXY UNKNOWN ignored\r\n").unwrap();
        let conn = conns.get_mut(id).unwrap();
        while conn.filled < 23 {
            read_some(conn);
        }
        assert_eq!(conn.take_proxy_header(), Ok(Some(before)));

        let (s, mut client) = pair();
        let (id, _) = conns.insert(s, five, None, true, now).unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let conn = conns.get_mut(id).unwrap();
        read_some(conn);
        assert_eq!(conn.take_proxy_header(), Err(ProxyError::NotProxy));
    }

    #[test]
    fn an_idle_connection_stays_small() {
        // Beside its socket and its 4 KiB first read buffer, a connection costs its slot;
        // the slab grows one slot per connection, never to MAX_CONNS up front.
        assert!(
            std::mem::size_of::<Slot>() <= 256,
            "{}",
            std::mem::size_of::<Slot>()
        );
        let mut conns = Conns::default();
        let (s, _client) = pair();
        conns.insert(s, five, None, true, Instant::now()).unwrap();
        assert_eq!(conns.slots.len(), 1);
    }
}
