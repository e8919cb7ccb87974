//! Lifetimes in virtual time: allocations, permissions, channels; the timer contract; shutdown.
//!
//! Timers fire on the first whole-second tick at or after their deadline, so each expiry is
//! checked as "alive one second before the deadline, gone one second after".

mod common;

use std::time::Duration;

use common::*;
use tern_proto::{ClientOutput, Config, DropReason, EndReason, Event, PeerOutput};

fn ended(events: &[Event]) -> Vec<(u16, EndReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::AllocationEnded {
                relayed, reason, ..
            } => Some((relayed.port(), *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn no_state_no_timeout() {
    let mut h = Harness::new(config());
    assert_eq!(h.server.poll_timeout(), None);
    h.advance(10_000);
    assert_eq!(h.server.poll_timeout(), None);
    assert!(h.events().is_empty());
}

#[test]
fn allocation_expires_and_its_port_is_reusable_at_once() {
    let mut cfg = Config::new(REALM, "203.0.113.1".parse().unwrap(), 50000..=50000);
    cfg.auth_secrets = vec![SECRET.to_vec()];
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let port = c.allocate(&mut h).port();
    h.events();
    let deadline = h.t0 + Duration::from_secs(600);
    let wake = h.server.poll_timeout().expect("a timer is pending");
    assert!(
        wake <= deadline,
        "poll_timeout is never later than the next deadline"
    );
    assert_eq!(
        Client::rest("192.0.2.11:1", "bob")
            .allocate_with(&mut h, None)
            .code(),
        508
    );

    h.advance_to(599);
    assert_eq!(h.stats().allocations, 1);
    assert!(h.events().is_empty());
    h.advance_to(601);
    let events = h.events();
    assert_eq!(ended(&events), vec![(port, EndReason::Expired)]);
    let Event::AllocationEnded {
        five_tuple,
        duration,
        ..
    } = &events[0]
    else {
        unreachable!()
    };
    assert_eq!(*five_tuple, c.five);
    assert!((Duration::from_secs(600)..=Duration::from_secs(601)).contains(duration));
    let s = h.stats();
    assert_eq!((s.allocations, s.free_ports), (0, 1));
    assert_eq!(h.server.poll_timeout(), None, "nothing left to wait for");
    assert_eq!(
        h.peer_datagram(port, peer_a(), b"late").0,
        PeerOutput::Drop(DropReason::NoAllocation)
    );

    // The expired client starts over; a new one takes the port at once.
    assert_eq!(c.refresh(&mut h, None).code(), 437);
    assert_eq!(
        Client::rest("192.0.2.11:1", "bob").allocate(&mut h).port(),
        port
    );
}

#[test]
fn granted_lifetime_is_honoured() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    assert_eq!(c.allocate_with(&mut h, Some(1200)).lifetime(), Some(1200));
    h.advance_to(1199);
    assert_eq!(h.stats().allocations, 1);
    h.advance_to(1201);
    assert_eq!(h.stats().allocations, 0);
}

#[test]
fn refresh_moves_the_deadline() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let port = c.allocate(&mut h).port();
    h.advance_to(300);
    assert_eq!(c.refresh(&mut h, Some(1200)).lifetime(), Some(1200));
    h.advance_to(1499);
    assert_eq!(h.stats().allocations, 1);
    assert!(ended(&h.events()).is_empty());
    h.advance_to(1501);
    assert_eq!(ended(&h.events()), vec![(port, EndReason::Expired)]);
}

#[test]
fn permissions_expire_unless_refreshed() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let port = c.allocate_with(&mut h, Some(3600)).port_of_relayed();
    h.advance_to(10);
    assert!(c
        .create_permission(&mut h, &[peer_a(), peer_b()])
        .is_success());
    h.advance_to(309);
    assert!(matches!(
        h.peer_datagram(port, peer_a(), b"x").0,
        PeerOutput::Forward { .. }
    ));
    assert!(matches!(
        c.send(&mut h, peer_b(), b"x").0,
        ClientOutput::Relay { .. }
    ));
    // Refresh only peer_b.
    assert!(c.create_permission(&mut h, &[peer_b()]).is_success());
    h.advance_to(311);
    assert_eq!(h.stats().permissions, 1);
    assert_eq!(
        h.peer_datagram(port, peer_a(), b"x").0,
        PeerOutput::Drop(DropReason::NoPermission)
    );
    assert_eq!(
        c.send(&mut h, peer_a(), b"x").0,
        ClientOutput::Drop(DropReason::NoPermission)
    );
    assert!(matches!(
        h.peer_datagram(port, peer_b(), b"x").0,
        PeerOutput::Forward { .. }
    ));
    h.advance_to(608);
    assert!(matches!(
        h.peer_datagram(port, peer_b(), b"x").0,
        PeerOutput::Forward { .. }
    ));
    h.advance_to(610);
    assert_eq!(h.stats().permissions, 0);
    assert_eq!(
        h.peer_datagram(port, peer_b(), b"x").0,
        PeerOutput::Drop(DropReason::NoPermission)
    );
    // A lapsed permission can be installed again.
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    assert!(matches!(
        h.peer_datagram(port, peer_a(), b"x").0,
        PeerOutput::Forward { .. }
    ));
}

#[test]
fn channels_expire_unless_refreshed() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let port = c.allocate_with(&mut h, Some(3600)).port_of_relayed();
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    assert!(c.channel_bind(&mut h, 0x4001, peer_b()).is_success());
    h.advance_to(250);
    // Keep the permissions alive; only the channels are under test.
    assert!(c
        .create_permission(&mut h, &[peer_a(), peer_b()])
        .is_success());
    h.advance_to(500);
    assert!(
        c.channel_bind(&mut h, 0x4001, peer_b()).is_success(),
        "refresh 0x4001"
    );
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    h.advance_to(599);
    assert_eq!(h.stats().channels, 2);
    assert!(matches!(
        c.channel_data(&mut h, 0x4000, b"x"),
        ClientOutput::Relay { .. }
    ));
    h.advance_to(601);
    assert_eq!(h.stats().channels, 1);
    assert_eq!(
        c.channel_data(&mut h, 0x4000, b"x"),
        ClientOutput::Drop(DropReason::NoChannel)
    );
    // The peer's data now comes as a Data indication, not ChannelData.
    let (_, framed) = h.peer_datagram(port, peer_a(), b"x");
    assert_eq!(framed[0] & 0xC0, 0, "a STUN message");
    assert!(matches!(
        c.channel_data(&mut h, 0x4001, b"x"),
        ClientOutput::Relay { .. }
    ));
    let (_, framed) = h.peer_datagram(port, peer_b(), b"x");
    assert_eq!(framed[..2], [0x40, 0x01]);
    h.advance_to(1099);
    assert_eq!(h.stats().channels, 1);
    h.advance_to(1101);
    assert_eq!(h.stats().channels, 0);
    assert_eq!(
        c.channel_data(&mut h, 0x4001, b"x"),
        ClientOutput::Drop(DropReason::NoChannel)
    );
    assert_eq!(h.stats().allocations, 1);
}

#[test]
fn a_long_pause_expires_everything_at_once() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.allocate_with(&mut h, Some(3600));
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    h.advance(100_000);
    let s = h.stats();
    assert_eq!(
        (s.allocations, s.permissions, s.channels, s.free_ports),
        (0, 0, 0, 100)
    );
    assert_eq!(h.server.poll_timeout(), None);
}

#[test]
fn shutdown_ends_everything() {
    let mut h = Harness::new(config());
    let mut ports = Vec::new();
    for i in 0..3 {
        let mut c = Client::rest(&format!("192.0.2.{}:40000", 10 + i), "alice");
        ports.push(c.allocate(&mut h).port());
        assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
        assert!(c.create_permission(&mut h, &[peer_b()]).is_success());
    }
    h.events();
    h.advance(5);
    h.server.shutdown(h.now);
    let mut got = ended(&h.events());
    got.sort_unstable_by_key(|&(p, _)| p);
    ports.sort_unstable();
    let want: Vec<_> = ports.iter().map(|&p| (p, EndReason::Shutdown)).collect();
    assert_eq!(got, want);
    let s = h.stats();
    assert_eq!((s.allocations, s.permissions, s.channels), (0, 0, 0));
    assert_eq!(s.free_ports, s.pool_size);
    // Stale timers of the ended allocations fire harmlessly.
    h.advance(4000);
    assert!(h.events().is_empty());
    assert_eq!(h.server.poll_timeout(), None);
}

trait Relayed {
    fn port_of_relayed(&self) -> u16;
}

impl Relayed for Response {
    fn port_of_relayed(&self) -> u16 {
        assert!(self.is_success(), "{self:?}");
        self.xor_address(tern_wire::attr::XOR_RELAYED_ADDRESS)
            .expect("XOR-RELAYED-ADDRESS")
            .port()
    }
}

/// A relay port reused by a new allocation: the old allocation's timers must not touch it.
#[test]
fn stale_timers_spare_the_next_allocation_on_the_port() {
    let mut cfg = Config::new(REALM, "203.0.113.1".parse().unwrap(), 50000..=50000);
    cfg.auth_secrets = vec![SECRET.to_vec()];
    let mut h = Harness::new(cfg);
    let mut a = Client::rest("192.0.2.10:40000", "alice");
    let port = a.allocate(&mut h).port();
    assert!(a.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    h.advance_to(10);
    assert!(a.refresh(&mut h, Some(0)).is_success());
    let mut b = Client::rest("192.0.2.11:40000", "bob");
    assert_eq!(b.allocate(&mut h).port(), port);
    h.advance_to(350);
    assert!(b.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    // alice's permission (300), channel and allocation (600) timers come and go.
    h.advance_to(601);
    let s = h.stats();
    assert_eq!((s.allocations, s.permissions, s.channels), (1, 1, 1));
    assert!(matches!(
        b.channel_data(&mut h, 0x4000, b"x"),
        ClientOutput::Relay { .. }
    ));
    h.advance_to(609);
    assert_eq!(h.stats().allocations, 1, "bob's allocation lives until 610");
    h.advance_to(611);
    assert_eq!(h.stats().allocations, 0);
}
