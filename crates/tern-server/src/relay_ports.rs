//! The relay port range, bound up front: one UDP socket per port and family the server
//! relays in (an IPv6 socket is IPv6-only), held for the life of the process, so a port is
//! reusable the moment its allocation ends and no other process can take it meanwhile. A
//! port already held by someone else is skipped with a warning.
//!
//! Each socket is read by exactly one worker: the one whose core owns the allocation on it.
//! A worker claims a port when its core creates an allocation there and starts watching the
//! socket; a worker that sees input on a socket another worker has claimed stops watching it
//! without reading. The claim is a relaxed atomic store, made before the client learns the
//! relayed address, so no peer datagram for the new allocation can reach the old owner.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, Protocol, Socket, Type};
use tern_proto::{Family, PerFamily, RelayEndpoint};
use tern_sys::Gso;
use tracing::warn;

/// No worker has claimed the port yet.
const UNCLAIMED: u32 = u32::MAX;

/// The relay sockets of every family the server relays in, by family and port, and which
/// worker reads each.
#[derive(Debug)]
pub struct RelayTable {
    base: u16,
    /// Per family: each port's socket with its own GSO state (shared by the workers that
    /// send from it), and its reader. Empty for a family the server does not relay in.
    families: PerFamily<Vec<Slot>>,
}

#[derive(Debug)]
struct Slot {
    socket: Option<(UdpSocket, Gso)>,
    owner: AtomicU32,
}

/// One relay socket on `addr`. An IPv6 one is IPv6-only (`IPV6_V6ONLY`), so the IPv4 and
/// IPv6 endpoints of a port stay two sockets even on `::`, each reached only by its own
/// family.
fn relay_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    // ICMP errors from peers (a peer gone: port unreachable) are queued and counted by the
    // worker instead of vanishing (tern_sys::drain_icmp_errors).
    tern_sys::enable_icmp_errors(sock.as_fd(), addr.is_ipv6());
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

impl RelayTable {
    /// Binds every port of `range` that can be bound on the bind IP of each family (by
    /// [`Family::index`]; `None`: the server does not relay in that family).
    pub fn bind(ips: PerFamily<Option<IpAddr>>, range: RangeInclusive<u16>) -> io::Result<Self> {
        let base = *range.start();
        let mut families: PerFamily<Vec<Slot>> = [Vec::new(), Vec::new()];
        for family in Family::ALL {
            let Some(ip) = ips[family.index()] else {
                continue;
            };
            let sockets = bind_family(ip, range.clone())?;
            families[family.index()] = sockets
                .into_iter()
                .map(|socket| Slot {
                    socket,
                    owner: AtomicU32::new(UNCLAIMED),
                })
                .collect();
        }
        Ok(Self { base, families })
    }

    /// The ports that were bound in `family`.
    pub fn ports(&self, family: Family) -> Vec<u16> {
        (self.base..)
            .zip(&self.families[family.index()])
            .filter(|(_, s)| s.socket.is_some())
            .map(|(p, _)| p)
            .collect()
    }

    #[inline]
    fn slot(&self, relayed: RelayEndpoint) -> Option<&Slot> {
        let i = usize::from(relayed.port.wrapping_sub(self.base));
        self.families[relayed.family.index()].get(i)
    }

    /// The socket of `relayed`, if bound, and its GSO state.
    #[inline]
    pub fn socket(&self, relayed: RelayEndpoint) -> Option<(&UdpSocket, &Gso)> {
        let (s, gso) = self.slot(relayed)?.socket.as_ref()?;
        Some((s, gso))
    }

    /// Makes `worker` the reader of `relayed`'s socket.
    pub fn claim(&self, relayed: RelayEndpoint, worker: u32) {
        if let Some(slot) = self.slot(relayed) {
            slot.owner.store(worker, Ordering::Relaxed);
        }
    }

    /// Whether `worker` reads `relayed`'s socket.
    #[inline]
    pub fn is_owner(&self, relayed: RelayEndpoint, worker: u32) -> bool {
        self.slot(relayed)
            .is_some_and(|s| s.owner.load(Ordering::Relaxed) == worker)
    }
}

/// The sockets of one family's relay ports on `ip`, `None` where the port could not be
/// bound (held by another process); an error when none could.
fn bind_family(
    ip: IpAddr,
    range: RangeInclusive<u16>,
) -> io::Result<Vec<Option<(UdpSocket, Gso)>>> {
    let wanted = usize::from(*range.end() - *range.start()) + 1;
    let mut sockets = Vec::with_capacity(wanted);
    let mut skipped = 0usize;
    for port in range.clone() {
        match relay_socket(SocketAddr::new(ip, port)) {
            Ok(s) => sockets.push(Some((s, Gso::new()))),
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    || e.raw_os_error() == Some(libc::EACCES) =>
            {
                skipped += 1;
                warn!(%ip, port, error = %e, "relay port unavailable (held by another process?); skipped");
                sockets.push(None);
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                warn!(%ip, port, error = %e, "out of file descriptors: relay ports from here on are not bound");
                break;
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot bind relay port {}: {e}", SocketAddr::new(ip, port)),
                ));
            }
        }
    }
    sockets.resize_with(wanted, || None);
    if sockets.iter().all(Option::is_none) {
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
        warn!(%ip, skipped, "some relay ports were skipped");
    }
    Ok(sockets)
}
