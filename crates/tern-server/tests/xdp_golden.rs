//! Golden tests of the XDP program with `BPF_PROG_TEST_RUN`: crafted frames both ways, and
//! every case it must leave to the kernel. Each output is compared byte for byte with a
//! frame built here from scratch, whose checksums this file computes in full (not
//! incrementally, as the program does).
//!
//! Needs root (loading a program, a network namespace). The test re-runs itself inside a
//! namespace with a veth pair and fixed neighbours, so that the program's route lookups have
//! an answer; skipped with a note when not root, failing under CI.
#![cfg(feature = "xdp")]

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use tern_e2e::prereq;

#[path = "xdp_golden/hairpin.rs"]
mod hairpin;
use tern_server::xdp::{Entry, Program};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
const INNER: &str = "TERN_XDP_GOLDEN_INNER";

const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The ones' complement sum of `bytes` as big-endian 16-bit words (RFC 1071), folded.
fn ones_sum(bytes: &[u8], mut sum: u32) -> u32 {
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |b| u32::from(*b));
        sum += hi | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    }
}

/// The pseudo-header of RFC 768 or RFC 8200 8.1 (the same sum either way: the length's
/// upper bytes and the next header's padding are zeros).
fn pseudo(src: IpAddr, dst: IpAddr, udp_len: usize) -> Vec<u8> {
    let mut pseudo = octets(src);
    pseudo.extend_from_slice(&octets(dst));
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    pseudo
}

/// The UDP checksum of `udp` (header with a zero checksum field, and data) between `src`
/// and `dst`.
fn udp_checksum(src: IpAddr, dst: IpAddr, udp: &[u8]) -> u16 {
    let c = !(ones_sum(udp, ones_sum(&pseudo(src, dst, udp.len()), 0)) as u16);
    if c == 0 {
        0xffff
    } else {
        c
    }
}

/// How a crafted frame differs from a plain one.
#[derive(Default, Clone, Copy)]
struct Shape<'a> {
    /// IPv4 options.
    options: &'a [u8],
    /// IPv4 fragment bits.
    frag: u16,
    no_udp_checksum: bool,
    /// Bytes after the IP packet (Ethernet minimum-frame fill).
    trailer: usize,
    /// IPv6 traffic class and flow label (the low 28 bits of the first word).
    flow: u32,
    /// An IPv6 hop-by-hop options header (8 bytes of PadN) before UDP.
    hop_by_hop: bool,
    /// TTL or hop limit, when not 64.
    ttl: Option<u8>,
}

/// An Ethernet frame carrying a UDP datagram `src` → `dst` (IPv4 or IPv6, as the addresses
/// are) with `payload`, every checksum computed in full.
fn frame(
    macs: ([u8; 6], [u8; 6]),
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    shape: Shape,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&macs.0);
    f.extend_from_slice(&macs.1);
    let udp_len = 8 + payload.len();
    let ttl = shape.ttl.unwrap_or(64);
    if src.is_ipv4() {
        f.extend_from_slice(&[0x08, 0x00]);
        let ihl = 5 + shape.options.len() / 4;
        let tot = ihl * 4 + udp_len;
        let mut ip = vec![0x40 | ihl as u8, 0];
        ip.extend_from_slice(&(tot as u16).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34]);
        ip.extend_from_slice(&(0x4000 | shape.frag).to_be_bytes());
        ip.extend_from_slice(&[ttl, 17, 0, 0]);
        ip.extend_from_slice(&octets(src.ip()));
        ip.extend_from_slice(&octets(dst.ip()));
        ip.extend_from_slice(shape.options);
        let c = !(ones_sum(&ip, 0) as u16);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
    } else {
        f.extend_from_slice(&[0x86, 0xdd]);
        let ext = if shape.hop_by_hop { 8 } else { 0 };
        f.extend_from_slice(&(0x6000_0000 | shape.flow).to_be_bytes());
        f.extend_from_slice(&((udp_len + ext) as u16).to_be_bytes());
        f.push(if shape.hop_by_hop { 0 } else { 17 });
        f.push(ttl);
        f.extend_from_slice(&octets(src.ip()));
        f.extend_from_slice(&octets(dst.ip()));
        if shape.hop_by_hop {
            f.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        }
    }
    let mut udp = Vec::new();
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    if !shape.no_udp_checksum {
        let c = udp_checksum(src.ip(), dst.ip(), &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
    }
    f.extend_from_slice(&udp);
    f.extend(std::iter::repeat_n(0u8, shape.trailer));
    f
}

fn channel_data(channel: u16, payload: &[u8], padding: &[u8]) -> Vec<u8> {
    let mut m = channel.to_be_bytes().to_vec();
    m.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    m.extend_from_slice(payload);
    m.extend_from_slice(padding);
    m
}

/// Checks every checksum of an output frame independently of how it was built.
fn assert_checksums(f: &[u8]) {
    let (src, dst, udp): (IpAddr, IpAddr, _) = if f[12..14] == [0x86, 0xdd] {
        let a = |r: std::ops::Range<usize>| <[u8; 16]>::try_from(&f[r]).unwrap().into();
        (a(22..38), a(38..54), &f[54..])
    } else {
        assert_eq!(
            ones_sum(&f[14..34], 0),
            0xffff,
            "IPv4 header checksum of {f:02x?}"
        );
        let a = |r: std::ops::Range<usize>| <[u8; 4]>::try_from(&f[r]).unwrap().into();
        (a(26..30), a(30..34), &f[34..])
    };
    if udp[6..8] != [0, 0] {
        assert_eq!(
            ones_sum(udp, ones_sum(&pseudo(src, dst, udp.len()), 0)),
            0xffff,
            "UDP checksum of {f:02x?}"
        );
    }
}

#[test]
fn golden_frames() {
    if std::env::var_os(INNER).is_some() {
        return inner();
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        return prereq::missing(
            "root (to load an XDP program and make a network namespace)",
            "run as root",
        );
    }
    if prereq::tool("ip", "apt-get install -y iproute2").is_none() {
        return;
    }
    let ns = format!("tern-xdp-golden-{}", std::process::id());
    let ns = Netns::new(&ns);
    for cmd in [
        "ip link add veth0 type veth peer name veth1",
        "ip link set veth0 address 02:00:00:00:00:01",
        "ip addr add 10.0.0.1/24 dev veth0",
        "ip link set veth0 up",
        "ip link set veth1 up",
        "ip link set lo up",
        "ip neigh replace 10.0.0.2 lladdr 02:00:00:00:00:02 dev veth0 nud permanent",
        "ip neigh replace 10.0.0.3 lladdr 02:00:00:00:00:03 dev veth0 nud permanent",
        // bpf_fib_lookup answers only for devices that forward (a new namespace inherits
        // IPv4's setting from the host and starts IPv6 off).
        "sysctl -qw net.ipv4.conf.all.forwarding=1",
        "sysctl -qw net.ipv6.conf.all.forwarding=1",
        "ip -6 addr add fd00:203::1/64 dev veth0 nodad",
        "ip -6 neigh replace fd00:203::2 lladdr 02:00:00:00:00:02 dev veth0 nud permanent",
        "ip -6 neigh replace fd00:203::3 lladdr 02:00:00:00:00:03 dev veth0 nud permanent",
    ] {
        ns.run(cmd);
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(exe)
        .args([
            "--exact",
            "golden_frames",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, "1")
        .status()
        .unwrap();
    assert!(status.success(), "the golden run inside {} failed", ns.0);
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: &str) -> Self {
        let ok = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add {name}");
        Self(name.into())
    }

    fn run(&self, cmd: &str) {
        let ok = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(cmd.split_whitespace())
            .status()
            .unwrap();
        assert!(ok.success(), "{cmd}");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn inner() {
    let client = sa("10.0.0.2:40000");
    let server = sa("10.0.0.1:3478");
    let relay = sa("10.0.0.1:50000");
    let peer = sa("10.0.0.3:6000");
    let entry = Entry::new(client, server, 0x4000, relay, peer).unwrap();
    let mut p = Program::load().expect("load the program");
    p.insert(&entry).unwrap();
    let ifindex: u32 = std::fs::read_to_string("/sys/class/net/veth0/ifindex")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let macs_in = (SERVER_MAC, CLIENT_MAC);
    let to_peer_macs = (PEER_MAC, SERVER_MAC);
    let to_client_macs = (CLIENT_MAC, SERVER_MAC);
    let plain = Shape::default();
    let pass = |p: &Program, f: &[u8], why: &str| {
        let (verdict, out) = p.test_run(f).unwrap();
        assert_eq!(verdict, XDP_PASS, "{why}");
        assert_eq!(out, f, "{why}: a passed frame is unchanged");
    };

    // Client -> peer, odd length, no padding; then with nonzero padding (ignored, stripped),
    // an even length, Ethernet fill after a short frame, and no UDP checksum.
    let cases: &[(&[u8], &[u8], Shape)] = &[
        (b"hello", b"", plain),
        (b"hello", &[0xaa, 0xbb, 0xcc], plain),
        (b"12345678", b"", plain),
        (
            b"x",
            &[0, 0, 0],
            Shape {
                trailer: 7,
                ..plain
            },
        ),
        (
            b"no checksum",
            &[0],
            Shape {
                no_udp_checksum: true,
                ..plain
            },
        ),
    ];
    let mut sent = (0u64, 0u64);
    for (payload, padding, shape) in cases {
        let input = frame(
            macs_in,
            client,
            server,
            &channel_data(0x4000, payload, padding),
            *shape,
        );
        let (verdict, out) = p.test_run(&input).unwrap();
        assert_eq!(
            verdict, XDP_REDIRECT,
            "from lo's context the route leaves by veth0"
        );
        let expected = frame(
            to_peer_macs,
            relay,
            peer,
            payload,
            Shape {
                no_udp_checksum: shape.no_udp_checksum,
                ..plain
            },
        );
        assert_eq!(out, expected, "client -> peer {payload:?} {padding:?}");
        assert_checksums(&out);
        sent.0 += 1;
        sent.1 += payload.len() as u64;
    }
    let (to_peer, _) = p.counts(&entry);
    assert_eq!(
        (to_peer.packets, to_peer.bytes),
        sent,
        "per-CPU counters of the client side"
    );

    // Peer -> client: the header is added; odd and even lengths, no checksum, Ethernet fill.
    for (payload, shape) in [
        (&b"pong!"[..], plain),
        (b"even", plain),
        (b"", plain),
        (
            b"zero checksum",
            Shape {
                no_udp_checksum: true,
                ..plain
            },
        ),
        (
            b"y",
            Shape {
                trailer: 9,
                ..plain
            },
        ),
    ] {
        let input = frame(macs_in, peer, relay, payload, shape);
        let (verdict, out) = p.test_run(&input).unwrap();
        assert_eq!(verdict, XDP_REDIRECT);
        let expected = frame(
            to_client_macs,
            server,
            client,
            &channel_data(0x4000, payload, b""),
            Shape {
                no_udp_checksum: shape.no_udp_checksum,
                ..plain
            },
        );
        assert_eq!(out, expected, "peer -> client {payload:?}");
        assert_checksums(&out);
    }
    let (_, to_client) = p.counts(&entry);
    assert_eq!((to_client.packets, to_client.bytes), (5, 5 + 4 + 13 + 1));

    // The same frame arriving on veth0, the egress device: XDP_TX.
    let input = frame(
        macs_in,
        client,
        server,
        &channel_data(0x4000, b"tx", b""),
        plain,
    );
    let mut ctx = [0u8; 24];
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let (verdict, out) = p.test_run_on(&input, &ctx).unwrap();
    assert_eq!(verdict, XDP_TX);
    assert_eq!(out, frame(to_peer_macs, relay, peer, b"tx", plain));

    // Everything else goes to the kernel unchanged.
    let cd = channel_data(0x4000, b"hello", b"");
    pass(
        &p,
        &frame(
            macs_in,
            client,
            server,
            &channel_data(0x4001, b"hello", b""),
            plain,
        ),
        "unknown channel",
    );
    pass(
        &p,
        &frame(macs_in, sa("10.0.0.2:40001"), server, &cd, plain),
        "no binding for this 5-tuple",
    );
    pass(
        &p,
        &frame(macs_in, client, sa("10.0.0.1:3479"), &cd, plain),
        "another listening port",
    );
    pass(
        &p,
        &frame(macs_in, sa("10.0.0.3:6001"), relay, b"data", plain),
        "a peer port without a channel (no permission)",
    );
    pass(
        &p,
        &frame(macs_in, sa("10.0.0.4:6000"), relay, b"data", plain),
        "a peer without a permission",
    );
    pass(
        &p,
        &frame(
            macs_in,
            client,
            server,
            &cd,
            Shape {
                frag: 0x2000,
                ..plain
            },
        ),
        "first fragment (MF)",
    );
    pass(
        &p,
        &frame(
            macs_in,
            client,
            server,
            &cd,
            Shape {
                frag: 0x0010,
                ..plain
            },
        ),
        "later fragment",
    );
    pass(
        &p,
        &frame(
            macs_in,
            client,
            server,
            &cd,
            Shape {
                options: &[1, 1, 1, 0],
                ..plain
            },
        ),
        "IPv4 options",
    );
    pass(
        &p,
        &frame(
            macs_in,
            peer,
            relay,
            b"data",
            Shape {
                frag: 0x2000,
                ..plain
            },
        ),
        "peer fragment",
    );
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7; 12]);
    pass(
        &p,
        &frame(macs_in, client, server, &stun, plain),
        "a STUN request",
    );
    // ChannelData claiming more than the datagram holds.
    let mut short = channel_data(0x4000, b"hello", b"");
    short[3] = 9;
    pass(
        &p,
        &frame(macs_in, client, server, &short, plain),
        "ChannelData length overrun",
    );
    // More than 3 bytes after the claimed length: userspace decides.
    pass(
        &p,
        &frame(
            macs_in,
            client,
            server,
            &channel_data(0x4000, b"hi", &[0; 6]),
            plain,
        ),
        "long trailer",
    );
    // A UDP length that disagrees with the IP length.
    let mut bad = frame(macs_in, client, server, &cd, plain);
    bad[38..40].copy_from_slice(&100u16.to_be_bytes());
    pass(&p, &bad, "UDP length mismatch");
    // An IPv4 packet under IPv6's ethertype.
    let mut v6 = frame(macs_in, client, server, &cd, plain);
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    pass(&p, &v6, "IPv4 inside an IPv6 ethertype");

    // The incoming UDP checksum is verified in full: a wrong one, and the pseudo-header sum
    // alone (what a sender leaves for TX checksum offload, CHECKSUM_PARTIAL over veth),
    // both go to the kernel unchanged, both ways; so does a payload changed after the
    // checksum was computed.
    for (input, why) in [
        (frame(macs_in, client, server, &cd, plain), "client -> peer"),
        (
            frame(macs_in, peer, relay, b"data", plain),
            "peer -> client",
        ),
    ] {
        let mut wrong = input.clone();
        wrong[40] ^= 0x10;
        pass(&p, &wrong, &format!("{why}: wrong UDP checksum"));
        pass(
            &p,
            &partial_checksum(&input),
            &format!("{why}: pseudo-header sum only"),
        );
        let mut changed = input.clone();
        *changed.last_mut().unwrap() ^= 0x01;
        pass(&p, &changed, &format!("{why}: payload changed"));
    }
    let (to_peer, to_client) = p.counts(&entry);
    lengths(&p, (macs_in, to_peer_macs, to_client_macs), &entry);
    let n = max_len(&entry) as u64;
    let (after_peer, after_client) = p.counts(&entry);
    assert_eq!(
        (
            after_peer.packets - to_peer.packets,
            after_client.packets - to_client.packets
        ),
        (n, n),
        "every length relayed once each way, nothing else"
    );
    let sent = (sent.0 + n, sent.1);

    // Removed, the entry relays nothing more, and its counts come back once.
    let (to_peer, to_client) = p.remove(&entry);
    assert_eq!((to_peer.packets, to_client.packets), (sent.0 + 1, 5 + n));
    pass(
        &p,
        &frame(macs_in, client, server, &cd, plain),
        "after removal",
    );
    pass(
        &p,
        &frame(macs_in, peer, relay, b"data", plain),
        "after removal, peer side",
    );

    ipv6(&mut p);
    hairpin::hairpin(&mut p, ifindex);

    if std::env::var_os("TERN_XDP_COST").is_some() {
        p.insert(&entry).unwrap();
        for size in [100usize, 1200] {
            let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let to_peer = frame(
                macs_in,
                client,
                server,
                &channel_data(0x4000, &payload, b""),
                plain,
            );
            let to_client = frame(macs_in, peer, relay, &payload, plain);
            for (what, f) in [("to_peer", &to_peer), ("to_client", &to_client)] {
                println!(
                    "cost: {what} {size} B payload: {} ns per packet (median of {COST_RUNS})",
                    cost(&p, f)
                );
            }
        }
    }
}

/// The IPv6 path: the same design, with hop limit for TTL, no IPv4 header checksum, the
/// traffic class kept and the flow label zeroed, and no UDP checksum being invalid.
fn ipv6(p: &mut Program) {
    let client = sa("[fd00:203::2]:40000");
    let server = sa("[fd00:203::1]:3478");
    let relay = sa("[fd00:203::1]:50000");
    let peer = sa("[fd00:203::3]:6000");
    let entry = Entry::new(client, server, 0x4000, relay, peer).unwrap();
    // Mixed families would need the IP version changed: no entry, userspace relays them.
    assert_eq!(
        Entry::new(
            sa("10.0.0.2:40000"),
            sa("10.0.0.1:3478"),
            0x4000,
            relay,
            peer
        ),
        None,
        "an IPv4 client with an IPv6 relayed address"
    );
    assert_eq!(
        Entry::new(
            client,
            server,
            0x4000,
            sa("10.0.0.1:50000"),
            sa("10.0.0.3:6000")
        ),
        None,
        "an IPv6 client with an IPv4 relayed address"
    );
    p.insert(&entry).unwrap();
    let macs_in = (SERVER_MAC, CLIENT_MAC);
    let to_peer_macs = (PEER_MAC, SERVER_MAC);
    let to_client_macs = (CLIENT_MAC, SERVER_MAC);
    let plain = Shape::default();
    // Traffic class 0xb8 (EF) and a flow label on the way in: the class stays, the label
    // goes (a new flow), and a hop limit of 3 leaves as 64.
    let marked = Shape {
        flow: 0x0b8a_bcde,
        ttl: Some(3),
        ..plain
    };
    let out_marked = Shape {
        flow: 0x0b80_0000,
        ..plain
    };
    let pass = |p: &Program, f: &[u8], why: &str| {
        let (verdict, out) = p.test_run(f).unwrap();
        assert_eq!(verdict, XDP_PASS, "IPv6 {why}");
        assert_eq!(out, f, "IPv6 {why}: a passed frame is unchanged");
    };

    let to_peer_cases: &[(&[u8], &[u8], Shape, Shape)] = &[
        (b"hello", b"", plain, plain),
        (b"hello", &[0xaa, 0xbb, 0xcc], plain, plain),
        (b"12345678", b"", marked, out_marked),
        (
            b"x",
            &[0, 0, 0],
            Shape {
                trailer: 5,
                ..plain
            },
            plain,
        ),
    ];
    for (payload, padding, shape, out_shape) in to_peer_cases {
        let input = frame(
            macs_in,
            client,
            server,
            &channel_data(0x4000, payload, padding),
            *shape,
        );
        let (verdict, out) = p.test_run(&input).unwrap();
        assert_eq!(verdict, XDP_REDIRECT, "IPv6 client -> peer {payload:?}");
        assert_eq!(
            out,
            frame(to_peer_macs, relay, peer, payload, *out_shape),
            "IPv6 client -> peer {payload:?} {padding:?}"
        );
        assert_checksums(&out);
    }
    for (payload, shape, out_shape) in [
        (&b"pong!"[..], plain, plain),
        (b"even", marked, out_marked),
        (b"", plain, plain),
        (
            b"y",
            Shape {
                trailer: 9,
                ..plain
            },
            plain,
        ),
    ] {
        let input = frame(macs_in, peer, relay, payload, shape);
        let (verdict, out) = p.test_run(&input).unwrap();
        assert_eq!(verdict, XDP_REDIRECT, "IPv6 peer -> client {payload:?}");
        assert_eq!(
            out,
            frame(
                to_client_macs,
                server,
                client,
                &channel_data(0x4000, payload, b""),
                out_shape
            ),
            "IPv6 peer -> client {payload:?}"
        );
        assert_checksums(&out);
    }
    let (to_peer, to_client) = p.counts(&entry);
    assert_eq!(
        (
            to_peer.packets,
            to_peer.bytes,
            to_client.packets,
            to_client.bytes
        ),
        (4, 5 + 5 + 8 + 1, 4, 5 + 4 + 1),
        "per-CPU counters of the IPv6 entry"
    );

    let cd = channel_data(0x4000, b"hello", b"");
    for (input, why) in [
        (frame(macs_in, client, server, &cd, plain), "client -> peer"),
        (
            frame(macs_in, peer, relay, b"data", plain),
            "peer -> client",
        ),
    ] {
        let mut wrong = input.clone();
        wrong[60] ^= 0x10;
        pass(p, &wrong, &format!("{why}: wrong UDP checksum"));
        pass(
            p,
            &partial_checksum(&input),
            &format!("{why}: pseudo-header sum only"),
        );
        let mut none = input.clone();
        none[60..62].copy_from_slice(&[0, 0]);
        pass(
            p,
            &none,
            &format!("{why}: UDP checksum 0 (invalid on IPv6)"),
        );
    }
    let hop_by_hop = Shape {
        hop_by_hop: true,
        ..plain
    };
    pass(
        p,
        &frame(macs_in, client, server, &cd, hop_by_hop),
        "client -> peer behind a hop-by-hop header",
    );
    pass(
        p,
        &frame(macs_in, peer, relay, b"data", hop_by_hop),
        "peer -> client behind a hop-by-hop header",
    );
    pass(
        p,
        &frame(
            macs_in,
            client,
            server,
            &channel_data(0x4001, b"hello", b""),
            plain,
        ),
        "unknown channel",
    );
    pass(
        p,
        &frame(macs_in, sa("[fd00:203::2]:40001"), server, &cd, plain),
        "no binding for this 5-tuple",
    );
    pass(
        p,
        &frame(macs_in, sa("[fd00:203::4]:6000"), relay, b"data", plain),
        "a peer without a permission",
    );
    pass(
        p,
        &frame(macs_in, peer, sa("[fd00:203::5]:50000"), b"data", plain),
        "the relay port at another address",
    );
    // The IPv4 entry's peer, written as an IPv4-mapped IPv6 address: another family.
    pass(
        p,
        &frame(
            macs_in,
            sa("[::ffff:10.0.0.3]:6000"),
            sa("[::ffff:10.0.0.1]:50000"),
            b"data",
            plain,
        ),
        "IPv4-mapped addresses",
    );
    let mut short = frame(macs_in, client, server, &cd, plain);
    short[18..20].copy_from_slice(&100u16.to_be_bytes());
    pass(p, &short, "payload length beyond the frame");
    let mut mismatch = frame(macs_in, client, server, &cd, plain);
    mismatch[58..60].copy_from_slice(&12u16.to_be_bytes());
    pass(p, &mismatch, "UDP length disagrees with the payload length");
    let mut overrun = channel_data(0x4000, b"hello", b"");
    overrun[3] = 9;
    pass(
        p,
        &frame(macs_in, client, server, &overrun, plain),
        "ChannelData length overrun",
    );

    let (before_peer, before_client) = p.counts(&entry);
    lengths(p, (macs_in, to_peer_macs, to_client_macs), &entry);
    let (after_peer, after_client) = p.counts(&entry);
    let n = max_len(&entry) as u64;
    assert_eq!(
        (
            after_peer.packets - before_peer.packets,
            after_client.packets - before_client.packets
        ),
        (n, n),
        "every IPv6 length relayed once each way, nothing else"
    );
    p.remove(&entry);
    pass(
        p,
        &frame(macs_in, client, server, &cd, plain),
        "after removal",
    );
}

/// `f` (IPv4 or IPv6, no options) as a sender leaves it for TX checksum offload: the UDP
/// checksum field holds the pseudo-header sum, not complemented, and nothing of the data.
fn partial_checksum(f: &[u8]) -> Vec<u8> {
    let mut f = f.to_vec();
    let (addrs, udp) = if f[12..14] == [0x86, 0xdd] {
        (22..54, 54)
    } else {
        (26..34, 34)
    };
    let len = u16::from_be_bytes([f[udp + 4], f[udp + 5]]);
    let mut pseudo = f[addrs].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&len.to_be_bytes());
    let sum = ones_sum(&pseudo, 0) as u16;
    f[udp + 6..udp + 8].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The payload lengths the property loop covers for `entry`'s family, from 1: every odd
/// one, both sides of each multiple of 512 (the program's bpf_csum_diff chunk) in every
/// alignment, up to the most that fits veth0's 1500-byte MTU with the ChannelData header
/// (the next one is passed).
fn max_len(entry: &Entry) -> usize {
    let ip = if entry.client.is_ipv4() { 20 } else { 40 };
    1500 - ip - 8 - 4
}

/// Every payload length in 1..=max_len both ways over `entry`: the right checksum is
/// relayed with exact bytes, a wrong one or the pseudo-header sum alone is passed. The
/// client side adds padding to a multiple of 4 (nonzero bytes, stripped).
fn lengths(p: &Program, (macs_in, to_peer_macs, to_client_macs): Macs, entry: &Entry) {
    let (client, server, relay, peer) = (entry.client, entry.server, entry.relay, entry.peer);
    let plain = Shape::default();
    let max = max_len(entry);
    for len in 1..=max {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let padding = vec![0xa5; (4 - len % 4) % 4];
        let cases = [
            (
                frame(
                    macs_in,
                    client,
                    server,
                    &channel_data(0x4000, &payload, &padding),
                    plain,
                ),
                frame(to_peer_macs, relay, peer, &payload, plain),
            ),
            (
                frame(macs_in, peer, relay, &payload, plain),
                frame(
                    to_client_macs,
                    server,
                    client,
                    &channel_data(0x4000, &payload, b""),
                    plain,
                ),
            ),
        ];
        for (input, expected) in cases {
            let (verdict, out) = p.test_run(&input).unwrap();
            assert_eq!(verdict, XDP_REDIRECT, "length {len}");
            assert_eq!(out, expected, "length {len}");
            let mut wrong = input.clone();
            // A change the sum sees: one data byte.
            wrong[input.len() - 1 - len / 2] ^= 0x40;
            let (verdict, out) = p.test_run(&wrong).unwrap();
            assert_eq!(
                (verdict, &out),
                (XDP_PASS, &wrong),
                "length {len}: a changed byte is passed unchanged"
            );
            let partial = partial_checksum(&input);
            let (verdict, out) = p.test_run(&partial).unwrap();
            // The pseudo-header sum can be the right checksum by chance (1 in 65535):
            // then the frame is correct and relayed.
            if partial != input {
                assert_eq!(
                    (verdict, &out),
                    (XDP_PASS, &partial),
                    "length {len}: pseudo-header sum only"
                );
            } else {
                assert_eq!(verdict, XDP_REDIRECT, "length {len}");
            }
        }
    }
    let over = frame(macs_in, peer, relay, &vec![7; max + 1], plain);
    assert_eq!(
        p.test_run(&over).unwrap(),
        (XDP_PASS, over),
        "a datagram whose ChannelData would exceed the MTU is passed"
    );
}

type Macs = (([u8; 6], [u8; 6]), ([u8; 6], [u8; 6]), ([u8; 6], [u8; 6]));

/// Runs for the cost note (`TERN_XDP_COST=1`): one frame per `BPF_PROG_TEST_RUN` (a repeat
/// would run again on the rewritten frame), the kernel's timing of each.
const COST_RUNS: usize = 20_000;

/// The median of the kernel's time for one run of `f`, which must be relayed, in ns.
fn cost(p: &Program, f: &[u8]) -> u128 {
    let mut ns: Vec<u128> = (0..COST_RUNS)
        .map(|_| {
            let (verdict, took) = p.test_run_timed(f).unwrap();
            assert_eq!(verdict, XDP_REDIRECT, "timed frames are relayed");
            took.as_nanos()
        })
        .collect();
    ns.sort_unstable();
    ns[ns.len() / 2]
}
