//! The sessions API's core in virtual time: records, filters and the cursor; revocation by
//! user, id and client IP; the refusal period, which a reload keeps.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use tern_proto::counters::RequestMethod;
use tern_proto::{
    ClientOutput, Counters, DropReason, EndReason, Event, PeerFilterConfig, PeerOutput,
    RequestResult, Revoke, Session, SessionFilter, StaticUser, UserSecret,
};

fn with_carol() -> tern_proto::Config {
    let mut c = config();
    c.users = vec![StaticUser {
        name: "carol".into(),
        secret: UserSecret::Password("carol-pw".into()),
    }];
    c
}

fn all(h: &Harness, filter: SessionFilter<'_>) -> Vec<Session> {
    let mut out = Vec::new();
    let more = h.server.sessions(&filter, None, 1000, &mut out);
    assert!(!more);
    out
}

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

fn refused_allocates(c: &Counters) -> u64 {
    c.requests(RequestMethod::Allocate, RequestResult::Forbidden)
}

/// Alice twice (two clients), bob and carol (static) once each.
fn four(h: &mut Harness) -> [(Client, u16); 4] {
    let mut a1 = Client::rest("192.0.2.10:40000", "alice");
    let mut a2 = Client::rest("192.0.2.11:40000", "alice");
    let mut b = Client::rest("192.0.2.12:40000", "bob");
    let mut c = Client::password("192.0.2.10:40001", "carol", "carol-pw");
    let ports = [&mut a1, &mut a2, &mut b, &mut c].map(|x| x.allocate(h).port());
    h.events();
    [(a1, ports[0]), (a2, ports[1]), (b, ports[2]), (c, ports[3])]
}

#[test]
fn records_show_users_addresses_times_and_traffic() {
    let mut h = Harness::new(with_carol());
    let [(mut a1, p1), _, _, (carol, _)] = four(&mut h);
    let list = all(&h, SessionFilter::default());
    assert_eq!(list.len(), 4);
    assert!(list.windows(2).all(|w| w[0].id < w[1].id), "sorted by id");
    let rec = &list[0];
    assert_eq!(rec.username, a1.username);
    assert_eq!(rec.rest_name(), Some("alice"));
    assert_eq!(rec.five_tuple, a1.five);
    assert_eq!(rec.relayed.port(), p1);
    assert_eq!(rec.created, h.t0);
    assert_eq!(rec.expires, h.t0 + Duration::from_secs(600));
    assert_eq!(rec.last_activity, h.t0);
    assert_eq!((rec.permissions, rec.channels), (0, 0));
    let c = list.iter().find(|s| s.username == "carol").unwrap();
    assert_eq!((c.rest_name(), c.five_tuple), (None, carol.five));

    h.advance(10);
    assert!(a1.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    h.advance(10);
    let out = a1.channel_data(&mut h, 0x4000, b"hello");
    assert!(matches!(out, ClientOutput::Relay { .. }));
    let rec = &all(&h, SessionFilter::default())[0];
    assert_eq!(rec.last_activity, h.t0 + Duration::from_secs(20));
    assert_eq!((rec.permissions, rec.channels), (1, 1));
    assert_eq!(
        (rec.traffic.packets_to_peers, rec.traffic.bytes_to_peers),
        (1, 5)
    );
    h.advance(10);
    let (out, _) = h.peer_datagram(p1, peer_a(), b"back!!");
    assert!(matches!(out, PeerOutput::Forward { .. }));
    let rec = &all(&h, SessionFilter::default())[0];
    assert_eq!(rec.last_activity, h.t0 + Duration::from_secs(30));
    assert_eq!(
        (rec.traffic.packets_to_client, rec.traffic.bytes_to_client),
        (1, 6)
    );
    h.advance(10);
    assert!(a1.refresh(&mut h, Some(600)).is_success());
    let rec = &all(&h, SessionFilter::default())[0];
    assert_eq!(rec.last_activity, h.t0 + Duration::from_secs(40));
    assert_eq!(rec.expires, h.t0 + Duration::from_secs(640));
}

#[test]
fn filters_and_cursor_pages() {
    let mut h = Harness::new(with_carol());
    let [(a1, _), (a2, _), (b, _), _] = four(&mut h);
    let by = |u| -> Vec<String> {
        all(
            &h,
            SessionFilter {
                user: Some(u),
                ..Default::default()
            },
        )
        .into_iter()
        .map(|s| s.username)
        .collect()
    };
    assert_eq!(by("alice"), vec![a1.username.clone(), a2.username.clone()]);
    assert_eq!(
        by(&b.username),
        vec![b.username.clone()],
        "the full username"
    );
    assert_eq!(by("carol"), vec!["carol".to_owned()]);
    assert!(by("ali").is_empty());
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let from_ip = all(
        &h,
        SessionFilter {
            client_ip: Some(ip),
            ..Default::default()
        },
    );
    let users: Vec<_> = from_ip.iter().map(|s| s.username.as_str()).collect();
    assert_eq!(users, vec![a1.username.as_str(), "carol"]);

    // Pages of one, each after the last id of the previous one.
    let everyone = all(&h, SessionFilter::default());
    let mut cursor = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let mut page = Vec::new();
        let more = h
            .server
            .sessions(&SessionFilter::default(), cursor, 1, &mut page);
        assert_eq!(page.len(), 1);
        cursor = Some(page[0].id);
        seen.push(page.remove(0));
        if !more {
            break;
        }
    }
    assert_eq!(seen, everyone);
    // An ended allocation's id is still a valid cursor.
    let mut rest = Vec::new();
    let alloc_ids: Vec<_> = everyone.iter().map(|s| s.id).collect();
    h.server.revoke(Revoke::Id(alloc_ids[1]), h.now, None);
    h.server
        .sessions(&SessionFilter::default(), Some(alloc_ids[1]), 10, &mut rest);
    let rest: Vec<_> = rest.iter().map(|s| s.id).collect();
    assert_eq!(rest, alloc_ids[2..].to_vec());
}

#[test]
fn revoke_by_user_ends_exactly_hers_and_others_keep_relaying() {
    let mut h = Harness::new(with_carol());
    let [(mut a1, p1), (_, p2), (mut b, pb), _] = four(&mut h);
    assert!(a1.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    assert!(b.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    h.drain();
    let ids = h.server.revoke(Revoke::User("alice"), h.now, None);
    assert_eq!(ids.len(), 2);
    let events = h.events();
    assert_eq!(
        ended(&events),
        vec![(p1, EndReason::Revoked), (p2, EndReason::Revoked)]
    );
    assert_eq!(h.server.counters().ended_total(EndReason::Revoked), 2);
    assert_eq!(h.stats().allocations, 2);
    assert_eq!(h.stats().channels, 1, "her channel was unbound");
    assert_eq!(a1.refresh(&mut h, None).code(), 437);
    assert_eq!(
        a1.channel_data(&mut h, 0x4000, b"x"),
        ClientOutput::Drop(DropReason::NoAllocation)
    );
    assert!(matches!(
        b.channel_data(&mut h, 0x4000, b"still here"),
        ClientOutput::Relay { .. }
    ));
    assert!(matches!(
        h.peer_datagram(pb, peer_a(), b"and back").0,
        PeerOutput::Forward { .. }
    ));
    // Without a refusal period she may come back at once.
    let mut again = Client::rest("192.0.2.10:40000", "alice");
    again.allocate(&mut h);
    assert!(h
        .server
        .revoke(Revoke::User("nobody"), h.now, None)
        .is_empty());
}

#[test]
fn revoke_by_id_and_by_client_ip() {
    let mut h = Harness::new(with_carol());
    let [(_, p1), (_, p2), (_, pb), (_, pc)] = four(&mut h);
    let list = all(&h, SessionFilter::default());
    let bob = list.iter().find(|s| s.relayed.port() == pb).unwrap().id;
    assert_eq!(
        h.server.revoke(Revoke::Id(bob), h.now, None),
        vec![(bob, list[2].username.clone())]
    );
    assert_eq!(ended(&h.events()), vec![(pb, EndReason::Revoked)]);
    assert!(h.server.revoke(Revoke::Id(bob), h.now, None).is_empty());

    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    assert_eq!(h.server.revoke(Revoke::ClientIp(ip), h.now, None).len(), 2);
    let gone = ended(&h.events());
    assert_eq!(gone.len(), 2);
    for port in [p1, pc] {
        assert!(gone.contains(&(port, EndReason::Revoked)), "{gone:?}");
    }
    let left = all(&h, SessionFilter::default());
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].relayed.port(), p2);
}

#[test]
fn a_refusal_period_answers_403_until_it_passes_and_survives_reload() {
    let mut h = Harness::new(with_carol());
    four(&mut h);
    let ids = h
        .server
        .revoke(Revoke::User("alice"), h.now, Some(Duration::from_secs(60)));
    assert_eq!(ids.len(), 2);
    // Any REST username of hers, whatever its expiry, from any address.
    let mut back = Client::rest("198.51.100.7:5000", "alice");
    assert_eq!(back.allocate_with(&mut h, None).code(), 403);
    assert_eq!(refused_allocates(h.server.counters()), 1);
    // Others are not refused.
    Client::rest("198.51.100.8:5000", "alicia").allocate(&mut h);

    h.server.reload(
        vec![SECRET.to_vec()],
        h.server.config().users.clone(),
        PeerFilterConfig::default(),
    );
    h.advance(59);
    assert_eq!(back.allocate_with(&mut h, None).code(), 403, "after reload");
    h.advance(1);
    back.allocate(&mut h);
    assert_eq!(h.server.refused_users(), 0, "the expired entry went");
}

#[test]
fn revoking_by_id_refuses_that_allocations_user() {
    let mut h = Harness::new(with_carol());
    let [_, _, _, (mut carol, _)] = four(&mut h);
    let id = all(
        &h,
        SessionFilter {
            user: Some("carol"),
            ..Default::default()
        },
    )[0]
    .id;
    h.server
        .revoke(Revoke::Id(id), h.now, Some(Duration::from_secs(5)));
    assert_eq!(carol.allocate_with(&mut h, None).code(), 403);
    h.advance(5);
    carol.allocate(&mut h);
}
