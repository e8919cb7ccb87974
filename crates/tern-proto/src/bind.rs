//! CreatePermission and ChannelBind (RFC 8656 §9 and §12): every peer is vetted
//! ([`crate::peer_check`]) before anything is installed, and a new channel binding is queued
//! as an output before the success response.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tern_wire::{attr, Message};

use crate::addr::Family;
use crate::allocation::{ChannelBinding, Permission};
use crate::error::RequestError;
use crate::output::Output;
use crate::peer_check::{decode_peer, PeerUse};
use crate::response::Success;
use crate::server::{Server, Timer};
use crate::slab::AllocationId;

impl Server {
    /// Decodes and vets one XOR-PEER-ADDRESS named `how` for allocation `id`: the peer
    /// check, then the family (the allocation must have a relayed address in it).
    fn vet_peer(
        &self,
        id: AllocationId,
        value: &[u8],
        msg: &Message<'_>,
        how: PeerUse,
    ) -> Result<SocketAddr, RequestError> {
        let peer = decode_peer(value, msg)
            .ok_or(RequestError::MalformedAttribute(attr::XOR_PEER_ADDRESS))?;
        if !self.peer_allowed(peer, how) {
            return Err(RequestError::Forbidden);
        }
        if self
            .allocation(id)
            .relayed
            .get(Family::of(peer.ip()))
            .is_none()
        {
            return Err(RequestError::PeerAddressFamilyMismatch);
        }
        Ok(peer)
    }

    pub(crate) fn create_permission(
        &mut self,
        now: Instant,
        id: AllocationId,
        msg: &Message<'_>,
        key: [u8; 16],
    ) -> Result<Success, RequestError> {
        // All or nothing (RFC 8656 §9.2): vet every peer before installing any.
        let (mut count, mut new) = (0, 0);
        for a in msg.attributes().filter(|a| a.typ == attr::XOR_PEER_ADDRESS) {
            let peer = self.vet_peer(id, a.value, msg, PeerUse::Permission)?;
            count += 1;
            if !self.allocation(id).has_permission(peer.ip()) {
                new += 1;
            }
        }
        if count == 0 {
            return Err(RequestError::MissingAttribute(attr::XOR_PEER_ADDRESS));
        }
        if self.allocation(id).permissions.len() + new > self.config.max_permissions_per_allocation
        {
            return Err(RequestError::InsufficientCapacity);
        }
        for a in msg.attributes().filter(|a| a.typ == attr::XOR_PEER_ADDRESS) {
            let peer = self.vet_peer(id, a.value, msg, PeerUse::Permission)?;
            self.install_permission(now, id, peer.ip());
        }
        Ok(Success::Empty { key })
    }

    fn install_permission(&mut self, now: Instant, id: AllocationId, ip: IpAddr) {
        let expires = now + self.config.permission_lifetime;
        let alloc = self.allocations.get_mut(id).expect("allocation exists");
        if let Some(p) = alloc.permissions.iter_mut().find(|p| p.ip == ip) {
            p.expires = expires;
            return;
        }
        alloc.permissions.push(Permission { ip, expires });
        alloc.note_peer(ip);
        // Channels to `ip` whose permission had lapsed relay again.
        for &channel in alloc.channels.iter().filter(|c| c.peer.ip() == ip) {
            self.out
                .push(Output::ChannelBound(alloc.bound(id, channel)));
        }
        self.permissions += 1;
        self.timers.insert(expires, Timer::Permission { id, ip });
    }

    pub(crate) fn channel_bind(
        &mut self,
        now: Instant,
        id: AllocationId,
        msg: &Message<'_>,
        key: [u8; 16],
    ) -> Result<Success, RequestError> {
        let number = msg
            .get(attr::CHANNEL_NUMBER)
            .ok_or(RequestError::MissingAttribute(attr::CHANNEL_NUMBER))?;
        let number = attr::decode_channel_number(number.value)
            .map_err(|_| RequestError::MalformedAttribute(attr::CHANNEL_NUMBER))?;
        let number = if self.config.rfc5766_channels {
            tern_wire::ChannelNumber::new_rfc5766(number)
        } else {
            tern_wire::ChannelNumber::new(number)
        }
        .map_err(|_| RequestError::BadChannelNumber)?;
        let peer = msg
            .get(attr::XOR_PEER_ADDRESS)
            .ok_or(RequestError::MissingAttribute(attr::XOR_PEER_ADDRESS))?;
        let peer = self.vet_peer(id, peer.value, msg, PeerUse::Channel)?;
        let (max_channels, max_permissions) = (
            self.config.max_channels_per_allocation,
            self.config.max_permissions_per_allocation,
        );
        let expires = now + self.config.channel_lifetime;
        let alloc = self.allocations.get_mut(id).expect("allocation exists");
        // Rebinding rules (RFC 8656 §12.2): a channel keeps its peer, a peer keeps its channel.
        let by_number = alloc.channels.iter().position(|c| c.number == number);
        let by_peer = alloc.channels.iter().position(|c| c.peer == peer);
        let new_permission = !alloc.has_permission(peer.ip());
        if new_permission && alloc.permissions.len() >= max_permissions {
            return Err(RequestError::InsufficientCapacity);
        }
        let new_channel = match (by_number, by_peer) {
            (Some(i), Some(j)) if i == j => {
                alloc.channels[i].expires = expires;
                false
            }
            (None, None) if alloc.channels.len() >= max_channels => {
                return Err(RequestError::InsufficientCapacity);
            }
            (None, None) => true,
            _ => return Err(RequestError::ChannelConflict),
        };
        // First the permission: one that had lapsed under a bound channel makes that channel
        // usable by a fast path again (ChannelBound).
        self.install_permission(now, id, peer.ip());
        if new_channel {
            let alloc = self.allocations.get_mut(id).expect("allocation exists");
            let binding = ChannelBinding {
                number,
                peer,
                expires,
            };
            alloc.channels.push(binding);
            self.channels += 1;
            let number = number.get();
            self.timers.insert(expires, Timer::Channel { id, number });
            // Before the success response: a fast path fed from the queue knows the
            // channel before the client sends on it.
            self.out
                .push(Output::ChannelBound(alloc.bound(id, binding)));
        }
        Ok(Success::Empty { key })
    }
}
