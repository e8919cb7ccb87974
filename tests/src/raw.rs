//! A small raw TURN client on tern's codec, for what the independent clients cannot do:
//! send garbage from an allocation's own 5-tuple, count ports, compare relayed bytes exactly.
//! It talks UDP, or TCP (or TLS, over a stream the caller opened) with the stream framing of
//! RFC 8656 §12.5 (`tern_wire::stream`).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use tern_wire::stream::{self, Decoded, Framing};

use tern_wire::{attr, Class, Message, MessageType, MessageWriter, Method, TransactionId};

use crate::rest_credentials;

/// A stream to the server: a TCP connection, or TLS over one.
trait Stream: Read + Write {}

impl<S: Read + Write> Stream for S {}

/// A stream connection to the server, its local address, and the bytes read but not yet
/// framed.
struct Tcp {
    conn: RefCell<Box<dyn Stream>>,
    local: SocketAddr,
    pending: RefCell<Vec<u8>>,
}

/// A raw TURN client over one UDP socket, or one TCP connection.
pub struct RawClient {
    /// The client's UDP socket (bound but unused over TCP).
    pub sock: UdpSocket,
    tcp: Option<Tcp>,
    server: SocketAddr,
    realm: String,
    username: String,
    password: String,
    key: [u8; 16],
    nonce: Vec<u8>,
    tid: u16,
}

impl RawClient {
    /// A client on a fresh loopback socket with a REST credential under `secret`.
    pub fn new(server: SocketAddr, secret: &str, realm: &str) -> RawClient {
        RawClient::bound(IpAddr::from([127, 0, 0, 1]), server, secret, realm)
    }

    /// A client on a fresh UDP socket bound to `ip` (any of 127.0.0.0/8 on Linux), with a
    /// REST credential under `secret`.
    pub fn bound(ip: IpAddr, server: SocketAddr, secret: &str, realm: &str) -> RawClient {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (username, password) = rest_credentials(secret, "raw", 600);
        let key = tern_proto::auth::long_term_key(&username, realm, &password);
        RawClient {
            sock,
            tcp: None,
            server,
            realm: realm.to_owned(),
            username,
            password,
            key,
            nonce: Vec::new(),
            tid: 0,
        }
    }

    /// The same client authenticating as the static long-term user `username` with
    /// `password` (`user=` / `lt-cred-mech`) instead of a REST credential.
    pub fn as_user(mut self, username: &str, password: &str) -> RawClient {
        self.key = tern_proto::auth::long_term_key(username, &self.realm, password);
        self.username = username.to_owned();
        self.password = password.to_owned();
        self
    }

    /// A client on a fresh TCP connection to `server`, with a REST credential under
    /// `secret`.
    pub fn tcp(server: SocketAddr, secret: &str, realm: &str) -> RawClient {
        let conn = TcpStream::connect_timeout(&server, Duration::from_secs(2)).expect("connect");
        RawClient::over(conn, secret, realm)
    }

    /// A client on a TCP connection made elsewhere (bound to a chosen local address, or
    /// after a PROXY protocol header), with a REST credential under `secret`.
    pub fn over(conn: TcpStream, secret: &str, realm: &str) -> RawClient {
        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        conn.set_nodelay(true).unwrap();
        let (local, server) = (conn.local_addr().unwrap(), conn.peer_addr().unwrap());
        RawClient::over_stream(conn, local, server, secret, realm)
    }

    /// A client on any stream to `server` from `local` (TLS over a TCP connection whose
    /// read timeout the caller set), with a REST credential under `secret`.
    pub fn over_stream(
        stream: impl Read + Write + 'static,
        local: SocketAddr,
        server: SocketAddr,
        secret: &str,
        realm: &str,
    ) -> RawClient {
        RawClient {
            tcp: Some(Tcp {
                conn: RefCell::new(Box::new(stream)),
                local,
                pending: RefCell::new(Vec::new()),
            }),
            ..RawClient::new(server, secret, realm)
        }
    }

    /// The client's transport address: the TCP connection's local end, or the UDP socket's.
    pub fn local_addr(&self) -> SocketAddr {
        match &self.tcp {
            Some(t) => t.local,
            None => self.sock.local_addr().unwrap(),
        }
    }

    /// Sends raw bytes as they are: one datagram, or onto the stream.
    pub fn send_raw(&self, bytes: &[u8]) {
        match &self.tcp {
            Some(t) => {
                let mut conn = t.conn.borrow_mut();
                conn.write_all(bytes).expect("write to the connection");
                conn.flush().expect("flush the connection");
            }
            None => {
                self.sock.send_to(bytes, self.server).unwrap();
            }
        }
    }

    /// Receives one message: a datagram, or the next frame of the stream (without
    /// padding). An error on timeout, or when the server closed the connection.
    pub fn recv(&self) -> io::Result<Vec<u8>> {
        let Some(t) = &self.tcp else {
            let mut buf = [0u8; 65_536];
            let (n, _) = self.sock.recv_from(&mut buf)?;
            return Ok(buf[..n].to_vec());
        };
        let framing = Framing {
            rfc5766_channels: true,
            ..Framing::default()
        };
        let mut pending = t.pending.borrow_mut();
        // Each read adds at least a byte, and a frame is at most 64 KiB.
        for _ in 0..=stream::MAX_FRAME_LEN {
            match stream::decode_frame(&pending, framing) {
                Ok(Decoded::Frame(f)) => {
                    let message = pending[..f.len].to_vec();
                    pending.drain(..f.consumed);
                    return Ok(message);
                }
                Ok(Decoded::NeedMore { .. }) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            let mut buf = [0u8; 4096];
            let n = t.conn.borrow_mut().read(&mut buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            pending.extend_from_slice(&buf[..n]);
        }
        Err(io::ErrorKind::InvalidData.into())
    }

    /// Sends a Binding request (unauthenticated) and returns the XOR-MAPPED-ADDRESS of the
    /// answer: where the server sees this client.
    pub fn mapped_address(&mut self) -> SocketAddr {
        let tid = self.next_tid();
        let mut req = Vec::new();
        MessageWriter::new(
            &mut req,
            MessageType::new(Method::BINDING, Class::Request),
            tid,
        )
        .finish();
        let answer = self.exchange(&req);
        let m = Message::parse(&answer).expect("a STUN answer");
        let a = m
            .get(attr::XOR_MAPPED_ADDRESS)
            .expect("XOR-MAPPED-ADDRESS in the Binding answer");
        attr::decode_xor_address(a.value, a.typ, &m.transaction_id()).unwrap()
    }

    /// The REST username and password this client authenticates with.
    pub fn credentials(&self) -> (&str, &str) {
        (&self.username, &self.password)
    }

    fn next_tid(&mut self) -> TransactionId {
        self.tid = self.tid.wrapping_add(1);
        let mut t = [0x5a; 12];
        t[..2].copy_from_slice(&self.tid.to_be_bytes());
        TransactionId(t)
    }

    /// Sends `req` and returns the answer to its transaction, skipping anything else.
    pub fn exchange(&self, req: &[u8]) -> Vec<u8> {
        self.try_exchange(req).expect("an answer within 2 s")
    }

    /// Sends `req` and returns the answer to its transaction, or `None` when none came
    /// within the read timeout (2 s unless changed on [`RawClient::sock`]).
    pub fn try_exchange(&self, req: &[u8]) -> Option<Vec<u8>> {
        self.send_raw(req);
        loop {
            let answer = self.recv().ok()?;
            if let Ok(m) = Message::parse(&answer) {
                if m.transaction_id().0 == req[8..20] {
                    return Some(answer);
                }
            }
        }
    }

    /// A signed request (after learning the nonce); returns the error code or 0 on success.
    pub fn request(
        &mut self,
        method: Method,
        extra: impl Fn(&mut MessageWriter),
    ) -> (u16, Vec<u8>) {
        self.try_request(method, extra)
            .expect("an answer within 2 s")
    }

    /// As [`RawClient::request`], but `None` when a request got no answer in time (a server
    /// that drops it).
    pub fn try_request(
        &mut self,
        method: Method,
        extra: impl Fn(&mut MessageWriter),
    ) -> Option<(u16, Vec<u8>)> {
        for _ in 0..2 {
            let tid = self.next_tid();
            let mut req = Vec::new();
            let mut w = MessageWriter::new(&mut req, MessageType::new(method, Class::Request), tid);
            extra(&mut w);
            if !self.nonce.is_empty() {
                w.attr(attr::USERNAME, self.username.as_bytes())
                    .attr(attr::REALM, self.realm.as_bytes())
                    .attr(attr::NONCE, &self.nonce)
                    .message_integrity(&self.key);
            }
            w.finish();
            let reply = self.try_exchange(&req)?;
            let m = Message::parse(&reply).unwrap();
            let code = m
                .get(attr::ERROR_CODE)
                .map_or(0, |a| attr::decode_error_code(a.value).unwrap().0);
            if code == 401 && self.nonce.is_empty() || code == 438 {
                self.nonce = m.get(attr::NONCE).unwrap().value.to_vec();
                continue;
            }
            return Some((code, reply));
        }
        panic!("no answer past the nonce challenge");
    }

    /// Allocates; the error code (0 on success), or `None` when a request got no answer.
    pub fn try_allocate(&mut self) -> Option<u16> {
        let (code, _) = self.try_request(Method::ALLOCATE, |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        })?;
        Some(code)
    }

    /// Allocates; returns the error code (0 on success) and the relayed address.
    pub fn allocate(&mut self) -> (u16, Option<SocketAddr>) {
        let (code, reply) = self.request(Method::ALLOCATE, |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        });
        let m = Message::parse(&reply).unwrap();
        let relayed = m
            .get(attr::XOR_RELAYED_ADDRESS)
            .map(|a| attr::decode_xor_address(a.value, a.typ, &m.transaction_id()).unwrap());
        (code, relayed)
    }

    /// Allocates; panics unless it succeeds with a relayed address, which it returns.
    pub fn allocate_ok(&mut self) -> SocketAddr {
        let (code, relayed) = self.allocate();
        assert_eq!(code, 0, "Allocate failed");
        relayed.expect("XOR-RELAYED-ADDRESS in the success response")
    }
}

impl RawClient {
    /// Refresh with LIFETIME `seconds` (0 deletes the allocation); returns the error code,
    /// 0 on success.
    pub fn refresh(&mut self, seconds: u32) -> u16 {
        let (code, _) = self.request(Method::REFRESH, |w| {
            w.attr(attr::LIFETIME, &seconds.to_be_bytes());
        });
        code
    }

    /// Relays `n` payloads each way over channel 0x4000 between this client and `peer`
    /// (bound to the channel), checking each arrives whole and from the right address. Their
    /// lengths vary and are mostly not multiples of four, so a stream client's ChannelData
    /// is padded both ways.
    pub fn relay_over_channel(&self, relayed: SocketAddr, peer: &UdpSocket, n: usize) {
        let peer_addr = peer.local_addr().unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..n {
            let p: Vec<u8> = (0..(1 + i * 53 % 999)).map(|j| (i ^ j) as u8).collect();
            self.send_channel(0x4000, &p);
            let (len, from) = peer.recv_from(&mut buf).expect("the peer gets the payload");
            assert_eq!((from, &buf[..len]), (relayed, &p[..]), "client → peer #{i}");
            peer.send_to(&p, relayed).unwrap();
            let got = self.recv_relayed(peer_addr).expect("the client gets it");
            assert_eq!(got, (0x4000, p), "peer → client #{i}");
        }
    }

    /// CreatePermission for `peer`; panics unless it succeeds.
    pub fn permit(&mut self, peer: SocketAddr) {
        let (code, _) = self.request(Method::CREATE_PERMISSION, |w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, peer);
        });
        assert_eq!(code, 0, "CreatePermission {peer}");
    }

    /// ChannelBind `number` to `peer`; panics unless it succeeds.
    pub fn bind_channel(&mut self, number: u16, peer: SocketAddr) {
        let (code, _) = self.request(Method::CHANNEL_BIND, |w| {
            let n = number.to_be_bytes();
            w.attr(attr::CHANNEL_NUMBER, &[n[0], n[1], 0, 0]);
            w.xor_address(attr::XOR_PEER_ADDRESS, peer);
        });
        assert_eq!(code, 0, "ChannelBind {number:#x} to {peer}");
    }

    /// Sends `data` on channel `number` (padded to 4 bytes over TCP).
    pub fn send_channel(&self, number: u16, data: &[u8]) {
        let mut d = Vec::with_capacity(4 + data.len() + 3);
        d.extend_from_slice(&number.to_be_bytes());
        d.extend_from_slice(&(data.len() as u16).to_be_bytes());
        d.extend_from_slice(data);
        if self.tcp.is_some() {
            d.resize(stream::channel_data_frame_len(data.len()), 0);
        }
        self.send_raw(&d);
    }

    /// Sends `data` to `peer` in a Send indication.
    pub fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let tid = self.next_tid();
        let mut m = Vec::new();
        MessageWriter::new(
            &mut m,
            MessageType::new(Method::SEND, Class::Indication),
            tid,
        )
        .xor_address(attr::XOR_PEER_ADDRESS, peer)
        .attr(attr::DATA, data);
        self.send_raw(&m);
    }

    /// Receives one relayed datagram: `(channel, payload)` for ChannelData, `(0, payload)`
    /// for a Data indication (after checking its XOR-PEER-ADDRESS is `from_peer`).
    pub fn recv_relayed(&self, from_peer: SocketAddr) -> Option<(u16, Vec<u8>)> {
        loop {
            let d = self.recv().ok()?;
            let d = &d[..];
            if d[0] & 0xC0 == 0x40 {
                let cd = tern_wire::ChannelData::parse_rfc5766(d).ok()?;
                return Some((cd.channel.get(), cd.payload.to_vec()));
            }
            let m = Message::parse(d).ok()?;
            if m.method() == Method::DATA && m.class() == Class::Indication {
                let p = m.get(attr::XOR_PEER_ADDRESS)?;
                let peer = attr::decode_xor_address(p.value, p.typ, &m.transaction_id()).ok()?;
                assert_eq!(peer, from_peer, "XOR-PEER-ADDRESS of a Data indication");
                return Some((0, m.get(attr::DATA)?.value.to_vec()));
            }
        }
    }
}
