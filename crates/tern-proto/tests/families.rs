//! Address families (RFC 8656 §7.2, §8 and §9; RFC 6156) in virtual time: which family an
//! Allocate gets, dual allocations and their partial success, per-family permissions and
//! channels, per-family refresh, deletion and expiry, and the family counters.

mod common;

use std::net::SocketAddr;

use common::*;
use tern_proto::{
    ClientOutput, Config, DefaultFamily, Destination, DropReason, EndReason, Event, Family,
    PeerOutput, RelayEndpoint, TransportLabel,
};
use tern_wire::{attr, Class, Method};

const V4: u8 = attr::FAMILY_IPV4;
const V6: u8 = attr::FAMILY_IPV6;
const RELAYED_V6: &str = "2001:db8::1";

/// A dual-stack server: relayed IPs 203.0.113.1 and 2001:db8::1, ports [`PORTS`] in each.
fn dual_config() -> Config {
    let mut c = config();
    c.relay_in(RELAYED_V6.parse().unwrap());
    c
}

/// An IPv6-only server (relayed IP 2001:db8::1).
fn v6_config() -> Config {
    let mut c = Config::new(REALM, RELAYED_V6.parse().unwrap(), PORTS);
    c.auth_secrets = vec![SECRET.to_vec()];
    c
}

/// Public IPv6 peers the default filter allows.
fn peer6_a() -> SocketAddr {
    addr("[2606:4700::1111]:5000")
}
fn peer6_b() -> SocketAddr {
    addr("[2a00:1450::1]:6000")
}

/// A client that reached the server on its IPv6 listening address.
fn v6_client(at: &str, name: &str) -> Client {
    let mut c = Client::rest(at, name);
    c.five.server = addr("[2001:db8::1]:3478");
    c
}

fn family_of(a: SocketAddr) -> Family {
    Family::of(a.ip())
}

#[test]
fn requested_address_family_picks_the_family() {
    let mut h = Harness::new(dual_config());
    let mut a = Client::rest("192.0.2.10:1", "a");
    let r = a.allocate_families(&mut h, Some(V6), None);
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.relayed_addresses().len(), 1);
    let relayed = r.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap();
    assert_eq!(relayed.ip().to_string(), RELAYED_V6);
    assert!(PORTS.contains(&relayed.port()));
    assert!(!r.has(attr::ADDRESS_ERROR_CODE));

    let mut b = Client::rest("192.0.2.11:1", "b");
    let r = b.allocate_families(&mut h, Some(V4), None);
    assert_eq!(
        r.relayed_addresses()
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>(),
        ["203.0.113.1"]
    );
    // A family byte that names neither family is not supported.
    let mut c = Client::rest("192.0.2.12:1", "c");
    assert_eq!(c.allocate_families(&mut h, Some(3), None).code(), 440);
    // The attribute must be four bytes.
    let r = c.request(&mut h, Method::ALLOCATE, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        w.attr(attr::REQUESTED_ADDRESS_FAMILY, &[V6, 0]);
    });
    assert_eq!(r.code(), 400);
    assert_eq!(h.stats().allocations, 2);
}

#[test]
fn a_family_without_a_relayed_address_gets_440() {
    // IPv4 only: IPv6 asked for is 440, and nothing is taken from the pool.
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    let r = c.allocate_families(&mut h, Some(V6), None);
    assert_eq!(r.code(), 440);
    assert_eq!(r.error().unwrap().1, "Address Family not Supported");
    assert_eq!((h.stats().allocations, h.stats().free_ports), (0, 100));
    // IPv6 only: an Allocate naming no family asks for IPv4 (RFC 8656 §7.2), so 440 too.
    let mut h = Harness::new(v6_config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    assert_eq!(c.allocate_with(&mut h, None).code(), 440);
    assert_eq!(c.allocate_families(&mut h, Some(V4), None).code(), 440);
    assert!(c.allocate_families(&mut h, Some(V6), None).is_success());
}

#[test]
fn the_default_family_is_ipv4_ipv6_or_the_clients() {
    let mut h = Harness::new(dual_config());
    let relayed_family = |h: &mut Harness, c: &mut Client| {
        let r = c.allocate_with(h, None);
        assert!(r.is_success(), "{r:?}");
        let all = r.relayed_addresses();
        assert_eq!(all.len(), 1);
        family_of(all[0])
    };
    // ipv4, the default: even a client that came over IPv6 gets IPv4.
    let mut c = v6_client("[2001:db8:c::1]:1", "a");
    assert_eq!(relayed_family(&mut h, &mut c), Family::V4);

    let mut cfg = dual_config();
    cfg.default_family = DefaultFamily::Ipv6;
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("192.0.2.10:1", "a");
    assert_eq!(relayed_family(&mut h, &mut c), Family::V6);
    // REQUESTED-ADDRESS-FAMILY still wins over the default.
    let mut d = Client::rest("192.0.2.11:1", "b");
    let r = d.allocate_families(&mut h, Some(V4), None);
    assert_eq!(family_of(r.relayed_addresses()[0]), Family::V4);

    // keep: the family of the address the client reached the server on.
    let mut cfg = dual_config();
    cfg.default_family = DefaultFamily::Keep;
    let mut h = Harness::new(cfg);
    let mut over_v6 = v6_client("[2001:db8:c::1]:1", "a");
    let mut over_v4 = Client::rest("192.0.2.10:1", "b");
    assert_eq!(relayed_family(&mut h, &mut over_v6), Family::V6);
    assert_eq!(relayed_family(&mut h, &mut over_v4), Family::V4);

    // keep on a server without IPv6 relaying: an IPv6 client gets 440.
    let mut cfg = config();
    cfg.default_family = DefaultFamily::Keep;
    let mut h = Harness::new(cfg);
    let mut c = v6_client("[2001:db8:c::1]:1", "a");
    assert_eq!(c.allocate_with(&mut h, None).code(), 440);
}

#[test]
fn a_dual_allocation_relays_in_both_families() {
    let mut h = Harness::new(dual_config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    c.challenge(&mut h, Method::ALLOCATE);
    h.outputs();
    let (v4, v6) = c.allocate_dual(&mut h);
    assert_eq!(v4.ip().to_string(), "203.0.113.1");
    assert_eq!(v6.ip().to_string(), RELAYED_V6);
    // Both endpoints are claimed before the reply, then the event names both addresses.
    match h.outputs().as_slice() {
        [Seen::Claim { relayed: a, .. }, Seen::Claim { relayed: b, .. }, Seen::Event(Event::AllocationCreated {
            relayed,
            additional,
            ..
        }), Seen::Transmit {
            destination: Destination::Client(_),
            ..
        }] => {
            assert_eq!((*a, *b), (RelayEndpoint::of(v4), RelayEndpoint::of(v6)));
            assert_eq!((*relayed, *additional), (v4, Some(v6)));
        }
        other => panic!("{other:?}"),
    }
    let s = h.stats();
    assert_eq!((s.allocations, s.free_ports, s.pool_size), (1, 198, 200));

    // Each family relays to its own peers, from its own endpoint.
    assert!(c
        .create_permission(&mut h, &[peer_a(), peer6_a()])
        .is_success());
    assert!(c.channel_bind(&mut h, 0x4000, peer_b()).is_success());
    assert!(c.channel_bind(&mut h, 0x4001, peer6_b()).is_success());
    let bound: Vec<_> = h
        .outputs()
        .into_iter()
        .filter_map(|s| match s {
            Seen::ChannelBound(b) => Some((b.number.get(), b.relayed)),
            _ => None,
        })
        .collect();
    assert_eq!(
        bound,
        [
            (0x4000, RelayEndpoint::of(v4)),
            (0x4001, RelayEndpoint::of(v6))
        ]
    );
    for (number, peer, from) in [(0x4000, peer_b(), v4), (0x4001, peer6_b(), v6)] {
        assert_eq!(
            c.channel_data(&mut h, number, b"hi"),
            ClientOutput::Relay {
                relayed: RelayEndpoint::of(from),
                peer,
                payload: 4..6
            }
        );
    }
    for (peer, from) in [(peer_a(), v4), (peer6_a(), v6)] {
        match c.send(&mut h, peer, b"x").0 {
            ClientOutput::Relay { relayed, .. } => assert_eq!(relayed, RelayEndpoint::of(from)),
            out => panic!("{peer}: {out:?}"),
        }
        let (out, framed) = h.peer_datagram_to(RelayEndpoint::of(from), peer, b"back");
        assert!(matches!(out, PeerOutput::Forward { five_tuple, .. } if five_tuple == c.five));
        assert_eq!(data_indication(&framed), (peer, b"back".to_vec()));
    }
    // Channel peers come back as ChannelData on their family's endpoint.
    let (_, framed) = h.peer_datagram_to(RelayEndpoint::of(v6), peer6_b(), b"cd");
    assert_eq!(framed, [0x40, 0x01, 0, 2, b'c', b'd']);
    // A permission of one family does not open the other family's endpoint: an IPv6 peer's
    // datagram is read only from the IPv6 socket, and there its permission is what counts.
    assert_eq!(
        h.peer_datagram_to(RelayEndpoint::of(v4), peer6_a(), b"x").0,
        PeerOutput::Drop(DropReason::NoPermission),
        "no IPv6 datagram arrives on the IPv4 socket; if one did, it would not pass"
    );
    assert_eq!(
        h.peer_datagram_to(RelayEndpoint::of(v6), addr("[2606:4700::2]:1"), b"x")
            .0,
        PeerOutput::Drop(DropReason::NoPermission)
    );

    let k = h.server.counters().clone();
    let (udp, f4, f6) = (
        TransportLabel::Udp.index(),
        Family::V4.index(),
        Family::V6.index(),
    );
    assert_eq!(
        k.allocations_created[udp],
        [1, 1],
        "one relayed address per family"
    );
    assert_eq!(k.channel_to_peer[udp][f4].packets, 1);
    assert_eq!(k.channel_to_peer[udp][f6].packets, 1);
    assert_eq!(k.send_to_peer[udp].map(|p| p.packets), [1, 1]);
    assert_eq!(k.data_to_client[udp].map(|p| p.bytes), [4, 4]);
    assert_eq!(k.channel_to_client[udp].map(|p| p.packets), [0, 1]);
}

#[test]
fn dual_allocation_attribute_rules() {
    let mut h = Harness::new(dual_config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    // ADDITIONAL-ADDRESS-FAMILY may only name IPv6 (IPv4 is implied).
    assert_eq!(c.allocate_families(&mut h, None, Some(V4)).code(), 400);
    assert_eq!(c.allocate_families(&mut h, None, Some(3)).code(), 400);
    // Exactly one of the two attributes, never both.
    assert_eq!(c.allocate_families(&mut h, Some(V4), Some(V6)).code(), 400);
    assert_eq!(c.allocate_families(&mut h, Some(V6), Some(V6)).code(), 400);
    // RESERVATION-TOKEN fixes the families: neither attribute may come with it.
    for (requested, additional) in [(Some(V4), None), (None, Some(V6))] {
        let r = c.request(&mut h, Method::ALLOCATE, &|w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            w.attr(attr::RESERVATION_TOKEN, &[1, 2, 3, 4, 5, 6, 7, 8]);
            if let Some(f) = requested {
                w.attr(
                    attr::REQUESTED_ADDRESS_FAMILY,
                    &attr::encode_address_family(f),
                );
            }
            if let Some(f) = additional {
                w.attr(
                    attr::ADDITIONAL_ADDRESS_FAMILY,
                    &attr::encode_address_family(f),
                );
            }
        });
        assert_eq!(r.code(), 400, "{requested:?} {additional:?}");
    }
    assert_eq!((h.stats().allocations, h.stats().free_ports), (0, 200));
}

#[test]
fn a_dual_allocation_of_a_family_the_server_lacks_is_a_partial_success_with_440() {
    for (cfg, have, lack) in [(config(), Family::V4, V6), (v6_config(), Family::V6, V4)] {
        let mut h = Harness::new(cfg);
        let mut c = Client::rest("192.0.2.10:1", "a");
        let r = c.allocate_families(&mut h, None, Some(V6));
        assert!(r.is_success(), "{r:?}");
        let relayed = r.relayed_addresses();
        assert_eq!(
            relayed.iter().map(|a| family_of(*a)).collect::<Vec<_>>(),
            [have]
        );
        assert_eq!(r.address_error(), Some((lack, 440)));
        let m = r.msg();
        let aec = m.get(attr::ADDRESS_ERROR_CODE).unwrap();
        assert_eq!(
            attr::decode_address_error_code(aec.value).unwrap().2,
            "Address Family not Supported"
        );
        // It is an allocation like any other: it refreshes and relays.
        assert!(c.refresh(&mut h, None).is_success());
        assert_eq!(h.stats().allocations, 1);
    }
}

#[test]
fn a_dual_allocation_whose_family_pool_is_empty_is_a_partial_success_with_508() {
    // One port in the IPv6 pool, taken by an IPv6-only allocation.
    let mut cfg = dual_config();
    cfg.relay_ports[Family::V6.index()] = vec![49152];
    let mut h = Harness::new(cfg);
    let mut v6_only = Client::rest("192.0.2.9:1", "z");
    assert!(v6_only
        .allocate_families(&mut h, Some(V6), None)
        .is_success());
    let mut c = Client::rest("192.0.2.10:1", "a");
    let r = c.allocate_families(&mut h, None, Some(V6));
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        r.relayed_addresses()
            .iter()
            .map(|a| family_of(*a))
            .collect::<Vec<_>>(),
        [Family::V4]
    );
    assert_eq!(r.address_error(), Some((V6, 508)));
    h.outputs();
    // A retransmission gets the same answer, without a second claim.
    let tid = c.last_tid();
    let again = c.request_once(&mut h, Method::ALLOCATE, tid, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        w.attr(
            attr::ADDITIONAL_ADDRESS_FAMILY,
            &attr::encode_address_family(V6),
        );
    });
    assert_eq!(again.relayed_addresses(), r.relayed_addresses());
    assert_eq!(again.address_error(), Some((V6, 508)));
    assert!(!h.outputs().iter().any(|s| matches!(s, Seen::Claim { .. })));

    // The IPv4 pool empty instead: IPv6 with ADDRESS-ERROR-CODE for IPv4.
    let mut cfg = dual_config();
    cfg.relay_ports[Family::V4.index()] = vec![49152];
    let mut h = Harness::new(cfg);
    assert!(Client::rest("192.0.2.9:1", "z")
        .allocate_families(&mut h, Some(V4), None)
        .is_success());
    let mut c = Client::rest("192.0.2.10:1", "a");
    let r = c.allocate_families(&mut h, None, Some(V6));
    assert_eq!(
        r.relayed_addresses()
            .iter()
            .map(|a| family_of(*a))
            .collect::<Vec<_>>(),
        [Family::V6]
    );
    assert_eq!(r.address_error(), Some((V4, 508)));

    // Both empty: the request fails with 508, and no quota is used.
    let mut cfg = dual_config();
    cfg.relay_ports = [vec![49152], vec![49152]];
    cfg.total_quota = 2;
    let mut h = Harness::new(cfg);
    assert!(
        Client::rest("192.0.2.9:1", "z")
            .allocate_dual(&mut h)
            .0
            .port()
            == 49152
    );
    let mut c = Client::rest("192.0.2.10:1", "a");
    assert_eq!(c.allocate_families(&mut h, None, Some(V6)).code(), 508);
    assert_eq!(h.server.shared().allocations(), 1);
}

#[test]
fn a_peer_of_a_family_the_allocation_lacks_gets_443() {
    let mut h = Harness::new(dual_config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    assert!(c.allocate_families(&mut h, Some(V4), None).is_success());
    assert_eq!(c.create_permission(&mut h, &[peer6_a()]).code(), 443);
    assert_eq!(c.channel_bind(&mut h, 0x4000, peer6_a()).code(), 443);
    // All or nothing: a good peer beside a mismatched one installs neither.
    assert_eq!(
        c.create_permission(&mut h, &[peer_a(), peer6_a()]).code(),
        443
    );
    assert_eq!(h.stats().permissions, 0);
    assert_eq!(
        c.send(&mut h, peer6_a(), b"x").0,
        ClientOutput::Drop(DropReason::NoPermission)
    );

    let mut d = Client::rest("192.0.2.11:1", "b");
    assert!(d.allocate_families(&mut h, Some(V6), None).is_success());
    assert_eq!(d.create_permission(&mut h, &[peer_a()]).code(), 443);
    // An IPv4-mapped IPv6 peer is the IPv4 address it maps: IPv4, so 443 here too.
    let mapped = addr("[::ffff:93.184.216.34]:5000");
    assert_eq!(d.create_permission(&mut h, &[mapped]).code(), 443);
    assert!(d.create_permission(&mut h, &[peer6_a()]).is_success());
    // Forbidden is decided before the family: a refused IPv4 peer is 403 on an IPv6 relay.
    assert_eq!(
        d.create_permission(&mut h, &[addr("10.0.0.1:1")]).code(),
        403
    );
}

#[test]
fn refresh_with_a_family_refreshes_only_that_family_and_the_other_expires() {
    let mut h = Harness::new(dual_config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    let (v4, v6) = c.allocate_dual(&mut h);
    assert!(c
        .create_permission(&mut h, &[peer_a(), peer6_a()])
        .is_success());
    assert!(c.channel_bind(&mut h, 0x4000, peer_b()).is_success());
    assert!(c.channel_bind(&mut h, 0x4001, peer6_b()).is_success());
    h.outputs();
    h.advance_to(290);
    // Keep the permissions and channels alive past the IPv4 endpoint's end.
    assert!(c
        .create_permission(&mut h, &[peer_a(), peer6_a()])
        .is_success());
    assert!(c.channel_bind(&mut h, 0x4000, peer_b()).is_success());
    assert!(c.channel_bind(&mut h, 0x4001, peer6_b()).is_success());
    h.advance_to(500);
    let r = c.request(&mut h, Method::REFRESH, &|w| {
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &attr::encode_address_family(V6),
        );
    });
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.lifetime(), Some(600));
    assert!(c
        .create_permission(&mut h, &[peer_a(), peer_b(), peer6_a(), peer6_b()])
        .is_success());
    h.outputs();
    h.events();
    h.advance_to(599);
    assert!(h.events().is_empty());
    h.advance_to(601);
    // The IPv4 endpoint's lifetime ran out: its channel is unbound, its endpoint released,
    // then the event; the allocation relays on in IPv6.
    let seen = h.outputs();
    match seen.as_slice() {
        [Seen::ChannelUnbound(b), Seen::Release { relayed, .. }, Seen::Event(Event::RelayedAddressEnded {
            five_tuple,
            relayed: ended,
            reason: EndReason::Expired,
        })] => {
            assert_eq!((b.number.get(), b.relayed), (0x4000, RelayEndpoint::of(v4)));
            assert_eq!(*relayed, RelayEndpoint::of(v4));
            assert_eq!((*five_tuple, *ended), (c.five, v4));
        }
        other => panic!("{other:?}"),
    }
    let s = h.stats();
    assert_eq!((s.allocations, s.permissions, s.channels), (1, 2, 1));
    assert_eq!(s.free_ports, 199, "the IPv4 port is back in its pool");
    assert_eq!(
        h.peer_datagram_to(RelayEndpoint::of(v4), peer_a(), b"late")
            .0,
        PeerOutput::Drop(DropReason::NoAllocation)
    );
    assert_eq!(
        c.channel_data(&mut h, 0x4000, b"x"),
        ClientOutput::Drop(DropReason::NoChannel)
    );
    assert!(matches!(
        c.channel_data(&mut h, 0x4001, b"x"),
        ClientOutput::Relay { .. }
    ));
    assert!(matches!(
        h.peer_datagram_to(RelayEndpoint::of(v6), peer6_a(), b"y").0,
        PeerOutput::Forward { .. }
    ));
    // IPv4 is gone from the allocation: its peers are a mismatch now, and so is a Refresh
    // naming it.
    assert_eq!(c.create_permission(&mut h, &[peer_a()]).code(), 443);
    let r = c.request(&mut h, Method::REFRESH, &|w| {
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &attr::encode_address_family(V4),
        );
    });
    assert_eq!(r.code(), 443);
    // The IPv6 endpoint ends at 500 + 600, and with it the allocation.
    h.advance_to(1099);
    assert_eq!(h.stats().allocations, 1);
    h.advance_to(1101);
    let ended: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::AllocationEnded {
                relayed,
                additional,
                reason,
                ..
            } => Some((relayed, additional, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(ended, [(v6, None, EndReason::Expired)]);
    let s = h.stats();
    assert_eq!((s.allocations, s.free_ports), (0, 200));
    let k = h.server.counters();
    let udp = TransportLabel::Udp;
    assert_eq!(k.live(udp, Family::V4) + k.live(udp, Family::V6), 0);
    let expired = EndReason::Expired.index();
    assert_eq!(k.allocations_ended[udp.index()].map(|f| f[expired]), [1, 1]);
}

#[test]
fn refresh_without_a_family_refreshes_both() {
    let mut h = Harness::new(dual_config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    c.allocate_dual(&mut h);
    h.advance_to(500);
    assert!(c.refresh(&mut h, None).is_success());
    h.events();
    h.advance_to(1099);
    assert!(h.events().is_empty(), "neither family expired");
    h.advance_to(1101);
    let events = h.events();
    assert!(
        matches!(
            events.as_slice(),
            [Event::AllocationEnded {
                additional: Some(_),
                reason: EndReason::Expired,
                ..
            }]
        ),
        "both end together: {events:?}"
    );
}

#[test]
fn refresh_with_a_family_and_lifetime_zero_deletes_that_family() {
    let mut h = Harness::new(dual_config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    let (v4, v6) = c.allocate_dual(&mut h);
    h.outputs();
    h.events();
    let r = c.request(&mut h, Method::REFRESH, &|w| {
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &attr::encode_address_family(V6),
        );
        w.u32(attr::LIFETIME, 0);
    });
    assert!(r.is_success());
    assert_eq!(r.lifetime(), Some(0));
    // The reply first, then the IPv6 endpoint's release and its event.
    match h.outputs().as_slice() {
        [Seen::Transmit { .. }, Seen::Release { relayed, .. }, Seen::Event(Event::RelayedAddressEnded {
            relayed: ended,
            reason: EndReason::Deleted,
            ..
        })] => {
            assert_eq!((*relayed, *ended), (RelayEndpoint::of(v6), v6));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.stats().allocations, 1);
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    assert_eq!(c.create_permission(&mut h, &[peer6_a()]).code(), 443);
    h.events();
    // Deleting the last family ends the allocation.
    let r = c.request(&mut h, Method::REFRESH, &|w| {
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &attr::encode_address_family(V4),
        );
        w.u32(attr::LIFETIME, 0);
    });
    assert!(r.is_success());
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [Event::AllocationEnded { relayed, additional: None, reason: EndReason::Deleted, .. }] if *relayed == v4),
        "{events:?}"
    );
    let s = h.stats();
    assert_eq!((s.allocations, s.permissions, s.free_ports), (0, 0, 200));
    assert_eq!(c.refresh(&mut h, None).code(), 437);
}

#[test]
fn refresh_naming_a_family_the_allocation_lacks_gets_443() {
    let mut h = Harness::new(dual_config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    assert!(c.allocate_families(&mut h, Some(V6), None).is_success());
    for family in [V4, 3] {
        let r = c.request(&mut h, Method::REFRESH, &|w| {
            w.attr(
                attr::REQUESTED_ADDRESS_FAMILY,
                &attr::encode_address_family(family),
            );
        });
        assert_eq!(r.code(), 443, "family {family}");
    }
    let r = c.request(&mut h, Method::REFRESH, &|w| {
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &attr::encode_address_family(V6),
        );
        w.u32(attr::LIFETIME, 0);
    });
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        h.stats().allocations,
        0,
        "its only family deleted: the allocation ended"
    );
}

#[test]
fn per_family_expiry_unbinds_only_that_familys_channels_and_permissions() {
    // Permissions and channels of the family that lives on are untouched by the other's end,
    // and expire on their own schedule.
    let mut h = Harness::new(dual_config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    let (_, v6) = c.allocate_dual(&mut h);
    h.advance_to(550);
    let r = c.request(&mut h, Method::REFRESH, &|w| {
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &attr::encode_address_family(V6),
        );
    });
    assert!(r.is_success());
    assert!(c
        .create_permission(&mut h, &[peer_a(), peer6_a()])
        .is_success());
    assert_eq!(h.stats().permissions, 2);
    h.advance_to(601);
    assert_eq!(
        h.stats().permissions,
        1,
        "the IPv4 permission went with IPv4"
    );
    h.advance_to(849);
    assert_eq!(h.stats().permissions, 1);
    h.advance_to(851);
    assert_eq!(
        h.stats().permissions,
        0,
        "the IPv6 permission expired on its own"
    );
    assert_eq!(
        h.peer_datagram_to(RelayEndpoint::of(v6), peer6_a(), b"x").0,
        PeerOutput::Drop(DropReason::NoPermission)
    );
    assert_eq!(h.stats().allocations, 1);
}

#[test]
fn even_port_reservations_hold_a_port_in_each_family() {
    let mut h = Harness::new(dual_config());
    let mut a = Client::rest("192.0.2.10:1", "a");
    let r = a.request(&mut h, Method::ALLOCATE, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        w.attr(
            attr::ADDITIONAL_ADDRESS_FAMILY,
            &attr::encode_address_family(V6),
        );
        w.attr(attr::EVEN_PORT, &[0x80]);
    });
    assert!(r.is_success(), "{r:?}");
    let [v4, v6] = r.relayed_addresses()[..] else {
        panic!("{r:?}")
    };
    assert_eq!((v4.port() % 2, v6.port() % 2), (0, 0));
    let token = r.value(attr::RESERVATION_TOKEN).expect("RESERVATION-TOKEN");
    assert_eq!(h.stats().free_ports, 196, "two taken, two reserved");
    let mut b = Client::rest("192.0.2.11:1", "b");
    let r = b.request(&mut h, Method::ALLOCATE, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        w.attr(attr::RESERVATION_TOKEN, &token);
    });
    assert!(r.is_success(), "{r:?}");
    let ports: Vec<_> = r
        .relayed_addresses()
        .iter()
        .map(|a| (family_of(*a), a.port()))
        .collect();
    assert_eq!(
        ports,
        [(Family::V4, v4.port() + 1), (Family::V6, v6.port() + 1)]
    );
    // A reservation nobody redeems frees both ports when it lapses.
    let mut d = Client::rest("192.0.2.12:1", "d");
    let r = d.request(&mut h, Method::ALLOCATE, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        w.attr(
            attr::ADDITIONAL_ADDRESS_FAMILY,
            &attr::encode_address_family(V6),
        );
        w.attr(attr::EVEN_PORT, &[0x80]);
    });
    assert!(r.is_success());
    assert_eq!(h.stats().free_ports, 200 - 4 - 4);
    h.advance_to(31);
    assert_eq!(h.stats().free_ports, 200 - 4 - 2);
}

#[test]
fn the_servers_own_ipv6_relayed_address_is_a_peer_on_relay_ports_only() {
    let mut h = Harness::new(dual_config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    c.allocate_families(&mut h, Some(V6), None);
    let own = |port| SocketAddr::new(RELAYED_V6.parse().unwrap(), port);
    // 2001:db8::/32 is documentation, refused as an ordinary peer ...
    assert_eq!(c.channel_bind(&mut h, 0x4000, own(80)).code(), 403);
    // ... but another allocation's relayed address on this server is reachable.
    assert!(c.channel_bind(&mut h, 0x4000, own(49200)).is_success());
    assert_eq!(
        c.send(&mut h, own(22), b"x").0,
        ClientOutput::Drop(DropReason::DeniedPeer)
    );
}

#[test]
fn allocations_over_ipv6_and_data_indications_to_ipv6_clients() {
    // A client that itself speaks IPv6 gets its XOR-MAPPED-ADDRESS and its Data
    // indications over IPv6, whatever the relayed family.
    let mut h = Harness::new(dual_config());
    let mut c = v6_client("[2001:db8:c::7]:4000", "a");
    let r = c.allocate_families(&mut h, None, Some(V6));
    assert!(r.is_success());
    assert_eq!(r.xor_address(attr::XOR_MAPPED_ADDRESS), Some(c.five.client));
    let v4 = r.relayed_addresses()[0];
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    let (out, framed) = h.peer_datagram_to(RelayEndpoint::of(v4), peer_a(), b"four");
    match out {
        PeerOutput::Forward { five_tuple, .. } => assert_eq!(five_tuple.client, c.five.client),
        out => panic!("{out:?}"),
    }
    assert_eq!(data_indication(&framed), (peer_a(), b"four".to_vec()));
    let _ = Class::Success;
}

#[test]
fn coturns_draft_codepoints_ask_for_and_answer_a_dual_allocation() {
    let draft = |h: &mut Harness, c: &mut Client| {
        c.request(h, Method::ALLOCATE, &|w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            w.attr(
                attr::ADDITIONAL_ADDRESS_FAMILY_DRAFT,
                &attr::encode_address_family(V6),
            );
        })
    };
    let mut h = Harness::new(dual_config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    let r = draft(&mut h, &mut c);
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.relayed_addresses().len(), 2);
    // A partial success names the missing family at the draft codepoint, the one that
    // client reads, and not at RFC 8656's.
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:1", "a");
    let r = draft(&mut h, &mut c);
    assert_eq!(r.relayed_addresses().len(), 1);
    assert!(!r.has(attr::ADDRESS_ERROR_CODE));
    let m = r.msg();
    let aec = m
        .get(attr::ADDRESS_ERROR_CODE_DRAFT)
        .expect("ADDRESS-ERROR-CODE at 0x8033");
    assert_eq!(
        attr::decode_address_error_code(aec.value).unwrap(),
        (V6, 440, "Address Family not Supported")
    );
    // The draft attribute with REQUESTED-ADDRESS-FAMILY is as bad as the RFC one: 400.
    let mut c = Client::rest("192.0.2.11:1", "b");
    let r = c.request(&mut h, Method::ALLOCATE, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &attr::encode_address_family(V4),
        );
        w.attr(
            attr::ADDITIONAL_ADDRESS_FAMILY_DRAFT,
            &attr::encode_address_family(V6),
        );
    });
    assert_eq!(r.code(), 400);
}
