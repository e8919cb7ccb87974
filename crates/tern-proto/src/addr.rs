//! How the core names the two ends of its traffic, whatever the transport and family: a client
//! by its transport 5-tuple, a relayed transport address by family and port.
//!
//! A client over UDP is an address behind one of the worker's listening sockets; a client over
//! TCP or TLS is a connection. Both are a [`FiveTuple`] whose [`Transport`] says which, so the
//! I/O layer finds the socket or connection to answer on without a search. An allocation may
//! hold a relayed address in each family (RFC 8656 §7.2, ADDITIONAL-ADDRESS-FAMILY); each is a
//! [`RelayEndpoint`], and the I/O layer maps it to the socket it bound for it.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

/// One of a worker's UDP listening sockets, by its position in the worker's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u32);

impl ListenerId {
    /// The position in the worker's list of listening sockets.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One stream connection (TCP or TLS) of a worker, by an id the worker chose and does not
/// reuse while the core may still name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// How a client's datagrams or frames reach the server (RFC 8656 §2: the "transport protocol"
/// of the 5-tuple), and which of the worker's sockets or connections carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// UDP, through a listening socket.
    Udp {
        /// The listening socket the client sends to; answers leave from it.
        listener: ListenerId,
    },
    /// A stream connection (TCP, or TLS over TCP), which frames STUN and ChannelData
    /// messages (RFC 8656 §12.5).
    Stream {
        /// The connection.
        conn: ConnId,
        /// Whether it speaks TLS. Known before the first message reaches the core (the
        /// first byte decides) and never changes after.
        tls: bool,
    },
}

crate::label_enum! {
    /// A client transport as metrics name it, the `transport` label.
    pub enum TransportLabel {
        /// UDP.
        Udp => "udp",
        /// TCP without TLS.
        Tcp => "tcp",
        /// TLS over TCP.
        Tls => "tls",
    }
}

impl Transport {
    /// One word that tells transports apart, for hashing (a connection id is unique
    /// whether or not it speaks TLS).
    #[inline]
    fn word(self) -> u64 {
        match self {
            Self::Udp { listener } => u64::from(listener.0),
            Self::Stream { conn, .. } => 1 << 32 | u64::from(conn.0),
        }
    }

    /// Its metrics label.
    #[inline]
    pub fn label(self) -> TransportLabel {
        match self {
            Self::Udp { .. } => TransportLabel::Udp,
            Self::Stream { tls: false, .. } => TransportLabel::Tcp,
            Self::Stream { tls: true, .. } => TransportLabel::Tls,
        }
    }
}

/// The 5-tuple of an allocation (RFC 8656 §2: "the combination of client IP address and port,
/// server IP address and port, and transport protocol"), with the transport naming the socket
/// or connection that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiveTuple {
    /// The transport, and the listening socket or connection that carries the client's
    /// traffic.
    pub transport: Transport,
    /// The client's transport address as the server sees it (RFC 8656 §2: "client's IP
    /// address and port as seen by the server", after any NAT).
    pub client: SocketAddr,
    /// The server's transport address the client sends to.
    pub server: SocketAddr,
}

impl FiveTuple {
    /// A 5-tuple over UDP: `client` sending to `server` through listening socket `listener`.
    pub fn udp(listener: ListenerId, client: SocketAddr, server: SocketAddr) -> Self {
        Self {
            transport: Transport::Udp { listener },
            client,
            server,
        }
    }
}

/// Hashes the transport and the client address. The server address follows from the
/// transport (a listening socket has one address, a connection one pair), so equal 5-tuples
/// still hash alike, and the ChannelData path hashes two words instead of two whole socket
/// addresses (`benches/callgrind.sh` counts the difference).
impl Hash for FiveTuple {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let transport = self.transport.word();
        match self.client {
            SocketAddr::V4(a) => {
                let addr = u64::from(a.ip().to_bits()) << 16 | u64::from(a.port());
                state.write_u128(u128::from(transport) << 64 | u128::from(addr));
            }
            SocketAddr::V6(a) => {
                state.write_u128(a.ip().to_bits());
                state.write_u64(transport << 16 | u64::from(a.port()));
            }
        }
    }
}

crate::label_enum! {
    /// An address family; a metrics and log label.
    pub enum Family {
        /// IPv4.
        V4 => "ipv4",
        /// IPv6.
        V6 => "ipv6",
    }
}

/// A value kept per address family, by [`Family::index`].
pub type PerFamily<T> = [T; Family::ALL.len()];

impl Family {
    /// The family of `ip`.
    #[inline]
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The family a REQUESTED-ADDRESS-FAMILY, ADDITIONAL-ADDRESS-FAMILY or ADDRESS-ERROR-CODE
    /// byte names (RFC 8656 §18.6: 0x01 IPv4, 0x02 IPv6), if it names one.
    pub fn from_wire(byte: u8) -> Option<Self> {
        match byte {
            tern_wire::attr::FAMILY_IPV4 => Some(Self::V4),
            tern_wire::attr::FAMILY_IPV6 => Some(Self::V6),
            _ => None,
        }
    }

    /// Its byte in REQUESTED-ADDRESS-FAMILY, ADDITIONAL-ADDRESS-FAMILY and ADDRESS-ERROR-CODE.
    pub fn to_wire(self) -> u8 {
        match self {
            Self::V4 => tern_wire::attr::FAMILY_IPV4,
            Self::V6 => tern_wire::attr::FAMILY_IPV6,
        }
    }
}

/// A relayed transport address as the server binds it (RFC 8656 §2: "relayed transport
/// address"): a family and a port. The I/O layer holds one socket for each; the IP is the
/// family's relayed IP of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelayEndpoint {
    /// The family.
    pub family: Family,
    /// The port.
    pub port: u16,
}

impl RelayEndpoint {
    /// The endpoint of the relayed address `addr` (its family and port).
    pub fn of(addr: SocketAddr) -> Self {
        Self {
            family: Family::of(addr.ip()),
            port: addr.port(),
        }
    }
}

/// The relayed endpoints of one allocation: at most one per family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Relayed {
    ports: [Option<u16>; Family::ALL.len()],
}

impl Relayed {
    /// An allocation relayed on `endpoint` alone.
    #[cfg(test)]
    pub fn one(endpoint: RelayEndpoint) -> Self {
        let mut r = Self::default();
        r.set(endpoint);
        r
    }

    /// Adds `endpoint`, replacing the one of its family.
    pub fn set(&mut self, endpoint: RelayEndpoint) {
        self.ports[endpoint.family.index()] = Some(endpoint.port);
    }

    /// Removes the endpoint of `family`; returns it if there was one.
    pub fn remove(&mut self, family: Family) -> Option<RelayEndpoint> {
        let port = self.ports[family.index()].take()?;
        Some(RelayEndpoint { family, port })
    }

    /// How many endpoints (families) it holds.
    pub fn len(&self) -> usize {
        self.ports.iter().flatten().count()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoint of `family`, if the allocation has one.
    #[inline]
    pub fn get(&self, family: Family) -> Option<RelayEndpoint> {
        self.ports[family.index()].map(|port| RelayEndpoint { family, port })
    }

    /// Every endpoint, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = RelayEndpoint> + '_ {
        Family::ALL.into_iter().filter_map(|f| self.get(f))
    }

    /// The first endpoint (IPv4 before IPv6); every allocation has one.
    pub fn first(&self) -> RelayEndpoint {
        self.iter()
            .next()
            .expect("an allocation has a relayed endpoint")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash(t: &FiveTuple) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn five_tuples_differ_by_transport_and_hash_apart() {
        let (c, s) = (
            "198.51.100.2:4000".parse().unwrap(),
            "192.0.2.1:3478".parse().unwrap(),
        );
        let a = FiveTuple::udp(ListenerId(0), c, s);
        let b = FiveTuple::udp(ListenerId(1), c, s);
        let t = FiveTuple {
            transport: Transport::Stream {
                conn: ConnId(0),
                tls: false,
            },
            ..a
        };
        assert_ne!(a, b);
        assert_ne!(a, t);
        assert_ne!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&t));
        assert_eq!(hash(&a), hash(&FiveTuple::udp(ListenerId(0), c, s)));
        let v6 = FiveTuple::udp(ListenerId(0), "[2001:db8::1]:4000".parse().unwrap(), s);
        assert_ne!(hash(&a), hash(&v6));
    }

    #[test]
    fn families_are_indexed_and_relayed_endpoints_kept_per_family() {
        crate::label::assert_indexed(&Family::ALL.map(|f| (f.index(), f.label())));
        let e = RelayEndpoint::of("203.0.113.1:49152".parse().unwrap());
        assert_eq!((e.family, e.port), (Family::V4, 49152));
        let r = Relayed::one(e);
        assert_eq!(r.get(Family::V4), Some(e));
        assert_eq!(r.get(Family::V6), None);
        assert_eq!(r.first(), e);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![e]);
        let v6 = RelayEndpoint::of("[2001:db8::1]:49160".parse().unwrap());
        let mut dual = r;
        dual.set(v6);
        assert_eq!(dual.len(), 2);
        assert_eq!(dual.iter().collect::<Vec<_>>(), vec![e, v6]);
        assert_eq!(dual.remove(Family::V4), Some(e));
        assert_eq!(dual.remove(Family::V4), None);
        assert_eq!(dual.first(), v6);
        assert_eq!(dual.remove(Family::V6), Some(v6));
        assert!(dual.is_empty());
        for f in Family::ALL {
            assert_eq!(Family::from_wire(f.to_wire()), Some(f));
        }
        assert_eq!(Family::from_wire(0), None);
        assert_eq!(Family::from_wire(3), None);
    }
}
