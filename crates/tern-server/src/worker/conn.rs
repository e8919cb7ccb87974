//! A worker's stream connections (TURN over TCP, RFC 8656 §3.1): each one's socket, read
//! buffer and bounded write queue, in a slab whose ids carry a generation so a stale epoll
//! event or output never reaches the connection that reused a slot.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use crate::tls::CertStore;

use super::tls::Mode;

use tern_proto::{ConnId, FiveTuple};
use tern_wire::stream::MAX_FRAME_LEN;

/// Most connections one worker holds; more are accepted and closed at once.
pub(super) const MAX_CONNS: usize = 1 << INDEX_BITS;
/// Bits of a [`ConnId`] that index the slab; the bits above count the slot's reuses.
const INDEX_BITS: u32 = 12;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// A connection's read buffer at most: one whole frame of the largest size always fits.
pub(super) const READ_BUF: usize = MAX_FRAME_LEN;
/// A connection's read buffer at first; it grows (up to [`READ_BUF`]) only for a client
/// whose messages do not fit, so idle connections hold little memory.
const FIRST_READ_BUF: usize = 4096;
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
    /// When it was accepted (the TLS handshake timeout counts from here).
    pub opened: Instant,
}

impl Conn {
    fn new(stream: TcpStream, five: FiveTuple, tls: Option<Arc<CertStore>>, now: Instant) -> Self {
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
    pub fn read(&mut self) -> io::Result<usize> {
        if self.filled == self.buf.len() && self.buf.len() < READ_BUF {
            let grown = (self.buf.len() * 4).min(READ_BUF);
            self.buf.resize(grown, 0);
        }
        self.tls
            .read(&mut self.stream, &mut self.buf, &mut self.filled)
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

    /// Adds a connection whose 5-tuple `five` makes from its id; `None` when the slab is
    /// full.
    pub fn insert(
        &mut self,
        stream: TcpStream,
        five: impl FnOnce(ConnId) -> FiveTuple,
        tls: Option<Arc<CertStore>>,
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
        slot.conn = Some(Conn::new(stream, five(id), tls, now));
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
        let (first, c) = conns.insert(a, five, None, now).unwrap();
        assert_eq!(c.five, five(first));
        assert!(conns.remove(first).is_some());
        assert!(conns.remove(first).is_none());
        let (b, _cb) = pair();
        let (second, _) = conns.insert(b, five, None, now).unwrap();
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
        let (id, _) = conns.insert(s, five, None, now).unwrap();
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
        let (id, _) = conns.insert(s, five, None, now).unwrap();
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
}
