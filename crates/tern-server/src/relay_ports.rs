//! Binding the relay port range up front: one UDP socket per port, held for the life of the
//! process, so a port is reusable the moment its allocation ends and no other process can
//! take it meanwhile. A port already held by someone else is skipped with a warning.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;

use tracing::warn;

/// The sockets that could be bound, by port.
pub struct RelaySockets {
    pub sockets: Vec<(u16, UdpSocket)>,
}

pub fn bind_range(ip: IpAddr, range: RangeInclusive<u16>) -> io::Result<RelaySockets> {
    let wanted = u64::from(*range.end() - *range.start()) + 1;
    let limit = crate::sys::raise_nofile_limit(wanted + 256);
    if limit < wanted + 16 {
        warn!(limit, ports = wanted, "the open-file limit is below the relay port count; raise it (ulimit -n) or narrow min-port..max-port");
    }
    let mut sockets = Vec::with_capacity(wanted as usize);
    let mut skipped = 0usize;
    for port in range.clone() {
        match UdpSocket::bind(SocketAddr::new(ip, port)) {
            Ok(s) => {
                s.set_nonblocking(true)?;
                sockets.push((port, s));
            }
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    || e.raw_os_error() == Some(libc::EACCES) =>
            {
                skipped += 1;
                warn!(port, error = %e, "relay port unavailable (held by another process?); skipped");
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EMFILE)
                    || e.raw_os_error() == Some(libc::ENFILE) =>
            {
                warn!(port, error = %e, "out of file descriptors: relay ports from here on are not bound");
                break;
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot bind relay port {ip}:{port}: {e}"),
                ));
            }
        }
    }
    if sockets.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "no relay port in {}..={} could be bound on {ip}",
                range.start(),
                range.end()
            ),
        ));
    }
    if skipped > 0 {
        warn!(
            skipped,
            bound = sockets.len(),
            "some relay ports were skipped"
        );
    }
    Ok(RelaySockets { sockets })
}
