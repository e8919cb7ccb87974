//! Which peers a client may reach, seen through CreatePermission, ChannelBind and Send.

mod common;

use std::net::SocketAddr;

use common::*;
use tern_proto::{ClientOutput, Config, DropReason, IpRange};

fn allocated(config: Config) -> (Harness, Client) {
    let mut h = Harness::new(config);
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.allocate(&mut h);
    (h, c)
}

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 5000)
}

/// Internal, special-purpose and IPv4-in-IPv6 addresses, each with the code refusing it.
const REFUSED: &[(&str, u16)] = &[
    ("0.0.0.0", 403),
    ("::", 403),
    ("::1", 403),
    ("::ffff:127.0.0.1", 403),
    ("::127.0.0.1", 403),
    ("2002:7f00:1::", 403),
    ("64:ff9b::7f00:1", 403),
    ("169.254.169.254", 403),
    ("127.0.0.1", 403),
    ("127.1.2.3", 403),
    ("10.0.0.1", 403),
    ("192.168.1.1", 403),
    ("172.16.0.1", 403),
    ("100.64.0.1", 403),
    ("224.0.0.1", 403),
    ("255.255.255.255", 403),
    ("fc00::1", 403),
    ("fd00:ec2::254", 403),
    ("fe80::1", 403),
    ("::ffff:10.0.0.1", 403),
    ("::ffff:169.254.169.254", 403),
];

#[test]
fn default_filter_refuses_internal_peers() {
    let (mut h, mut c) = allocated(config());
    for &(ip, code) in REFUSED {
        let r = c.create_permission(&mut h, &[peer(ip)]);
        assert_eq!(r.code(), code, "CreatePermission {ip}");
        let r = c.channel_bind(&mut h, 0x4000, peer(ip));
        assert_eq!(r.code(), code, "ChannelBind {ip}");
        let s = h.stats();
        assert_eq!(
            (s.permissions, s.channels),
            (0, 0),
            "{ip} installed nothing"
        );
        // A Send indication to it finds no permission either.
        assert!(matches!(
            c.send(&mut h, peer(ip), b"x").0,
            ClientOutput::Drop(_)
        ));
    }
    // A public IPv6 peer on an IPv4 relay is a family mismatch, not a refusal.
    assert_eq!(
        c.create_permission(&mut h, &[peer("2606:4700::1111")])
            .code(),
        443
    );
    assert!(c.create_permission(&mut h, &[peer("1.2.3.4")]).is_success());
}

#[test]
fn allow_loopback() {
    let mut cfg = config();
    cfg.peer_filter.allow_loopback = true;
    let (mut h, mut c) = allocated(cfg);
    assert!(c
        .create_permission(&mut h, &[peer("127.0.0.1")])
        .is_success());
    let r = c.create_permission(&mut h, &[peer("::ffff:127.0.0.1")]);
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        h.stats().permissions,
        1,
        "the mapped form is the same IPv4 peer"
    );
    // Data to the mapped form goes to the IPv4 address.
    match c.send(&mut h, peer("::ffff:127.0.0.1"), b"x").0 {
        ClientOutput::Relay { peer: p, .. } => assert_eq!(p, peer("127.0.0.1")),
        out => panic!("{out:?}"),
    }
    // Other internal ranges stay refused.
    assert_eq!(c.create_permission(&mut h, &[peer("10.0.0.1")]).code(), 403);
}

#[test]
fn allowed_ranges_open_private_ones() {
    let mut cfg = config();
    cfg.peer_filter.allowed.push("10.0.0.0/8".parse().unwrap());
    let (mut h, mut c) = allocated(cfg);
    assert!(c
        .create_permission(&mut h, &[peer("10.1.2.3")])
        .is_success());
    assert!(c
        .channel_bind(&mut h, 0x4000, peer("10.9.9.9"))
        .is_success());
    assert_eq!(
        c.create_permission(&mut h, &[peer("192.168.1.1")]).code(),
        403
    );
}

#[test]
fn denied_ranges_refuse_public_ones() {
    let mut cfg = config();
    cfg.peer_filter
        .denied
        .push(IpRange::parse("93.184.216.0/24").unwrap());
    let (mut h, mut c) = allocated(cfg);
    assert_eq!(c.create_permission(&mut h, &[peer_a()]).code(), 403);
    assert_eq!(
        c.create_permission(&mut h, &[peer("::ffff:93.184.216.1")])
            .code(),
        403
    );
    assert_eq!(c.channel_bind(&mut h, 0x4000, peer_a()).code(), 403);
    assert_eq!(h.stats().permissions, 0);
    assert!(c.create_permission(&mut h, &[peer_b()]).is_success());
}

#[test]
fn own_relay_address_on_relay_ports_only() {
    let mut cfg = config();
    cfg.own_ips.push("10.0.0.5".parse().unwrap());
    let (mut h, mut c) = allocated(cfg);
    // 203.0.113.1 (documentation) and 10.0.0.5 (private) are refused as ordinary peers ...
    let own = |port| SocketAddr::new("203.0.113.1".parse().unwrap(), port);
    let private_own = |port| SocketAddr::new("10.0.0.5".parse().unwrap(), port);
    assert_eq!(c.channel_bind(&mut h, 0x4000, own(80)).code(), 403);
    assert_eq!(c.channel_bind(&mut h, 0x4000, private_own(80)).code(), 403);
    assert_eq!(h.stats().channels, 0);
    // ... but another allocation's relayed address on this server is reachable.
    assert!(c.channel_bind(&mut h, 0x4000, own(49200)).is_success());
    assert!(c
        .channel_bind(&mut h, 0x4001, private_own(49201))
        .is_success());
    assert_eq!(h.stats().channels, 2);
    let out = c.channel_data(&mut h, 0x4000, b"hi");
    assert!(
        matches!(out, ClientOutput::Relay { peer, .. } if peer == own(49200)),
        "{out:?}"
    );
    // CreatePermission names no port: an own IP gets its permission, the port is checked
    // when data is sent.
    assert!(c.create_permission(&mut h, &[private_own(80)]).is_success());
    // The permission (per IP) does not open the server's other ports to Send indications.
    assert!(matches!(
        c.send(&mut h, own(49250), b"x").0,
        ClientOutput::Relay { .. }
    ));
    assert_eq!(
        c.send(&mut h, own(80), b"x").0,
        ClientOutput::Drop(DropReason::DeniedPeer)
    );
    assert_eq!(
        c.send(&mut h, private_own(22), b"x").0,
        ClientOutput::Drop(DropReason::DeniedPeer)
    );
}

#[test]
fn a_narrower_filter_leaves_granted_permissions_and_channels_working() {
    // Send and ChannelData rely on the permission or binding, which carries the filter's
    // verdict when it was granted; only the server's own IPs are checked again on Send.
    let mut cfg = config();
    cfg.peer_filter.allowed.push("10.0.0.0/8".parse().unwrap());
    let (mut h, mut c) = allocated(cfg);
    let lan = peer("10.1.2.3");
    assert!(c.channel_bind(&mut h, 0x4000, lan).is_success());
    h.server.reload(
        vec![SECRET.to_vec()],
        Vec::new(),
        tern_proto::PeerFilterConfig::default(),
    );
    assert_eq!(
        c.create_permission(&mut h, &[lan]).code(),
        403,
        "no new ones"
    );
    assert!(matches!(
        c.send(&mut h, lan, b"x").0,
        ClientOutput::Relay { .. }
    ));
    assert!(matches!(
        c.channel_data(&mut h, 0x4000, b"x"),
        ClientOutput::Relay { .. }
    ));
}
