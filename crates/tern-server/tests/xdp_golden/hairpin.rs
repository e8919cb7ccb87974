//! The hairpin: ChannelData from client A to a peer that is B's relayed address on the same
//! tern leaves as B's ChannelData, client to client, when B has a channel bound to A's
//! relayed address; otherwise the frame goes on as before. Run inside the golden namespace,
//! both families, with tern's relayed address local and behind an `external-ip` NAT.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use tern_server::xdp::{Entry, Program};

use super::{
    assert_checksums, channel_data, cost, frame, partial_checksum, Shape, CLIENT_MAC, COST_RUNS,
    PEER_MAC, SERVER_MAC, XDP_PASS, XDP_REDIRECT, XDP_TX,
};

/// One family's addresses in the golden namespace.
struct Family {
    /// tern's address on veth0: listening and relay.
    server: IpAddr,
    /// Client A (CLIENT_MAC).
    a: IpAddr,
    /// Client B (PEER_MAC).
    b: IpAddr,
    /// The advertised address with `external-ip`: routed via B's host, which stands for the
    /// NAT router (so "today's path" to it is visible as a frame to PEER_MAC).
    external: IpAddr,
    /// The route to add for `external`.
    route: &'static str,
}

const ACH: u16 = 0x4001;
const BCH: u16 = 0x4002;

/// The two allocations: A's channel names B's relayed address as `peer_of_a`, B's names
/// A's as `peer_of_b` (each `advertised-or-local IP:the other's relay port`).
fn entries(f: &Family, peer_ip_of_a: IpAddr, peer_ip_of_b: IpAddr) -> (Entry, Entry) {
    let server = SocketAddr::new(f.server, 3478);
    let (relay_a, relay_b) = (
        SocketAddr::new(f.server, 50001),
        SocketAddr::new(f.server, 50002),
    );
    let a = Entry::new(
        SocketAddr::new(f.a, 41000),
        server,
        ACH,
        relay_a,
        SocketAddr::new(peer_ip_of_a, relay_b.port()),
    )
    .unwrap();
    let b = Entry::new(
        SocketAddr::new(f.b, 42000),
        server,
        BCH,
        relay_b,
        SocketAddr::new(peer_ip_of_b, relay_a.port()),
    )
    .unwrap();
    (a, b)
}

/// A's ChannelData to B's relayed address.
fn from_a(a: &Entry, payload: &[u8], padding: &[u8], shape: Shape) -> Vec<u8> {
    frame(
        (SERVER_MAC, CLIENT_MAC),
        a.client,
        a.server,
        &channel_data(ACH, payload, padding),
        shape,
    )
}

fn from_b(b: &Entry, payload: &[u8], padding: &[u8], shape: Shape) -> Vec<u8> {
    frame(
        (SERVER_MAC, PEER_MAC),
        b.client,
        b.server,
        &channel_data(BCH, payload, padding),
        shape,
    )
}

/// What B's client must receive for `payload` sent by A: B's ChannelData, B's server
/// address to B's client, no padding; and the other way.
fn to_b(b: &Entry, payload: &[u8], no_udp_checksum: bool) -> Vec<u8> {
    frame(
        (PEER_MAC, SERVER_MAC),
        b.server,
        b.client,
        &channel_data(BCH, payload, b""),
        Shape {
            no_udp_checksum,
            ..Shape::default()
        },
    )
}

fn to_a(a: &Entry, payload: &[u8]) -> Vec<u8> {
    frame(
        (CLIENT_MAC, SERVER_MAC),
        a.server,
        a.client,
        &channel_data(ACH, payload, b""),
        Shape::default(),
    )
}

/// (A to its peer, A to its client, B to its peer, B to its client) packets, and bytes.
fn counts(p: &Program, a: &Entry, b: &Entry) -> ([u64; 4], [u64; 4]) {
    let ((ap, ac), (bp, bc)) = (p.counts(a), p.counts(b));
    (
        [ap.packets, ac.packets, bp.packets, bc.packets],
        [ap.bytes, ac.bytes, bp.bytes, bc.bytes],
    )
}

fn run(p: &Program, f: &[u8]) -> (u32, Vec<u8>) {
    p.test_run(f).unwrap()
}

fn pass(p: &Program, f: &[u8], why: &str) {
    assert_eq!(run(p, f), (XDP_PASS, f.to_vec()), "{why}: passed unchanged");
}

/// Every hairpin case of one family; leaves the maps without its entries.
fn family(p: &mut Program, f: &Family, ifindex: u32) {
    let v4 = f.server.is_ipv4();
    let plain = Shape::default();
    let (a, b) = entries(f, f.server, f.server);
    p.insert(&a).unwrap();
    p.insert(&b).unwrap();

    // Before the program knows tern's own relayed address: today's path, A's route lookup
    // finds a local destination and the kernel has the frame.
    pass(p, &from_a(&a, b"early", b"", plain), "own address not set");
    assert_eq!(counts(p, &a, &b), ([0; 4], [0; 4]));

    p.set_own_relay(f.server, f.server).unwrap();
    // Odd and even lengths, padding (nonzero, dropped), Ethernet fill, both ways, and (IPv4)
    // no UDP checksum, which stays none.
    let mut cases: Vec<(&[u8], &[u8], Shape)> = vec![
        (b"hairpin", &[0xaa], plain),
        (b"12345678", b"", plain),
        (b"x", &[1, 2, 3], plain),
        (b"", b"", plain),
        (
            b"fill",
            b"",
            Shape {
                trailer: 11,
                ..plain
            },
        ),
    ];
    if v4 {
        cases.push((
            b"no checksum",
            &[0],
            Shape {
                no_udp_checksum: true,
                ..plain
            },
        ));
    }
    let mut want = ([0u64; 4], [0u64; 4]);
    for (payload, padding, shape) in &cases {
        let (verdict, out) = run(p, &from_a(&a, payload, padding, *shape));
        assert_eq!(verdict, XDP_REDIRECT, "A -> B {payload:?}");
        assert_eq!(
            out,
            to_b(&b, payload, shape.no_udp_checksum),
            "A -> B {payload:?}"
        );
        assert_checksums(&out);
        want.0[0] += 1;
        want.1[0] += payload.len() as u64;
        want.0[3] += 1;
        want.1[3] += payload.len() as u64;
        if shape.no_udp_checksum {
            continue;
        }
        let (verdict, out) = run(p, &from_b(&b, payload, padding, *shape));
        assert_eq!(verdict, XDP_REDIRECT, "B -> A {payload:?}");
        assert_eq!(out, to_a(&a, payload), "B -> A {payload:?}");
        assert_checksums(&out);
        want.0[2] += 1;
        want.1[2] += payload.len() as u64;
        want.0[1] += 1;
        want.1[1] += payload.len() as u64;
    }
    assert_eq!(
        counts(p, &a, &b),
        want,
        "A's to-peer and B's to-client count each A -> B packet once, and the other way"
    );

    // Every length that fits the MTU, both chunk sides of the checksum sum; a wrong
    // checksum and the pseudo-header sum alone are the kernel's.
    let max = 1500 - if v4 { 20 } else { 40 } - 8 - 4;
    for len in 1..=max {
        let payload: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
        let padding = vec![0x5a; (4 - len % 4) % 4];
        let input = from_a(&a, &payload, &padding, plain);
        let (verdict, out) = run(p, &input);
        assert_eq!(
            (verdict, out),
            (XDP_REDIRECT, to_b(&b, &payload, false)),
            "length {len}"
        );
        let mut wrong = input.clone();
        wrong[input.len() - 1 - padding.len() - len / 2] ^= 0x20;
        pass(p, &wrong, &format!("length {len}: a changed byte"));
        let partial = partial_checksum(&input);
        if partial != input {
            pass(
                p,
                &partial,
                &format!("length {len}: pseudo-header sum only"),
            );
        }
    }
    want.0[0] += max as u64;
    want.0[3] += max as u64;
    want.1[0] += (max * (max + 1) / 2) as u64;
    want.1[3] += (max * (max + 1) / 2) as u64;
    assert_eq!(counts(p, &a, &b), want, "after every length");

    // Arriving on veth0, which is also B's way out: XDP_TX.
    let mut ctx = [0u8; 24];
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let (verdict, out) = p.test_run_on(&from_a(&a, b"tx", b"", plain), &ctx).unwrap();
    assert_eq!((verdict, out), (XDP_TX, to_b(&b, b"tx", false)));
    want.0[0] += 1;
    want.1[0] += 2;
    want.0[3] += 1;
    want.1[3] += 2;

    // B's channel bound to another port of A's relayed IP: no entry for A's address, so
    // today's path (the local route: the kernel, then userspace's Data indication or drop).
    p.remove(&b);
    let (_, b_other) = entries(f, f.server, f.server);
    let b_other = Entry::new(
        b_other.client,
        b_other.server,
        BCH,
        b_other.relay,
        SocketAddr::new(f.server, 50009),
    )
    .unwrap();
    p.insert(&b_other).unwrap();
    pass(
        p,
        &from_a(&a, b"other port", b"", plain),
        "B bound to another port",
    );
    p.remove(&b_other);
    // B without any entry.
    pass(p, &from_a(&a, b"no B", b"", plain), "no entry for B");
    let (to_peer, to_client) = p.remove(&a);
    assert_eq!(
        [
            to_peer.packets,
            to_client.packets,
            to_peer.bytes,
            to_client.bytes
        ],
        [want.0[0], want.0[1], want.1[0], want.1[1]],
        "A's counts, and nothing from the passed frames"
    );

    // external-ip: tern advertises `external`, relay sockets are bound to `server`. Both
    // clients name each other at the advertised address; B's permission is on it, as the
    // NAT router's hairpin delivers from there.
    p.set_own_relay(f.external, f.server).unwrap();
    let (a, b) = entries(f, f.external, f.external);
    p.insert(&a).unwrap();
    p.insert(&b).unwrap();
    let (verdict, out) = run(p, &from_a(&a, b"via nat", b"", plain));
    assert_eq!(
        (verdict, &out),
        (XDP_REDIRECT, &to_b(&b, b"via nat", false))
    );
    assert_checksums(&out);
    let (verdict, out) = run(p, &from_b(&b, b"back", b"", plain));
    assert_eq!((verdict, out), (XDP_REDIRECT, to_a(&a, b"back")));
    assert_eq!(
        counts(p, &a, &b),
        ([1, 1, 1, 1], [7, 4, 4, 7]),
        "one packet each way, on both entries"
    );
    // Without B's entry, A's frame takes today's path: relayed to the external address,
    // by way of the router (the route lookup before the hairpin existed).
    p.remove(&b);
    let (verdict, out) = run(p, &from_a(&a, b"to router", b"", plain));
    assert_eq!(verdict, XDP_REDIRECT);
    assert_eq!(
        out,
        frame((PEER_MAC, SERVER_MAC), a.relay, a.peer, b"to router", plain),
        "no entry for B: the client -> peer path, to the router"
    );
    p.remove(&a);
    // A peer inside the NAT names the local relay address; B bound a channel to A's local
    // address (the source it sees): a hairpin too.
    let (a, b) = entries(f, f.server, f.server);
    p.insert(&a).unwrap();
    p.insert(&b).unwrap();
    let (verdict, out) = run(p, &from_a(&a, b"inside", b"", plain));
    assert_eq!((verdict, out), (XDP_REDIRECT, to_b(&b, b"inside", false)));
    // B bound to the advertised address while A names the local one: B sees A's local
    // address, for which it has no channel: today's path.
    p.remove(&b);
    let (_, b_ext) = entries(f, f.server, f.external);
    p.insert(&b_ext).unwrap();
    pass(
        p,
        &from_a(&a, b"mismatch", b"", plain),
        "B bound to the other address",
    );
    p.remove(&a);
    p.remove(&b_ext);

    if std::env::var_os("TERN_XDP_COST").is_some() {
        let (a, b) = entries(f, f.server, f.server);
        p.insert(&a).unwrap();
        p.insert(&b).unwrap();
        for size in [100usize, 1200] {
            let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            println!(
                "cost: hairpin {} {size} B payload: {} ns per packet (median of {COST_RUNS})",
                if v4 { "ipv4" } else { "ipv6" },
                cost(p, &from_a(&a, &payload, b"", plain))
            );
        }
        p.remove(&a);
        p.remove(&b);
    }
}

/// Both families' hairpins, in the golden namespace (addresses as `super::inner` and
/// `super::ipv6` set them up).
pub(super) fn hairpin(p: &mut Program, ifindex: u32) {
    let families = [
        Family {
            server: "10.0.0.1".parse().unwrap(),
            a: "10.0.0.2".parse().unwrap(),
            b: "10.0.0.3".parse().unwrap(),
            external: "198.51.100.1".parse().unwrap(),
            route: "ip route replace 198.51.100.0/24 via 10.0.0.3 dev veth0",
        },
        Family {
            server: "fd00:203::1".parse().unwrap(),
            a: "fd00:203::2".parse().unwrap(),
            b: "fd00:203::3".parse().unwrap(),
            external: "2001:db8:5::1".parse().unwrap(),
            route: "ip -6 route replace 2001:db8:5::/64 via fd00:203::3 dev veth0",
        },
    ];
    for f in &families {
        let mut args = f.route.split_whitespace();
        let ok = Command::new(args.next().unwrap())
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "{}", f.route);
        family(p, f, ifindex);
    }
}
