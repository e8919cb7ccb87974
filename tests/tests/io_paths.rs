//! The server's I/O paths: recvmmsg/sendmmsg and plain recvfrom/sendto relay exactly the same
//! bytes, and every allocation stays reachable whatever the number of worker threads.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tern_e2e::{RawClient, ServerKind, ServerOptions, TestServer};

const SECRET: &str = "io-paths-secret";
const REALM: &str = "tern.test";

fn server(extra: &[&str]) -> TestServer {
    let mut options = ServerOptions::rest(SECRET, REALM);
    options.extra_args = extra.iter().map(|s| s.to_string()).collect();
    TestServer::start(ServerKind::Tern, &options)
}

fn peer() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// Deterministic payloads of varied sizes, including odd ones that need padding.
fn payloads(n: usize) -> Vec<Vec<u8>> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let len = 1 + (x >> 8) as usize % 1400;
            (0..len)
                .map(|j| (i * 31 + j * 7) as u8 ^ (x as u8))
                .collect()
        })
        .collect()
}

/// 40 varied payloads, then 30 of 500 bytes and one of 200.
fn burst() -> Vec<Vec<u8>> {
    let mut b = payloads(40);
    b.extend((0..30u8).map(|i| vec![i; 500]));
    b.push(vec![0xAB; 200]);
    b
}

/// Relays a fixed sequence both ways over a channel and over Send/Data indications, one at a
/// time and in bursts; returns everything received, in order.
fn transcript(extra: &[&str]) -> Vec<Vec<u8>> {
    let mut server = server(extra);
    let mut client = RawClient::new(server.addr(), SECRET, REALM);
    let relayed = client.allocate_ok();
    let (chan_peer, chan_addr) = peer();
    let (ind_peer, ind_addr) = peer();
    client.bind_channel(0x4000, chan_addr);
    client.permit(ind_addr);
    let mut got = Vec::new();
    let mut buf = [0u8; 65_536];
    for p in payloads(60) {
        client.send_channel(0x4000, &p);
        let (n, from) = chan_peer
            .recv_from(&mut buf)
            .expect("peer gets ChannelData payload");
        assert_eq!(from, relayed);
        got.push(buf[..n].to_vec());
        chan_peer.send_to(&p, relayed).unwrap();
        let (ch, data) = client
            .recv_relayed(chan_addr)
            .expect("client gets ChannelData");
        assert_eq!(ch, 0x4000);
        got.push(data);
        client.send_indication(ind_addr, &p);
        let (n, _) = ind_peer
            .recv_from(&mut buf)
            .expect("peer gets Send payload");
        got.push(buf[..n].to_vec());
        ind_peer.send_to(&p, relayed).unwrap();
        let (ch, data) = client
            .recv_relayed(ind_addr)
            .expect("client gets a Data indication");
        assert_eq!(ch, 0);
        got.push(data);
    }
    // Bursts: many datagrams queued at once, so batched reads and sends carry several; the
    // equal-sized run with a shorter tail is what UDP GSO sends as one.
    let burst = burst();
    for p in &burst {
        chan_peer.send_to(p, relayed).unwrap();
    }
    for _ in &burst {
        got.push(client.recv_relayed(chan_addr).expect("burst to client").1);
    }
    for p in &burst {
        client.send_channel(0x4000, p);
    }
    for _ in &burst {
        let (n, _) = chan_peer.recv_from(&mut buf).expect("burst to peer");
        got.push(buf[..n].to_vec());
    }
    server.assert_alive();
    got
}

#[test]
fn batched_and_plain_io_relay_identical_bytes() {
    let expected: Vec<Vec<u8>> = {
        let mut e = Vec::new();
        for p in payloads(60) {
            e.extend([p.clone(), p.clone(), p.clone(), p]);
        }
        let burst = burst();
        e.extend(burst.iter().cloned());
        e.extend(burst);
        e
    };
    let batched = transcript(&["--relay-threads=1"]);
    let plain = transcript(&["--relay-threads=1", "--no-batched-io"]);
    assert_eq!(batched.len(), expected.len());
    assert!(batched == expected, "batched I/O changed the bytes");
    assert!(plain == expected, "plain I/O changed the bytes");
}

#[test]
fn every_allocation_reachable_whatever_the_worker_count() {
    for workers in [1, 2, 3] {
        let mut server = server(&[&format!("--relay-threads={workers}")]);
        let (peer_sock, peer_addr) = peer();
        let mut clients: Vec<(RawClient, SocketAddr)> = (0..24)
            .map(|_| {
                let mut c = RawClient::new(server.addr(), SECRET, REALM);
                let (code, relayed) = c.allocate();
                assert_eq!(code, 0, "workers={workers}: {}", server.output());
                (c, relayed.unwrap())
            })
            .collect();
        for (i, (c, _)) in clients.iter_mut().enumerate() {
            c.bind_channel(0x4000 + i as u16, peer_addr);
            c.send_channel(0x4000 + i as u16, format!("hello {i}").as_bytes());
        }
        let mut buf = [0u8; 64];
        let mut seen = Vec::new();
        for _ in 0..clients.len() {
            let (n, from) = peer_sock
                .recv_from(&mut buf)
                .expect("every client reaches the peer");
            let i: usize = std::str::from_utf8(&buf[6..n]).unwrap().parse().unwrap();
            assert_eq!(
                from, clients[i].1,
                "client {i} relays from its relayed address"
            );
            seen.push(i);
            peer_sock
                .send_to(format!("back {i}").as_bytes(), from)
                .unwrap();
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..clients.len()).collect::<Vec<_>>());
        for (i, (c, _)) in clients.iter().enumerate() {
            let (ch, data) = c
                .recv_relayed(peer_addr)
                .expect("the peer reaches every client");
            assert_eq!(
                (ch, data),
                (0x4000 + i as u16, format!("back {i}").into_bytes())
            );
        }
        if workers > 1 {
            // 24 clients over several workers: the kernel's hash spreads them (all on one
            // worker has odds of 2^-23 or less).
            let out = server.output();
            let used = (0..workers)
                .filter(|w| out.contains(&format!("worker={w}")))
                .count();
            assert!(used > 1, "allocations all on one worker:\n{out}");
        }
        server.assert_alive();
    }
}

/// Sends `datagrams` (all the same length but the last, which may be shorter) from `sock` to
/// `to` as one UDP GSO send: the kernel splits it, or hands it whole to a receiver with
/// UDP_GRO on, as a NIC's GRO would with a burst from one sender.
fn send_gso(sock: &UdpSocket, to: SocketAddr, datagrams: &[Vec<u8>]) {
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only")
    };
    let seg = datagrams[0].len() as u16;
    let mut iov: Vec<libc::iovec> = datagrams
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    // SAFETY: sockaddr_in is plain old data; all zeros is a valid value of it.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = to.port().to_be();
    addr.sin_addr.s_addr = u32::from(*to.ip()).to_be();
    let mut ctrl = [0u64; 4];
    // SAFETY: msghdr is plain old data (integers and raw pointers); all zeros is a valid
    // value of it (null pointers with zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    msg.msg_control = ctrl.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation on a length.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
    // SAFETY: msg points at live locals: the address, the iovecs over `datagrams`, and a
    // control buffer of CMSG_SPACE(2) bytes or more holding one UDP_SEGMENT cmsg.
    let sent = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = 103; // UDP_SEGMENT
        (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
        libc::sendmsg(sock.as_raw_fd(), &msg, 0)
    };
    let total: usize = datagrams.iter().map(Vec::len).sum();
    assert_eq!(
        sent,
        total as isize,
        "GSO send: {}",
        std::io::Error::last_os_error()
    );
}

/// With batched I/O the listening sockets have UDP GRO on, so a client's burst can arrive as
/// one buffer; each datagram in it must still be relayed on its own, in order. The plain
/// path (GRO off) must give the same.
#[test]
fn a_coalesced_burst_from_a_client_is_relayed_datagram_by_datagram() {
    for extra in [
        &["--relay-threads=1"][..],
        &["--relay-threads=1", "--no-batched-io"],
    ] {
        let mut server = server(extra);
        let mut client = RawClient::new(server.addr(), SECRET, REALM);
        let relayed = client.allocate_ok();
        let (peer_sock, peer_addr) = peer();
        client.bind_channel(0x4001, peer_addr);
        // 20 ChannelData messages of 4 + 200 bytes and a last one of 4 + 61.
        let payloads: Vec<Vec<u8>> = (0..21u8)
            .map(|i| vec![i; if i == 20 { 61 } else { 200 }])
            .collect();
        let datagrams: Vec<Vec<u8>> = payloads
            .iter()
            .map(|p| {
                let mut d = vec![0x40, 0x01];
                d.extend_from_slice(&(p.len() as u16).to_be_bytes());
                d.extend_from_slice(p);
                d
            })
            .collect();
        send_gso(&client.sock, server.addr(), &datagrams);
        let mut buf = [0u8; 65_536];
        for (i, p) in payloads.iter().enumerate() {
            let (n, from) = peer_sock
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("{extra:?}: payload {i} not relayed: {e}"));
            assert_eq!(from, relayed);
            assert_eq!(&buf[..n], &p[..], "{extra:?}: payload {i}");
        }
        // And the allocation still answers: a Refresh goes through.
        assert_eq!(client.refresh(600), 0, "{extra:?}");
        server.assert_alive();
    }
}
