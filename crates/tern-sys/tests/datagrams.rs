//! The receive ring and the multi-destination send on loopback sockets: batched and plain,
//! GSO and GRO, the GSO state of each socket, and what the kernel refuses.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use tern_sys::{enable_gro, send_many, Gso, RecvRing};

fn pair() -> (UdpSocket, [UdpSocket; 2]) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let txs = [(); 2].map(|_| UdpSocket::bind("127.0.0.1:0").unwrap());
    (rx, txs)
}

/// Waits until a datagram is queued on `rx` (loopback delivery is synchronous, but be
/// safe), by peeking.
fn settle(rx: &UdpSocket) {
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 1];
    rx.peek_from(&mut b).unwrap();
}

#[test]
fn ring_receives_after_headroom_with_sources_round_after_round() {
    for batched in [true, false] {
        let (rx, txs) = pair();
        let to = rx.local_addr().unwrap();
        let mut ring = RecvRing::new(8, 36, 2048, 4);
        for round in 0u8..3 {
            ring.slot_mut(5)[..36].fill(0xEE);
            let sent: Vec<(Vec<u8>, SocketAddr)> = (0..5u8)
                .map(|k| {
                    let tx = &txs[usize::from(k % 2)];
                    let data = vec![round * 16 + k; 10 + usize::from(k) * 100];
                    tx.send_to(&data, to).unwrap();
                    (data, tx.local_addr().unwrap())
                })
                .collect();
            settle(&rx);
            let mut got = Vec::new();
            // Into slots 3.., as the worker fills its peer ring after earlier datagrams.
            let mut slot = 3;
            while got.len() < sent.len() {
                let n = ring.recv(rx.as_fd(), slot, 8 - slot, batched).unwrap();
                assert!(n > 0, "queued datagrams not received");
                for j in 0..n {
                    let meta = ring.meta(slot + j);
                    assert_eq!(meta.segment, meta.len, "one datagram per entry without GRO");
                    got.push((ring.received(slot + j).to_vec(), meta.from));
                    if slot + j == 5 {
                        assert!(
                            ring.slot(5)[..36].iter().all(|&b| b == 0xEE),
                            "headroom written"
                        );
                    }
                }
                slot = 3 + (slot - 3 + n) % 5;
            }
            assert_eq!(got, sent, "batched {batched}, round {round}");
            let n = ring.recv(rx.as_fd(), 0, 8, batched).unwrap();
            assert_eq!(n, 0, "nothing more is queued");
        }
    }
}

#[test]
fn ring_refuses_slots_it_does_not_have() {
    let (rx, txs) = pair();
    txs[0].send_to(b"x", rx.local_addr().unwrap()).unwrap();
    settle(&rx);
    let mut ring = RecvRing::new(4, 0, 64, 0);
    assert_eq!(ring.recv(rx.as_fd(), 4, 8, true).unwrap(), 0);
    assert_eq!(ring.recv(rx.as_fd(), 3, 8, true).unwrap(), 1);
    assert_eq!(
        (ring.received(3), ring.meta(3).from),
        (&b"x"[..], txs[0].local_addr().unwrap())
    );
}

#[test]
fn send_many_sends_one_or_many_in_order() {
    for batched in [true, false] {
        let (rx, txs) = pair();
        let to = rx.local_addr().unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let gso = Gso::new();
        for count in [1usize, 2, 70] {
            let data: Vec<Vec<u8>> = (0..count).map(|k| vec![k as u8; 50]).collect();
            let report = send_many(
                txs[0].as_fd(),
                &gso,
                data.iter().map(|d| (&d[..], to)),
                batched,
            );
            assert_eq!(report.refused, 0, "{:?}", report.last_error);
            assert_eq!(report.sent, count);
            let mut b = [0u8; 100];
            for d in &data {
                let (n, src) = rx.recv_from(&mut b).unwrap();
                assert_eq!((&b[..n], src), (&d[..], txs[0].local_addr().unwrap()));
            }
        }
    }
}

#[test]
fn send_many_skips_and_counts_what_the_kernel_refuses() {
    // An IPv6 destination from an IPv4 socket is refused (EAFNOSUPPORT); the datagrams
    // around it go. Lengths differ, so no two share a GSO send.
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    for batched in [true, false] {
        let (rx, txs) = pair();
        let to = rx.local_addr().unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let msgs = [
            (&b"a"[..], to),
            (&b"b"[..], v6),
            (&b"cc"[..], v6),
            (&b"ddd"[..], to),
        ];
        let report = send_many(txs[0].as_fd(), &Gso::new(), msgs.into_iter(), batched);
        assert_eq!((report.refused, report.sent), (2, 2), "batched {batched}");
        assert!(report.last_error.is_some());
        let mut b = [0u8; 8];
        for want in [&b"a"[..], b"ddd"] {
            let (n, _) = rx.recv_from(&mut b).unwrap();
            assert_eq!(&b[..n], want);
        }
    }
}

/// Sends a GSO-able burst (five 100-byte datagrams and a 40-byte one to one destination) with
/// `gso`, and returns the entries a GRO receiver got: (length, segment size) each.
fn burst_through_gro(gso: &Gso) -> Option<Vec<(usize, usize)>> {
    let (rx, txs) = pair();
    let to = rx.local_addr().unwrap();
    if !enable_gro(rx.as_fd()) {
        eprintln!("kernel without UDP_GRO: nothing to test");
        return None;
    }
    let data: Vec<Vec<u8>> = (0..6u8)
        .map(|k| vec![k; if k == 5 { 40 } else { 100 }])
        .collect();
    let report = send_many(txs[0].as_fd(), gso, data.iter().map(|d| (&d[..], to)), true);
    assert_eq!(
        (report.refused, report.sent),
        (0, 6),
        "{:?}",
        report.last_error
    );
    settle(&rx);
    let mut ring = RecvRing::new(8, 4, 65_535, 0);
    let (mut got, mut entries) = (Vec::new(), Vec::new());
    while got.len() < data.len() {
        let n = ring.recv(rx.as_fd(), 0, 8, true).unwrap();
        assert!(n > 0, "queued datagrams not received");
        for j in 0..n {
            let meta = ring.meta(j);
            assert_eq!(meta.from, txs[0].local_addr().unwrap());
            entries.push((meta.len, meta.segment));
            let all = ring.received(j);
            got.extend(meta.datagrams().map(|r| all[r].to_vec()));
        }
    }
    assert_eq!(got, data);
    Some(entries)
}

#[test]
fn gro_coalesces_a_gso_burst_and_each_socket_has_its_own_gso_state() {
    let Some(entries) = burst_through_gro(&Gso::new()) else {
        return;
    };
    // The kernel took UDP_GRO, so the GSO burst came as one entry, not six.
    assert_eq!(entries, [(540, 100)], "GSO burst not coalesced");
    // A socket whose GSO is off sends the same burst as six datagrams, while another
    // socket's state is untouched.
    let off = Gso::off();
    assert_eq!(
        burst_through_gro(&off).unwrap().len(),
        6,
        "one message per datagram without GSO"
    );
    assert_eq!(burst_through_gro(&Gso::new()).unwrap(), [(540, 100)]);
}
