//! Socket set-up shared by the load generator and the bare forwarder.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffer size asked for on every benchmark socket, so that the generator drops nothing
/// itself (the kernel caps it at `net.core.rmem_max` / `wmem_max`).
pub const SOCKET_BUFFER: usize = 4 << 20;

/// A non-blocking IPv4 UDP socket bound to `addr` with large buffers.
pub fn bind_udp(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&SocketAddr::V4(addr).into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Parses `A-B` into an inclusive port range.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected A-B"))?;
    let a: u16 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if a == 0 || b < a {
        return Err(format!("{s:?}: need 0 < A <= B"));
    }
    Ok((a, b))
}

/// Whether `addr` is on loopback: the benchmarks never send anywhere else, except inside a
/// network namespace of their own (see [`may_use`]).
pub fn is_loopback(addr: SocketAddrV4) -> bool {
    addr.ip().is_loopback()
}

/// Whether this process runs in a network namespace other than the host's (`ip netns exec`):
/// `/proc/self/ns/net` differs from init's.
pub fn in_own_netns() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/net"),
        std::fs::read_link("/proc/1/ns/net"),
    ) {
        (Ok(a), Ok(b)) => a != b,
        _ => false,
    }
}

/// Whether the generator may use `ip`: loopback always; a private (RFC 1918) address only
/// inside a network namespace of its own (the XDP benchmark's veth pair), where it reaches
/// nothing outside the machine.
pub fn may_use(ip: std::net::Ipv4Addr) -> bool {
    ip.is_loopback() || (ip.is_private() && in_own_netns())
}
