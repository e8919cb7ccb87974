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
