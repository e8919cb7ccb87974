//! Graceful drain and live reload, as the core sees them.

mod common;

use common::*;
use tern_proto::counters::RequestMethod;
use tern_proto::{PeerFilterConfig, RequestResult};
use tern_wire::attr;

#[test]
fn draining_refuses_new_allocations_and_keeps_old_ones() {
    let mut h = Harness::new(config());
    let mut old = Client::rest("198.51.100.1:1000", "old");
    let relayed = old.allocate(&mut h);
    assert!(old.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    h.server.drain(None);
    assert!(h.server.is_draining());
    let mut new = Client::rest("198.51.100.2:1000", "new");
    assert_eq!(new.allocate_with(&mut h, None).code(), 508);
    // The old allocation relays and refreshes as before.
    assert!(matches!(
        old.channel_data(&mut h, 0x4000, b"hi"),
        tern_proto::ClientOutput::Relay { .. }
    ));
    assert!(matches!(
        h.peer_datagram(relayed.port(), peer_a(), b"yo").0,
        tern_proto::PeerOutput::Forward { .. }
    ));
    assert!(old.refresh(&mut h, Some(600)).is_success());
    // With an alternate server: 300 Try Alternate naming it.
    let alternate = addr("203.0.113.99:3478");
    h.server.drain(Some(alternate));
    let r = new.allocate_with(&mut h, None);
    assert_eq!(r.code(), 300);
    assert_eq!(r.address(attr::ALTERNATE_SERVER), Some(alternate));
    assert_eq!(r.integrity(&new.key), tern_wire::Integrity::Valid);
    // Each refusal is counted under its own code.
    let allocate = |result| {
        h.server
            .counters()
            .requests(RequestMethod::Allocate, result)
    };
    assert_eq!(allocate(RequestResult::InsufficientCapacity), 1);
    assert_eq!(allocate(RequestResult::TryAlternate), 1);
}

#[test]
fn reload_rotates_secrets_without_touching_live_allocations() {
    let mut h = Harness::new(config());
    let mut live = Client::rest("198.51.100.1:1000", "live");
    live.allocate(&mut h);
    h.server.reload(
        vec![b"south".to_vec()],
        Vec::new(),
        PeerFilterConfig::default(),
    );
    // The live allocation still refreshes with its old (now removed) secret's key.
    assert!(live.refresh(&mut h, Some(600)).is_success());
    assert!(live.create_permission(&mut h, &[peer_a()]).is_success());
    // New allocations need the new secret.
    let mut old_secret = Client::rest("198.51.100.2:1000", "x");
    assert_eq!(old_secret.allocate_with(&mut h, None).code(), 401);
    let (user, key) = rest_credential(b"south", WALL + 600, "y");
    let mut new_secret = Client::with_key("198.51.100.3:1000", &user, key);
    new_secret.allocate(&mut h);
}

#[test]
fn reload_replaces_the_peer_filter() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("198.51.100.1:1000", "f");
    c.allocate(&mut h);
    let lan = addr("192.168.1.20:5000");
    assert_eq!(c.create_permission(&mut h, &[lan]).code(), 403);
    let filter = PeerFilterConfig {
        allowed: vec!["192.168.1.0/24".parse().unwrap()],
        ..Default::default()
    };
    h.server.reload(vec![SECRET.to_vec()], Vec::new(), filter);
    assert!(c.create_permission(&mut h, &[lan]).is_success());
}
