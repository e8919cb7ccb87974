//! The bare forwarder's framing, shared by `bare-forwarder` and the generator's `--target bare`.
//!
//! Handshake: the client sends `HELO` + peer IPv4 (4 bytes) + peer port (2 bytes, big endian);
//! the forwarder answers `PORT` + its relay port for this client (2 bytes). Data: a 4-byte
//! header shaped like ChannelData (a 2-byte session tag in 0x4000..=0x7FFF, a 2-byte length)
//! and the payload, in both directions between client and forwarder; the peer sees the bare
//! payload.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// First four bytes of the handshake request.
pub const HELLO: &[u8; 4] = b"HELO";
/// First four bytes of the handshake answer.
pub const PORT: &[u8; 4] = b"PORT";

/// Encodes the hello for `peer`.
pub fn hello(peer: SocketAddrV4) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..4].copy_from_slice(HELLO);
    b[4..8].copy_from_slice(&peer.ip().octets());
    b[8..10].copy_from_slice(&peer.port().to_be_bytes());
    b
}

/// Decodes a hello; `None` when `b` is not one.
pub fn parse_hello(b: &[u8]) -> Option<SocketAddrV4> {
    if b.len() != 10 || &b[..4] != HELLO {
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
}

/// Hands out relay sockets from `--min-port..=--max-port`, skipping ports in use.
#[derive(Debug)]
pub struct RelayPorts {
    ip: Ipv4Addr,
    next: u16,
    max: u16,
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
        }
    }

    /// The next free relay socket; `None` when the range is exhausted.
    pub fn bind_next(&mut self) -> Option<UdpSocket> {
        while self.next <= self.max && self.next != 0 {
            let port = self.next;
            self.next = self.next.wrapping_add(1);
            if let Ok(s) = super::net::bind_udp(SocketAddrV4::new(self.ip, port)) {
                return Some(s);
            }
        }
        None
    }
}

/// The data header's session tag for the `index`th session (0x4000..=0x7FFF, like a channel).
pub fn session_tag(index: usize) -> [u8; 2] {
    (0x4000u16 | (index as u16 & 0x3FFF)).to_be_bytes()
}

/// Answers a hello from `to` on `listen` with the port of `relay`.
pub fn answer_hello(listen: &UdpSocket, relay: &UdpSocket, to: SocketAddrV4) -> io::Result<()> {
    let mut a = [0u8; 6];
    a[..4].copy_from_slice(PORT);
    a[4..].copy_from_slice(&relay.local_addr()?.port().to_be_bytes());
    // Lost like any datagram; the client asks again.
    let _ = listen.send_to(&a, to);
    Ok(())
}
