//! The bare forwarder's framing, shared by `bare-forwarder` and the generator's `--target bare`.
//!
//! Handshake: the client sends `HELO` + peer IPv4 (4 bytes) + peer port (2 bytes, big endian);
//! the forwarder answers `PORT` + its relay port for this client (2 bytes). Data: a 4-byte
//! header shaped like ChannelData (a 2-byte session tag in 0x4000..=0x7FFF, a 2-byte length)
//! and the payload, in both directions between client and forwarder; the peer sees the bare
//! payload.
//!
//! Over UDP each datagram is one hello, answer or frame. Over TCP the stream starts with the
//! hello (client to forwarder) and the answer (back), then carries frames shaped like
//! TURN-over-TCP ChannelData: the header and payload padded with zeros to a multiple of four
//! bytes, which the length does not count (RFC 8656 §12.5). [`push_stream_frame`] writes one,
//! [`stream_frames`] splits what a connection read into whole frames and says how much of it
//! they took; the rest is the start of the next frame, kept for the next read.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// First four bytes of the handshake request.
pub const HELLO: &[u8; 4] = b"HELO";
/// First four bytes of the handshake answer.
pub const PORT: &[u8; 4] = b"PORT";
/// Bytes of the hello.
pub const HELLO_LEN: usize = 10;
/// Bytes of the answer.
pub const ANSWER_LEN: usize = 6;
/// Bytes of a frame's header: the session tag and the payload length.
pub const HEADER_LEN: usize = 4;
/// The longest stream frame: the header, the largest payload a length can say and padding.
pub const MAX_STREAM_FRAME: usize = stream_frame_len(u16::MAX as usize);

/// Encodes the hello for `peer`.
pub fn hello(peer: SocketAddrV4) -> [u8; HELLO_LEN] {
    let mut b = [0u8; HELLO_LEN];
    b[..4].copy_from_slice(HELLO);
    b[4..8].copy_from_slice(&peer.ip().octets());
    b[8..10].copy_from_slice(&peer.port().to_be_bytes());
    b
}

/// Decodes a hello; `None` when `b` is not one.
pub fn parse_hello(b: &[u8]) -> Option<SocketAddrV4> {
    if b.len() != HELLO_LEN || &b[..4] != HELLO {
        return None;
    }
    let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
    Some(SocketAddrV4::new(ip, u16::from_be_bytes([b[8], b[9]])))
}

/// The client half of the handshake: returns the relay port the forwarder uses for this client.
pub fn handshake(sock: &UdpSocket, server: SocketAddrV4, peer: SocketAddrV4) -> io::Result<u16> {
    let mut rx = [0u8; 64];
    for _try in 0..5 {
        sock.send_to(&hello(peer), server)?;
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline {
            match sock.recv_from(&mut rx) {
                Ok((6, _)) if &rx[..4] == PORT => return Ok(u16::from_be_bytes([rx[4], rx[5]])),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(io::Error::other(format!("no PORT answer from {server}")))
}

/// The command line of both bare forwarders (`bare-forwarder`, `bare-uring`).
#[derive(clap::Args, Debug, Clone)]
pub struct ForwarderArgs {
    /// The listening address.
    #[arg(long, default_value = "127.0.0.1:3478")]
    pub listen: SocketAddrV4,
    /// The address relay sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    pub relay_ip: Ipv4Addr,
    /// First relay port.
    #[arg(long, default_value_t = 49152)]
    pub min_port: u16,
    /// Last relay port.
    #[arg(long, default_value_t = 49252)]
    pub max_port: u16,
    /// Exit after this many seconds (a bound for benchmark runs).
    #[arg(long, default_value_t = 3600)]
    pub max_seconds: u64,
}

impl ForwarderArgs {
    /// The listening socket, after checking that every address is on loopback (the network
    /// rule: benchmarks relay nowhere else).
    pub fn bind_listener(&self) -> anyhow::Result<UdpSocket> {
        anyhow::ensure!(
            self.listen.ip().is_loopback() && self.relay_ip.is_loopback(),
            "loopback only"
        );
        Ok(super::net::bind_udp(self.listen)?)
    }

    /// The TCP listening socket on the same address (after the same check), nonblocking.
    pub fn bind_stream_listener(&self) -> anyhow::Result<TcpListener> {
        anyhow::ensure!(
            self.listen.ip().is_loopback() && self.relay_ip.is_loopback(),
            "loopback only"
        );
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.bind(&SocketAddr::V4(self.listen).into())?;
        // Room for every client of the widest load to be connecting at once.
        s.listen(4096)?;
        s.set_nonblocking(true)?;
        Ok(s.into())
    }
}

/// Hands out relay sockets from `--min-port..=--max-port`, skipping ports in use; ports
/// given back ([`RelayPorts::release`]) are handed out again first.
#[derive(Debug)]
pub struct RelayPorts {
    ip: Ipv4Addr,
    next: u16,
    max: u16,
    released: Vec<u16>,
}

impl RelayPorts {
    /// The range of `args`; raises the open-files limit so that every port of it can be bound
    /// (a socket each, plus a few).
    pub fn new(args: &ForwarderArgs) -> Self {
        let ports = u64::from(args.max_port.saturating_sub(args.min_port)) + 1;
        super::sys::raise_nofile_limit(ports + 64);
        Self {
            ip: args.relay_ip,
            next: args.min_port,
            max: args.max_port,
            released: Vec::new(),
        }
    }

    /// The next free relay socket; `None` when the range is exhausted.
    pub fn bind_next(&mut self) -> Option<UdpSocket> {
        while let Some(port) = self.released.pop() {
            if let Ok(s) = super::net::bind_udp(SocketAddrV4::new(self.ip, port)) {
                return Some(s);
            }
        }
        while self.next <= self.max && self.next != 0 {
            let port = self.next;
            self.next = self.next.wrapping_add(1);
            if let Ok(s) = super::net::bind_udp(SocketAddrV4::new(self.ip, port)) {
                return Some(s);
            }
        }
        None
    }

    /// Takes back `port`, whose socket the caller has closed.
    pub fn release(&mut self, port: u16) {
        self.released.push(port);
    }
}

/// The data header's session tag for the `index`th session (0x4000..=0x7FFF, like a channel).
pub fn session_tag(index: usize) -> [u8; 2] {
    (0x4000u16 | (index as u16 & 0x3FFF)).to_be_bytes()
}

/// Encodes the answer naming relay port `port`.
pub fn answer(port: u16) -> [u8; ANSWER_LEN] {
    let mut a = [0u8; ANSWER_LEN];
    a[..4].copy_from_slice(PORT);
    a[4..].copy_from_slice(&port.to_be_bytes());
    a
}

/// Decodes an answer into the relay port; `None` when `b` is not one.
pub fn parse_answer(b: &[u8]) -> Option<u16> {
    if b.len() != ANSWER_LEN || &b[..4] != PORT {
        return None;
    }
    Some(u16::from_be_bytes([b[4], b[5]]))
}

/// Answers a hello from `to` on `listen` with the port of `relay`.
pub fn answer_hello(listen: &UdpSocket, relay: &UdpSocket, to: SocketAddrV4) -> io::Result<()> {
    let a = answer(relay.local_addr()?.port());
    // Lost like any datagram; the client asks again.
    let _ = listen.send_to(&a, to);
    Ok(())
}

/// Bytes a frame with `payload_len` bytes of payload takes on a stream: the header, the
/// payload and zero padding up to a multiple of four.
pub const fn stream_frame_len(payload_len: usize) -> usize {
    (HEADER_LEN + payload_len).next_multiple_of(4)
}

/// Appends the stream frame of `payload` under `tag` to `out`: header, payload, padding.
/// Allocates only when `out` lacks the room ([`stream_frame_len`]); a caller that keeps its
/// buffer's length under its capacity allocates nothing.
///
/// # Panics
///
/// If `payload` is longer than a length field can say (65,535 bytes).
pub fn push_stream_frame(out: &mut Vec<u8>, tag: [u8; 2], payload: &[u8]) {
    let len = u16::try_from(payload.len()).expect("a payload of at most 65,535 bytes");
    let pad = stream_frame_len(payload.len()) - HEADER_LEN - payload.len();
    out.extend_from_slice(&tag);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&[0u8; 3][..pad]);
}

/// A stream whose next frame's tag is outside 0x4000..=0x7FFF: it cannot be framed any
/// further, and its connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTag(pub u16);

impl std::fmt::Display for BadTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "frame tag {:#06x} outside 0x4000..=0x7FFF", self.0)
    }
}

impl std::error::Error for BadTag {}

/// One whole frame cut from a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFrame<'a> {
    /// The session tag.
    pub tag: [u8; 2],
    /// The header and the payload, without the padding (shaped like a ChannelData message).
    pub message: &'a [u8],
}

impl<'a> StreamFrame<'a> {
    /// The payload: what the peer sees.
    pub fn payload(&self) -> &'a [u8] {
        &self.message[HEADER_LEN..]
    }
}

/// The whole frames at the front of `buf`, in order (see [`StreamFrames`]).
pub fn stream_frames(buf: &[u8]) -> StreamFrames<'_> {
    StreamFrames {
        buf,
        consumed: 0,
        broken: false,
    }
}

/// An iterator over the whole frames at the front of a buffer. It stops at the first frame
/// that is not all there (or after a [`BadTag`], which it yields once); [`StreamFrames::consumed`]
/// then says how many bytes the frames took, padding included. No allocation, no copy.
#[derive(Debug)]
pub struct StreamFrames<'a> {
    buf: &'a [u8],
    consumed: usize,
    broken: bool,
}

impl StreamFrames<'_> {
    /// Bytes of the buffer the frames yielded so far took: drop them, keep the rest.
    pub fn consumed(&self) -> usize {
        self.consumed
    }
}

impl<'a> Iterator for StreamFrames<'a> {
    type Item = Result<StreamFrame<'a>, BadTag>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.consumed..];
        if self.broken || rest.len() < HEADER_LEN {
            return None;
        }
        let tag = [rest[0], rest[1]];
        if rest[0] & 0xC0 != 0x40 {
            self.broken = true;
            return Some(Err(BadTag(u16::from_be_bytes(tag))));
        }
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let whole = stream_frame_len(len);
        if rest.len() < whole {
            return None;
        }
        self.consumed += whole;
        Some(Ok(StreamFrame {
            tag,
            message: &rest[..HEADER_LEN + len],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame's tag and payload.
    type Owned = ([u8; 2], Vec<u8>);

    /// A stream of frames of every padding (payloads of 0 to 9 bytes) under tags across the
    /// range, with the frames it holds.
    fn sample_stream() -> (Vec<u8>, Vec<Owned>) {
        let frames: Vec<Owned> = (0..10u8)
            .map(|n| (session_tag(usize::from(n) * 1800), (1..=n).collect()))
            .collect();
        let mut stream = Vec::new();
        for (tag, payload) in &frames {
            push_stream_frame(&mut stream, *tag, payload);
        }
        (stream, frames)
    }

    /// Feeds `stream` to a connection's read buffer in reads of the given sizes (the last
    /// takes the rest), framing after each as the forwarder and the generator do.
    fn frame_in_reads(stream: &[u8], reads: &[usize]) -> Vec<Owned> {
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        let mut at = 0;
        for (i, &n) in reads.iter().enumerate() {
            let end = if i + 1 == reads.len() {
                stream.len()
            } else {
                (at + n).min(stream.len())
            };
            buf.extend_from_slice(&stream[at..end]);
            at = end;
            let mut frames = stream_frames(&buf);
            for f in &mut frames {
                let f = f.expect("well-formed");
                got.push((f.tag, f.payload().to_vec()));
            }
            let consumed = frames.consumed();
            buf.drain(..consumed);
        }
        assert!(buf.is_empty(), "a tail left: {buf:?}");
        got
    }

    #[test]
    fn frames_are_padded_to_four_bytes_and_the_padding_is_zero() {
        for n in 0..9usize {
            let mut out = Vec::new();
            push_stream_frame(&mut out, [0x40, 0x01], &vec![0xFF; n]);
            assert_eq!(out.len(), stream_frame_len(n));
            assert_eq!(out.len() % 4, 0);
            assert!(out.len() - (4 + n) < 4);
            assert_eq!(&out[..4], &[0x40, 0x01, 0, n as u8]);
            assert!(out[4 + n..].iter().all(|&b| b == 0), "{out:?}");
        }
        assert_eq!(MAX_STREAM_FRAME, 65_540);
    }

    #[test]
    fn the_padding_is_skipped_on_the_way_in() {
        let (stream, frames) = sample_stream();
        let mut it = stream_frames(&stream);
        let got: Vec<_> = (&mut it)
            .map(|f| {
                let f = f.expect("well-formed");
                // The message is the header and the payload, no padding.
                assert_eq!(f.message.len(), 4 + f.payload().len());
                (f.tag, f.payload().to_vec())
            })
            .collect();
        assert_eq!(got, frames);
        assert_eq!(it.consumed(), stream.len());
    }

    #[test]
    fn any_split_of_the_stream_into_reads_gives_the_same_frames() {
        let (stream, frames) = sample_stream();
        // Every split into two reads, and reads of every fixed size.
        for cut in 0..=stream.len() {
            assert_eq!(frame_in_reads(&stream, &[cut, 0]), frames, "cut at {cut}");
        }
        for size in 1..=stream.len() {
            let reads = vec![size; stream.len().div_ceil(size)];
            assert_eq!(frame_in_reads(&stream, &reads), frames, "reads of {size}");
        }
    }

    #[test]
    fn a_read_that_ends_mid_frame_keeps_the_tail() {
        let mut stream = Vec::new();
        push_stream_frame(&mut stream, [0x40, 0x00], b"first");
        let whole = stream.len();
        push_stream_frame(&mut stream, [0x40, 0x00], b"second!");
        // The read ends in the second frame's payload, then in its padding.
        for end in [whole + 6, stream.len() - 1] {
            let mut it = stream_frames(&stream[..end]);
            let f = it.next().expect("the first frame").expect("well-formed");
            assert_eq!(f.payload(), b"first");
            assert_eq!(it.next(), None);
            assert_eq!(it.consumed(), whole);
        }
        // And in the first frame's header: nothing consumed.
        let mut it = stream_frames(&stream[..3]);
        assert_eq!(it.next(), None);
        assert_eq!(it.consumed(), 0);
    }

    #[test]
    fn a_tag_outside_the_range_stops_the_stream() {
        let mut stream = Vec::new();
        push_stream_frame(&mut stream, [0x7F, 0xFF], b"ok");
        stream.extend_from_slice(&[0x80, 0, 0, 0]);
        push_stream_frame(&mut stream, [0x40, 0x00], b"never");
        let got: Vec<_> = stream_frames(&stream).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].is_ok());
        assert_eq!(got[1], Err(BadTag(0x8000)));
    }

    #[test]
    fn the_handshake_round_trips_and_would_misframe_as_a_frame() {
        let peer = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 9), 40_990);
        assert_eq!(parse_hello(&hello(peer)), Some(peer));
        assert_eq!(parse_answer(&answer(49_152)), Some(49_152));
        assert_eq!(parse_answer(b"PORT\x01"), None);
        assert_eq!(parse_answer(&hello(peer)[..ANSWER_LEN]), None);
        // 'H' and 'P' start a tag in range: read as a frame, either would claim a length of
        // thousands of bytes. So both ends take the handshake off the stream before framing.
        for first in [&hello(peer)[..], &answer(49_152)[..]] {
            let mut it = stream_frames(first);
            assert_eq!(it.next(), None);
            assert_eq!(it.consumed(), 0);
        }
    }
}
