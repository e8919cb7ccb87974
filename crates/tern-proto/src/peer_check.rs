//! The one check of a peer address a client names: where the server's own addresses and the
//! peer filter ([`crate::PeerFilter`]) apply, for each way a peer is named.
//!
//! The rules differ between the three on purpose:
//! - The server's own addresses (the relayed IPs of both families and `own_ips`) pass the filter at relay
//!   ports, so one allocation can reach another on the same server, and only there: on any
//!   other port (an admin or database port on the same host) they are filtered like any
//!   address, private or not.
//! - CreatePermission names an IP without a port, and a permission is per IP: an own IP gets
//!   its permission, and its port is checked when data is sent ([`PeerUse::Send`]).
//! - ChannelBind names the port too, so it is checked in full once; ChannelData then
//!   relies on the binding.
//! - A Send indication needs a permission, which carries the filter's verdict on its IP: only
//!   own IPs, let through by CreatePermission without their port, are checked again. So a
//!   live reload of the filter leaves permissions and channels already granted working until
//!   they expire ([`Server::reload`]).

use std::net::{IpAddr, SocketAddr};

use tern_wire::{attr, Message};

use crate::server::Server;

/// How a client names a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerUse {
    /// CreatePermission: the IP matters, not the port.
    Permission,
    /// ChannelBind: the IP and the port.
    Channel,
    /// A Send indication's destination, which also needs a permission.
    Send,
}

impl Server {
    /// Whether the peer filter lets a client reach `peer` named this way (rules in the
    /// module docs).
    pub(crate) fn peer_allowed(&self, peer: SocketAddr, how: PeerUse) -> bool {
        let own = self.is_own_ip(peer.ip());
        let relay_port = self.config.relay_port_range.contains(&peer.port());
        match how {
            PeerUse::Permission => own || self.filter.allows(peer.ip()),
            PeerUse::Channel => (own && relay_port) || self.filter.allows(peer.ip()),
            PeerUse::Send => !own || relay_port || self.filter.allows(peer.ip()),
        }
    }

    /// Whether `ip` is one of this server's own addresses: a relayed IP of either family,
    /// or one of `own_ips`.
    pub(crate) fn is_own_ip(&self, ip: IpAddr) -> bool {
        self.config.relayed_ips.contains(&Some(ip)) || self.config.own_ips.contains(&ip)
    }
}

/// Decodes the XOR-PEER-ADDRESS value `value` of `msg`; an IPv4-mapped IPv6 address becomes
/// the IPv4 address it reaches.
pub(crate) fn decode_peer(value: &[u8], msg: &Message<'_>) -> Option<SocketAddr> {
    let peer =
        attr::decode_xor_address(value, attr::XOR_PEER_ADDRESS, &msg.transaction_id()).ok()?;
    Some(SocketAddr::new(peer.ip().to_canonical(), peer.port()))
}
