//! The relay port range, bound up front: one UDP socket per port, held for the life of the
//! process, so a port is reusable the moment its allocation ends and no other process can
//! take it meanwhile. A port already held by someone else is skipped with a warning.
//!
//! Each socket is read by exactly one worker: the one whose core owns the allocation on it.
//! A worker claims a port when its core creates an allocation there and starts watching the
//! socket; a worker that sees input on a socket another worker has claimed stops watching it
//! without reading. The claim is a relaxed atomic store, made before the client learns the
//! relayed address, so no peer datagram for the new allocation can reach the old owner.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU32, Ordering};

use tern_proto::{Family, RelayEndpoint};
use tern_sys::Gso;
use tracing::warn;

/// No worker has claimed the port yet.
const UNCLAIMED: u32 = u32::MAX;

/// The relay sockets of one family, by port, and which worker reads each.
#[derive(Debug)]
pub struct RelayTable {
    family: Family,
    base: u16,
    /// Each socket with its own GSO state (shared by the workers that send from it).
    sockets: Vec<Option<(UdpSocket, Gso)>>,
    owners: Vec<AtomicU32>,
}

impl RelayTable {
    /// Binds every port of `range` on `ip` that can be bound, as the relayed endpoints of
    /// `family` (the family of the advertised relayed address, which a dual-stack `ip` may
    /// not share).
    pub fn bind(ip: IpAddr, range: RangeInclusive<u16>, family: Family) -> io::Result<Self> {
        let base = *range.start();
        let wanted = u64::from(*range.end() - base) + 1;
        let mut sockets = Vec::with_capacity(wanted as usize);
        let mut skipped = 0usize;
        for port in range.clone() {
            match UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) => {
                    s.set_nonblocking(true)?;
                    sockets.push(Some((s, Gso::new())));
                }
                Err(e)
                    if e.kind() == io::ErrorKind::AddrInUse
                        || e.raw_os_error() == Some(libc::EACCES) =>
                {
                    skipped += 1;
                    warn!(port, error = %e, "relay port unavailable (held by another process?); skipped");
                    sockets.push(None);
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
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
        sockets.resize_with(wanted as usize, || None);
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
            warn!(skipped, "some relay ports were skipped");
        }
        let owners = (0..wanted).map(|_| AtomicU32::new(UNCLAIMED)).collect();
        Ok(Self {
            family,
            base,
            sockets,
            owners,
        })
    }

    /// The ports that were bound.
    pub fn ports(&self) -> Vec<u16> {
        (self.base..)
            .zip(&self.sockets)
            .filter(|(_, s)| s.is_some())
            .map(|(p, _)| p)
            .collect()
    }

    #[inline]
    fn index(&self, relayed: RelayEndpoint) -> Option<usize> {
        let i = usize::from(relayed.port.wrapping_sub(self.base));
        (relayed.family == self.family && i < self.sockets.len()).then_some(i)
    }

    /// The socket of `relayed`, if bound, and its GSO state.
    #[inline]
    pub fn socket(&self, relayed: RelayEndpoint) -> Option<(&UdpSocket, &Gso)> {
        let (s, gso) = self.sockets[self.index(relayed)?].as_ref()?;
        Some((s, gso))
    }

    /// Makes `worker` the reader of `relayed`'s socket.
    pub fn claim(&self, relayed: RelayEndpoint, worker: u32) {
        if let Some(i) = self.index(relayed) {
            self.owners[i].store(worker, Ordering::Relaxed);
        }
    }

    /// Whether `worker` reads `relayed`'s socket.
    #[inline]
    pub fn is_owner(&self, relayed: RelayEndpoint, worker: u32) -> bool {
        self.index(relayed)
            .is_some_and(|i| self.owners[i].load(Ordering::Relaxed) == worker)
    }
}
