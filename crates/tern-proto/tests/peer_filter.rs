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

/// Every kind of peer refused by default, each with its IPv4 form and its IPv6 forms: the
/// native IPv6 range of the same kind, and the IPv6 spellings (IPv4-mapped, -compatible,
/// -translated, 6to4, NAT64 well-known and local-use, Teredo) of the refused IPv4 address.
/// Forms that are IPv4 after canonicalisation are tried on the IPv4 relayed address of a
/// dual allocation, the others on its IPv6 one: every row on both families.
const TABLE: &[(&str, &[&str])] = &[
    (
        "loopback",
        &[
            "127.0.0.1",
            "127.255.255.254",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "2002:7f00:1::",
            "64:ff9b::7f00:1",
            "64:ff9b:1::7f00:1",
        ],
    ),
    (
        "unspecified / this network",
        &[
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "::ffff:0.0.0.0",
            "::0.0.0.2",
            "2002::",
            "64:ff9b::",
        ],
    ),
    (
        "private-use 10/8",
        &[
            "10.0.0.1",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "::ffff:0:a00:1",
            "2002:a00:1::",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
        ],
    ),
    (
        "private-use 172.16/12",
        &[
            "172.16.0.1",
            "172.31.255.255",
            "::ffff:172.16.0.1",
            "2002:ac10:1::1",
            "64:ff9b::ac10:1",
        ],
    ),
    (
        "private-use 192.168/16",
        &[
            "192.168.1.1",
            "::ffff:192.168.1.1",
            "2002:c0a8:101::",
            "64:ff9b::c0a8:101",
            "::c0a8:101",
        ],
    ),
    (
        "shared address space (CGNAT)",
        &[
            "100.64.0.1",
            "100.127.255.255",
            "::ffff:100.64.0.1",
            "2002:6440:1::",
            "64:ff9b::6440:1",
        ],
    ),
    (
        "link-local",
        &[
            "169.254.0.1",
            "fe80::1",
            "febf:ffff::1",
            "::ffff:169.254.1.1",
            "2002:a9fe:101::",
            "64:ff9b::a9fe:101",
        ],
    ),
    (
        "metadata services",
        &[
            "169.254.169.254",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "::ffff:0:a9fe:a9fe",
            "2002:a9fe:a9fe::",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
        ],
    ),
    (
        "unique-local",
        &["fc00::1", "fd12:3456:789a::1", "fdff:ffff::1"],
    ),
    ("site-local (deprecated)", &["fec0::1", "feff::1"]),
    (
        "multicast",
        &[
            "224.0.0.1",
            "239.255.255.255",
            "ff02::1",
            "ff0e::1",
            "ff05::1:3",
            "::ffff:224.0.0.1",
            "2002:e000:1::",
            "64:ff9b::e000:1",
        ],
    ),
    (
        "documentation",
        &[
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "2001:db8::99",
            "2001:db8:ffff::1",
            "3fff::1",
            "::ffff:192.0.2.1",
            "64:ff9b::c000:201",
        ],
    ),
    (
        "benchmarking",
        &[
            "198.18.0.1",
            "198.19.255.255",
            "2001:2::1",
            "::ffff:198.18.0.1",
        ],
    ),
    (
        "IETF protocol assignments",
        &[
            "192.0.0.1",
            "192.0.0.255",
            "2001::1",
            "2001:1::2",
            "2001:3::1",
            "2001:1ff::1",
        ],
    ),
    ("ORCHID", &["2001:10::1", "2001:20::1", "2001:2f::1"]),
    ("discard-only", &["100::1", "100::ffff:ffff:ffff:ffff"]),
    ("6to4 relay anycast", &["192.88.99.1", "::ffff:192.88.99.1"]),
    (
        "reserved, broadcast, outside global unicast",
        &[
            "240.0.0.1",
            "255.255.255.255",
            "::ffff:255.255.255.255",
            "4000::1",
            "e000::1",
            "::1:0:0:1",
            "1::1",
            "5f00::1",
        ],
    ),
    (
        "Teredo (2001::/32), whatever it embeds",
        &[
            "2001:0:4136:e378:8000:63bf:fefd:fcfb",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001:0:a00:1:8000:63bf:fefd:fcfb",
        ],
    ),
    (
        "local-use NAT64 (64:ff9b:1::/48), whatever it embeds",
        &["64:ff9b:1::102:304", "64:ff9b:1:abcd::5db8:d822"],
    ),
];

/// A dual-stack server; its IPv6 relayed IP is 2001:db8::1, which is its own address (a
/// peer on relay ports, and a permission), so the table names other documentation
/// addresses.
fn dual_config() -> Config {
    let mut cfg = config();
    cfg.relay_in("2001:db8::1".parse().unwrap());
    cfg
}

/// Tries every way of naming `ip` as a peer (CreatePermission, ChannelBind, a Send
/// indication) on a fresh dual allocation; returns what let it through.
fn accepted_uses(cfg: Config, ip: &str) -> Vec<String> {
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.allocate_dual(&mut h);
    let p = peer(ip);
    let mut accepted = Vec::new();
    let r = c.create_permission(&mut h, &[p]);
    if r.is_success() || r.code() != 403 {
        accepted.push(format!("CreatePermission answered {r:?}"));
    }
    let r = c.channel_bind(&mut h, 0x4000, p);
    if r.is_success() || r.code() != 403 {
        accepted.push(format!("ChannelBind answered {r:?}"));
    }
    if let out @ ClientOutput::Relay { .. } = c.send(&mut h, p, b"x").0 {
        accepted.push(format!("Send relayed: {out:?}"));
    }
    let s = h.stats();
    if (s.permissions, s.channels) != (0, 0) {
        accepted.push(format!("installed {s:?}"));
    }
    accepted
}

#[test]
fn every_refused_kind_is_refused_on_both_families() {
    let mut accepted = Vec::new();
    let mut families = [0usize; 2];
    for (kind, forms) in TABLE {
        for ip in *forms {
            let canonical = tern_proto::peer_filter::canonicalize(ip.parse().unwrap());
            families[usize::from(canonical.is_ipv6())] += 1;
            for what in accepted_uses(dual_config(), ip) {
                accepted.push(format!("{kind}: {ip}: {what}"));
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "peers the default filter let through:\n{}",
        accepted.join("\n")
    );
    // The table tries both relayed families, many times each.
    assert!(families[0] > 40 && families[1] > 30, "{families:?}");
    // And the same allocation reaches ordinary public peers in both families.
    for ip in [
        "93.184.216.34",
        "2606:4700::1111",
        "::ffff:93.184.216.34",
        "2002:5db8:d822::1",
        "64:ff9b::5db8:d822",
    ] {
        let mut h = Harness::new(dual_config());
        let mut c = Client::rest("192.0.2.10:40000", "alice");
        c.allocate_dual(&mut h);
        let r = c.create_permission(&mut h, &[peer(ip)]);
        assert!(r.is_success(), "{ip}: {r:?}");
    }
}

#[test]
fn allowed_and_denied_ranges_take_ipv6() {
    let mut cfg = dual_config();
    cfg.peer_filter
        .allowed
        .push("fd00:1234::/32".parse().unwrap());
    cfg.peer_filter
        .allowed
        .push("2001:db8:5::7".parse().unwrap());
    cfg.peer_filter
        .denied
        .push("2606:4700::-2606:4700::ffff".parse().unwrap());
    cfg.peer_filter
        .denied
        .push("2a00:1450::/32".parse().unwrap());
    let (mut h, mut c) = (Harness::new(cfg), Client::rest("192.0.2.10:40000", "alice"));
    c.allocate_dual(&mut h);
    for ip in ["fd00:1234::1", "fd00:1234:ffff::9", "2001:db8:5::7"] {
        let r = c.create_permission(&mut h, &[peer(ip)]);
        assert!(r.is_success(), "{ip} is allowed: {r:?}");
    }
    assert!(c
        .channel_bind(&mut h, 0x4000, peer("fd00:1234::1"))
        .is_success());
    for ip in [
        "fd00:1235::1",
        "2001:db8:5::8",
        "2606:4700::1",
        "2606:4700::ffff",
        "2a00:1450:4001::1",
    ] {
        assert_eq!(c.create_permission(&mut h, &[peer(ip)]).code(), 403, "{ip}");
    }
    // Just outside the denied range is an ordinary public address.
    assert!(c
        .create_permission(&mut h, &[peer("2606:4700::1:0")])
        .is_success());
    // Loopback needs allow-loopback-peers in IPv6 too, and ::1 is opened by it.
    assert_eq!(c.create_permission(&mut h, &[peer("::1")]).code(), 403);
    let mut cfg = dual_config();
    cfg.peer_filter.allow_loopback = true;
    let (mut h, mut c) = (Harness::new(cfg), Client::rest("192.0.2.10:40000", "alice"));
    c.allocate_dual(&mut h);
    assert!(c.create_permission(&mut h, &[peer("::1")]).is_success());
    assert_eq!(c.create_permission(&mut h, &[peer("fe80::1")]).code(), 403);
}
