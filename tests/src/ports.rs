//! Loopback port blocks for one test server: its listening port, a port for a test peer,
//! and a relay range, all below the Linux ephemeral range.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, TcpListener, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// First port of the area blocks are taken from.
const AREA_START: u16 = 20_000;
/// One past the last port; 32768 is where Linux's ephemeral range starts.
const AREA_END: u16 = 32_768;
/// Ports per block.
const BLOCK: u16 = 64;
/// Offset of the first relay port in a block; the ones before are for listeners.
const RELAY_OFFSET: u16 = 16;

/// A block of 64 consecutive loopback ports in 20000–32767, reserved for one test server
/// within this process and checked to be free (UDP, and TCP for the listening port) when
/// handed out. Other processes are avoided by chance (a random start) and by the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBlock {
    base: u16,
}

static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

impl PortBlock {
    /// Reserves a free block. Panics if none is found.
    pub fn reserve() -> PortBlock {
        let blocks = (AREA_END - AREA_START) / BLOCK;
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            ^ std::process::id().wrapping_mul(2_654_435_761);
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        let taken = taken.get_or_insert_with(HashSet::new);
        for i in 0..blocks {
            let index = (seed as u16).wrapping_add(i) % blocks;
            let base = AREA_START + index * BLOCK;
            if taken.contains(&base) {
                continue;
            }
            let block = PortBlock { base };
            if block.all_free() {
                taken.insert(base);
                return block;
            }
        }
        panic!("no free block of {BLOCK} loopback ports in {AREA_START}..{AREA_END}");
    }

    /// The server's listening port.
    pub fn listen_port(&self) -> u16 {
        self.base
    }

    /// A spare port for a test peer (outside the relay range).
    pub fn peer_port(&self) -> u16 {
        self.base + 2
    }

    /// The tern admin port (TCP: /metrics, /healthz, /readyz).
    pub fn admin_port(&self) -> u16 {
        self.base + 3
    }

    /// The server's relay port range (`--min-port`..=`--max-port`).
    pub fn relay_range(&self) -> RangeInclusive<u16> {
        self.base + RELAY_OFFSET..=self.base + BLOCK - 1
    }

    fn all_free(&self) -> bool {
        let udp_free = |port| UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok();
        let tcp_free =
            |port| TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok();
        // On ::1 too, for the suites that listen and relay there; a host without IPv6
        // (nothing to bind) does not count against the block.
        let udp6_free = |port| {
            UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0))
                .map_or_else(|e| e.kind() != std::io::ErrorKind::AddrInUse, |_| true)
        };
        // Probe one port at a time: binding releases on drop.
        (self.base..self.base + BLOCK).all(|p| udp_free(p) && udp6_free(p))
            && tcp_free(self.listen_port())
            && tcp_free(self.admin_port())
    }
}
