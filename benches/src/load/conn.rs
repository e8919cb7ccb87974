//! One client's stream connection to the server (`--transport tcp|tls`): a nonblocking TCP
//! socket from a chosen loopback source address, rustls beside it for TLS, a bounded queue of
//! bytes to write and a read buffer framed with `tern_wire::stream` (STUN and padded
//! ChannelData follow each other on the stream, RFC 8656 §12.5), or, to the bare forwarder
//! ([`Wire::Bare`]), its answer to the hello and then its padded frames (`super::bare`).
//!
//! Writes are shaped by the caller: [`StreamConn::queue`] then [`StreamConn::flush`] per
//! message is one `write` (one TLS record) per message, as a browser's TURN/TCP sends; several
//! queues before one flush coalesce them into one `write`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};

use rustls::ClientConnection;
use socket2::{Domain, Protocol, Socket, Type};
use tern_wire::stream::{self, FrameKind, Framing, MAX_FRAME_LEN};

use super::bare;
use super::tls::TlsClient;

/// Most plaintext bytes queued and not yet written; a message beyond it is dropped (counted
/// by the caller as the generator's drop).
const QUEUE_LIMIT: usize = 256 * 1024;
/// The read buffer: a whole largest frame plus what follows it in one read.
const READ_BUF: usize = 2 * MAX_FRAME_LEN;

/// What the server speaks on the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// TURN: STUN messages and padded ChannelData.
    Turn,
    /// The bare forwarder: the 6-byte answer to the hello, then padded frames.
    Bare,
}

/// A client's connection to the server, plain or TLS.
pub struct StreamConn {
    sock: TcpStream,
    tls: Option<Box<ClientConnection>>,
    wire: Wire,
    /// The relay port the bare forwarder's answer named, once it is in.
    bare_port: Option<u16>,
    /// Bytes read (plaintext) and not yet framed: `rbuf[..filled]`.
    rbuf: Vec<u8>,
    filled: usize,
    /// Plaintext to write: `out[sent..]` is still to go.
    out: Vec<u8>,
    sent: usize,
}

impl StreamConn {
    /// Starts connecting from `source` (an ephemeral port) to `server`, which speaks `wire`;
    /// with `tls`, the handshake starts once the connection is up (driven by
    /// [`StreamConn::flush`] and [`StreamConn::receive`]).
    pub fn connect(
        source: Ipv4Addr,
        server: SocketAddrV4,
        tls: Option<&TlsClient>,
        wire: Wire,
    ) -> io::Result<Self> {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())?;
        s.set_nonblocking(true)?;
        s.set_nodelay(true)?;
        match s.connect(&SocketAddr::V4(server).into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let tls = tls.map(|t| t.connection().map(Box::new)).transpose()?;
        Ok(Self {
            sock: s.into(),
            tls,
            wire,
            bare_port: None,
            rbuf: vec![0; READ_BUF],
            filled: 0,
            out: Vec::with_capacity(4096),
            sent: 0,
        })
    }

    /// The TLS session, for TLS connections.
    pub fn tls(&self) -> Option<&ClientConnection> {
        self.tls.as_deref()
    }

    /// The relay port the bare forwarder answered the hello with, once the answer is in.
    pub fn bare_port(&self) -> Option<u16> {
        self.bare_port
    }

    /// Whether the TLS handshake is still going on.
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Appends one message written by `fill` to the queue; false (nothing queued) when the
    /// queue is over its bound.
    pub fn queue_with(&mut self, fill: impl FnOnce(&mut Vec<u8>)) -> bool {
        if self.out.len() - self.sent > QUEUE_LIMIT {
            return false;
        }
        fill(&mut self.out);
        true
    }

    /// Appends a copy of `msg` to the queue (see [`StreamConn::queue_with`]).
    pub fn queue(&mut self, msg: &[u8]) -> bool {
        self.queue_with(|out| out.extend_from_slice(msg))
    }

    /// Whether bytes wait for room in the socket (or for the handshake to end).
    pub fn wants_write(&self) -> bool {
        self.sent < self.out.len() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes what is queued until it is all out or the socket is full: one `write` for the
    /// plain queue, and for TLS one record of the queued plaintext, written with one `writev`.
    /// Plaintext waits while the TLS handshake runs.
    pub fn flush(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            while self.sent < self.out.len() {
                match self.sock.write(&self.out[self.sent..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.compact();
            return Ok(());
        };
        loop {
            while tls.wants_write() {
                match tls.write_tls(&mut self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.compact();
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if self.sent == self.out.len() || tls.is_handshaking() {
                break;
            }
            self.sent += tls.writer().write(&self.out[self.sent..])?;
        }
        self.compact();
        Ok(())
    }

    fn compact(&mut self) {
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.sent > QUEUE_LIMIT / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// Reads what arrived and hands every whole message to `on_message`; `Ok(false)` once the
    /// server closed the connection. A stream that cannot be framed is an error.
    pub fn receive(&mut self, on_message: &mut impl FnMut(FrameKind, &[u8])) -> io::Result<bool> {
        loop {
            let n = match self.tls.as_mut() {
                None => match self.sock.read(&mut self.rbuf[self.filled..]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                },
                Some(tls) => {
                    let n = match tls.read_tls(&mut self.sock) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    tls.process_new_packets().map_err(io::Error::other)?;
                    if n > 0 {
                        self.read_plaintext(on_message)?;
                    }
                    n
                }
            };
            if n == 0 {
                return Ok(false);
            }
            if self.tls.is_none() {
                self.filled += n;
                self.frame(on_message)?;
            }
        }
    }

    /// Moves the plaintext rustls decrypted into the read buffer, framing as it goes.
    fn read_plaintext(&mut self, on_message: &mut impl FnMut(FrameKind, &[u8])) -> io::Result<()> {
        loop {
            let tls = self.tls.as_mut().expect("a TLS connection");
            match tls.reader().read(&mut self.rbuf[self.filled..]) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    self.filled += n;
                    self.frame(on_message)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Hands every whole message at the front of the read buffer to `on_message` and keeps
    /// the rest.
    fn frame(&mut self, on_message: &mut impl FnMut(FrameKind, &[u8])) -> io::Result<()> {
        let consumed = match self.wire {
            Wire::Turn => self.frame_turn(on_message)?,
            Wire::Bare => self.frame_bare(on_message)?,
        };
        self.rbuf.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
        Ok(())
    }

    /// [`StreamConn::frame`] for TURN; returns the bytes the messages took.
    fn frame_turn(&mut self, on_message: &mut impl FnMut(FrameKind, &[u8])) -> io::Result<usize> {
        let framing = Framing {
            max_frame_len: MAX_FRAME_LEN,
            rfc5766_channels: true,
        };
        let mut frames = stream::frames(&self.rbuf[..self.filled], framing);
        for frame in &mut frames {
            let (kind, message) =
                frame.map_err(|e| io::Error::other(format!("server's stream: {e}")))?;
            on_message(kind, message);
        }
        Ok(frames.consumed())
    }

    /// [`StreamConn::frame`] for the bare forwarder: its answer first (kept in
    /// [`StreamConn::bare_port`]), then each frame as a ChannelData message (header and
    /// payload, no padding); returns the bytes taken.
    fn frame_bare(&mut self, on_message: &mut impl FnMut(FrameKind, &[u8])) -> io::Result<usize> {
        let mut at = 0;
        if self.bare_port.is_none() {
            if self.filled < bare::ANSWER_LEN {
                return Ok(0);
            }
            let port = bare::parse_answer(&self.rbuf[..bare::ANSWER_LEN])
                .ok_or_else(|| io::Error::other("forwarder's stream: no PORT answer first"))?;
            self.bare_port = Some(port);
            at = bare::ANSWER_LEN;
        }
        let mut frames = bare::stream_frames(&self.rbuf[at..self.filled]);
        for frame in &mut frames {
            let frame = frame.map_err(|e| io::Error::other(format!("forwarder's stream: {e}")))?;
            on_message(FrameKind::ChannelData, frame.message);
        }
        Ok(at + frames.consumed())
    }
}

impl AsFd for StreamConn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
