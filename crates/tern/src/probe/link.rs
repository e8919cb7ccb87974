//! The client's link to the server: a UDP socket, or a TCP or TLS stream on which STUN and
//! ChannelData messages are framed with [`tern_wire::stream`] (RFC 8656 §12.5: ChannelData
//! padded to four bytes on the way out, the padding skipped on the way in). The peer's
//! datagrams are read through [`Datagrams`]; the relay steps wait on either through [`Inbox`].
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};
use tern_wire::stream::{self, Decoded, Framing};
use tern_wire::{ChannelData, ChannelNumber, CHANNEL_DATA_HEADER_LEN};

use super::client::TxError;

/// The largest datagram read; the probe's own messages are far smaller.
const DATAGRAM_MAX: usize = 2048;
/// Bytes asked of a stream per read.
const STREAM_READ: usize = 4096;

/// A TLS session over its TCP connection.
pub(super) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Something the probe waits on for one message or datagram at a time.
pub(super) trait Inbox {
    /// The next message (a stream frame without padding, or a datagram) that arrives before
    /// `until`, and its source; `None` once `until` has passed.
    fn recv_until(&mut self, until: Instant) -> Result<Option<(&[u8], SocketAddr)>, TxError>;
}

/// The client's side of the conversation with the server.
pub(super) struct Link {
    to: SocketAddr,
    io: Io,
    /// UDP: the last datagram. Stream: the bytes read and not yet handed out.
    buf: Vec<u8>,
    /// Stream: the bytes at the front of `buf` taken by the frame handed out last.
    taken: usize,
}

enum Io {
    /// A connected socket also learns of ICMP port unreachable; an unconnected one ignores
    /// datagrams from anyone but the server.
    Udp {
        sock: UdpSocket,
        connected: bool,
    },
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

impl Link {
    /// Datagrams to and from `to` on `sock`.
    pub fn udp(sock: UdpSocket, to: SocketAddr, connected: bool) -> Self {
        Self::new(to, Io::Udp { sock, connected })
    }

    /// A TCP connection to the server.
    pub fn tcp(stream: TcpStream, to: SocketAddr) -> Self {
        Self::new(to, Io::Tcp(stream))
    }

    /// A TLS session with the server, its handshake done.
    pub fn tls(stream: TlsStream, to: SocketAddr) -> Self {
        Self::new(to, Io::Tls(Box::new(stream)))
    }

    fn new(to: SocketAddr, io: Io) -> Self {
        Self {
            to,
            io,
            buf: Vec::new(),
            taken: 0,
        }
    }

    /// The server's address.
    pub fn to(&self) -> SocketAddr {
        self.to
    }

    /// Whether requests are sent once (a stream delivers them or fails) rather than
    /// retransmitted.
    pub fn is_stream(&self) -> bool {
        !matches!(self.io, Io::Udp { .. })
    }

    /// The local IP the link sends from.
    pub fn local_ip(&self) -> io::Result<IpAddr> {
        let local = match &self.io {
            Io::Udp { sock, .. } => sock.local_addr(),
            Io::Tcp(tcp) => tcp.local_addr(),
            Io::Tls(tls) => tls.sock.local_addr(),
        };
        local.map(|a| a.ip())
    }

    /// Sends one STUN message.
    pub fn send(&mut self, message: &[u8]) -> io::Result<()> {
        match &mut self.io {
            Io::Udp { sock, connected } => {
                let sent = if *connected {
                    sock.send(message)
                } else {
                    sock.send_to(message, self.to)
                };
                sent.map(drop)
            }
            Io::Tcp(tcp) => tcp.write_all(message),
            Io::Tls(tls) => tls.write_all(message).and_then(|()| tls.flush()),
        }
    }

    /// Sends `data` on `channel`: a datagram as is, padded to four bytes on a stream.
    pub fn send_channel_data(&mut self, channel: ChannelNumber, data: &[u8]) -> io::Result<()> {
        let mut framed = Vec::with_capacity(CHANNEL_DATA_HEADER_LEN + data.len() + 3);
        if self.is_stream() {
            stream::write_channel_data(channel, data, &mut framed);
        } else {
            let mut header = [0u8; CHANNEL_DATA_HEADER_LEN];
            ChannelData::write_header(channel, data.len() as u16, &mut header);
            framed.extend_from_slice(&header);
            framed.extend_from_slice(data);
        }
        self.send(&framed)
    }

    /// Reads more of the stream into `buf`; `Ok(false)` when `until` passed first.
    fn fill(&mut self, until: Instant) -> Result<bool, TxError> {
        let Some(wait) = remaining(until) else {
            return Ok(false);
        };
        let mut chunk = [0u8; STREAM_READ];
        let read = match &mut self.io {
            Io::Udp { .. } => unreachable!("only streams are filled"),
            Io::Tcp(tcp) => tcp
                .set_read_timeout(Some(wait))
                .and_then(|()| tcp.read(&mut chunk)),
            Io::Tls(tls) => tls
                .sock
                .set_read_timeout(Some(wait))
                .and_then(|()| tls.read(&mut chunk)),
        };
        match read {
            Ok(0) => Err(TxError::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if is_timeout(&e) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                Err(TxError::Closed)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Inbox for Link {
    fn recv_until(&mut self, until: Instant) -> Result<Option<(&[u8], SocketAddr)>, TxError> {
        if let Io::Udp { sock, connected } = &self.io {
            let (to, connected) = (self.to, *connected);
            self.buf.resize(DATAGRAM_MAX, 0);
            let got = recv_datagram(sock, &mut self.buf, until, |from| connected || from == to)?;
            return Ok(got.map(|(n, from)| (&self.buf[..n], from)));
        }
        self.buf.drain(..self.taken);
        self.taken = 0;
        loop {
            match stream::decode_frame(&self.buf, Framing::default()) {
                Ok(Decoded::Frame(frame)) => {
                    self.taken = frame.consumed;
                    return Ok(Some((frame.message(&self.buf), self.to)));
                }
                Ok(Decoded::NeedMore { .. }) => {}
                Err(e) => return Err(TxError::Framing(e)),
            }
            if !self.fill(until)? {
                return Ok(None);
            }
        }
    }
}

/// The peer's socket, taking datagrams from anyone: the relay, or a NAT in front of it.
pub(super) struct Datagrams<'a> {
    sock: &'a UdpSocket,
    buf: Vec<u8>,
}

impl<'a> Datagrams<'a> {
    /// Reads `sock`.
    pub fn new(sock: &'a UdpSocket) -> Self {
        Self {
            sock,
            buf: vec![0; DATAGRAM_MAX],
        }
    }
}

impl Inbox for Datagrams<'_> {
    fn recv_until(&mut self, until: Instant) -> Result<Option<(&[u8], SocketAddr)>, TxError> {
        let got = recv_datagram(self.sock, &mut self.buf, until, |_| true)?;
        Ok(got.map(|(n, from)| (&self.buf[..n], from)))
    }
}

/// The next datagram whose source `accept` takes, before `until`. Datagrams from others are
/// dropped; the deadline bounds how many.
fn recv_datagram(
    sock: &UdpSocket,
    buf: &mut [u8],
    until: Instant,
    accept: impl Fn(SocketAddr) -> bool,
) -> Result<Option<(usize, SocketAddr)>, TxError> {
    while let Some(wait) = remaining(until) {
        sock.set_read_timeout(Some(wait))?;
        match sock.recv_from(buf) {
            Ok((n, from)) if accept(from) => return Ok(Some((n, from))),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// The time left until `until`, at least a millisecond (a zero read timeout means none);
/// `None` once it has passed.
fn remaining(until: Instant) -> Option<Duration> {
    let left = until.checked_duration_since(Instant::now())?;
    (!left.is_zero()).then(|| left.max(Duration::from_millis(1)))
}

/// How a read timeout shows: `WouldBlock` on Unix, `TimedOut` elsewhere.
pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
