//! A hand-rolled STUN Binding probe (RFC 5389 §6), independent of tern's own codec, used to
//! tell when a server is up.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// Sends one Binding request to `server` and waits up to `wait` for a Binding success
/// response carrying the same transaction ID. Returns the response bytes.
pub fn binding_request_once(server: SocketAddr, wait: Duration) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv6() {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    } else {
        (Ipv4Addr::LOCALHOST, 0).into()
    };
    let sock = UdpSocket::bind(local)?;
    let txid = transaction_id();
    let mut req = Vec::with_capacity(20);
    req.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]); // Binding request, no attributes
    req.extend_from_slice(&MAGIC_COOKIE);
    req.extend_from_slice(&txid);
    sock.send_to(&req, server)?;
    let deadline = std::time::Instant::now() + wait;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        sock.set_read_timeout(Some(left))?;
        let (n, from) = sock.recv_from(&mut buf)?;
        let resp = &buf[..n];
        if from == server && n >= 20 && resp[..2] == [0x01, 0x01] && resp[8..20] == txid {
            return Ok(resp.to_vec());
        }
    }
}

fn transaction_id() -> [u8; 12] {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut id = [0u8; 12];
    id.copy_from_slice(&(nanos ^ u128::from(std::process::id()) << 64).to_be_bytes()[4..]);
    id
}
