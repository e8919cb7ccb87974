//! Full buffers, against the built tern: datagrams to a peer or to a client that the kernel
//! cannot take at once, because the socket's send buffer is full (EAGAIN) or the device's
//! queue is (ENOBUFS). Each is counted in `tern_io_errors_total{kind="send_buffer_full"}`,
//! never as a refusal, and the worker goes on: the flooded allocation lives, and a new client
//! relays both ways once the congestion is gone.
//!
//! Loopback never fills a UDP send buffer (it hands each datagram to the receiver at once),
//! so the test runs in a network namespace of its own and slows its loopback down for one
//! destination port (an `htb` class at 8 kbit/s, picked by a `u32` filter on that port; everything else, the server's own traffic included, goes unhindered). A slow queue
//! with room holds the datagrams, and their memory stays charged to the sending socket until
//! its buffer is full: EAGAIN. A queue of one packet drops the rest: ENOBUFS, which the
//! kernel reports only on sockets with `IP_RECVERR` (tern's relay sockets set it).
//!
//! Needs root and iproute2 (`ip`, `tc`); skips with a note without them (fails under `CI`).
//! The namespace is deleted when the test ends, also when it fails.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use tern_e2e::{http_get, prereq, RawClient, ServerKind, ServerOptions, TestServer};

const SECRET: &str = "buffers-secret-7a21";
const REALM: &str = "buffers.test";
const FULL: &str = r#"tern_io_errors_total{kind="send_buffer_full"}"#;
const INSTALL: &str = "apt-get install -y iproute2 (and run as root)";

/// A network namespace of this test's own, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    /// Creates it with its loopback up; `None` (after a skip note) without root or iproute2.
    fn create(tag: &str) -> Option<Netns> {
        prereq::tool("ip", INSTALL)?;
        prereq::tool("tc", INSTALL)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            prereq::missing("root (to create a network namespace)", INSTALL);
            return None;
        }
        let name = format!("tern-{tag}-{}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        Some(ns)
    }

    /// Runs `f` on a thread inside the namespace: every socket it opens and every process it
    /// starts lives there. A panic in `f` is the caller's.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            let joined = s
                .spawn(move || {
                    let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: a valid namespace file descriptor; CLONE_NEWNET moves only this
                    // thread, which ends with `f`.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                    f()
                })
                .join();
            joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Slows the namespace's loopback down for datagrams to `port`: 8 kbit/s, with a queue of
    /// `limit` packets. (An `htb` class for that port, picked by a `u32` filter; everything
    /// else bypasses the classes. `htb`, `pfifo` and `u32` are the ones most kernels have.)
    fn throttle(&self, port: u16, limit: u32) {
        self.unthrottle();
        let n = &self.name;
        run(&[
            "tc", "-n", n, "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "r2q", "1",
        ]);
        run(&[
            "tc", "-n", n, "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb",
            "rate", "8kbit", "ceil", "8kbit", "burst", "1600",
        ]);
        run(&[
            "tc",
            "-n",
            n,
            "qdisc",
            "add",
            "dev",
            "lo",
            "parent",
            "1:10",
            "handle",
            "10:",
            "pfifo",
            "limit",
            &limit.to_string(),
        ]);
        run(&[
            "tc",
            "-n",
            n,
            "filter",
            "add",
            "dev",
            "lo",
            "parent",
            "1:",
            "protocol",
            "ip",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            "dport",
            &port.to_string(),
            "0xffff",
            "flowid",
            "1:10",
        ]);
    }

    /// Removes the slow queue (and the datagrams in it).
    fn unthrottle(&self) {
        let _ = Command::new("tc")
            .args(["-n", &self.name, "qdisc", "del", "dev", "lo", "root"])
            .output();
    }

    /// Datagrams the slow queue dropped so far.
    fn dropped(&self) -> u64 {
        let out = Command::new("tc")
            .args(["-n", &self.name, "-s", "qdisc", "show", "dev", "lo"])
            .output()
            .expect("tc -s qdisc show");
        let text = String::from_utf8_lossy(&out.stdout);
        // "qdisc pfifo 10: parent 1:10 ...\n Sent N bytes M pkt (dropped D, overlimits ...)"
        let fifo = text
            .split("qdisc ")
            .find(|q| q.starts_with("pfifo 10:"))
            .unwrap_or_else(|| panic!("no slow queue in: {text}"));
        let after = fifo.split("dropped ").nth(1).expect("a dropped count");
        after[..after.find(',').unwrap()].parse().unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// An allocation with channel 0x4000 bound to a fresh peer: (client, relayed, peer).
fn session(server: &TestServer) -> (RawClient, SocketAddr, UdpSocket) {
    let mut client = RawClient::new(server.addr(), SECRET, REALM);
    let relayed = client.allocate_ok();
    let peer = peer();
    client.bind_channel(0x4000, peer.local_addr().unwrap());
    client.relay_over_channel(relayed, &peer, 2);
    (client, relayed, peer)
}

/// Waits (at most 5 s) until `series` exceeds `floor`; returns its value.
fn wait_above(server: &TestServer, series: &str, floor: f64) -> f64 {
    let start = Instant::now();
    loop {
        let v = server.metric(series);
        if v > floor || start.elapsed() > Duration::from_secs(5) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most 5 s) until `series` stops moving (the same in two scrapes 300 ms apart,
/// past the workers' 100 ms publishing), so a phase's count starts after the last one's
/// stragglers; returns its value.
fn settled(server: &TestServer, series: &str) -> f64 {
    let start = Instant::now();
    let mut last = server.metric(series);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = server.metric(series);
        if now == last || start.elapsed() > Duration::from_secs(5) {
            return now;
        }
        last = now;
    }
}

/// The worker still serves: the flooded allocation answers a Refresh, `/healthz` is 200,
/// and a new client relays both ways.
fn still_serving(server: &TestServer, flooded: &mut RawClient) {
    assert_eq!(flooded.refresh(600), 0, "the flooded allocation lives");
    let (status, body) = http_get(server.admin_addr(), "/healthz").unwrap();
    assert_eq!(status, 200, "{body}");
    let (fresh, relayed, peer) = session(server);
    fresh.relay_over_channel(relayed, &peer, 5);
}

#[test]
fn full_send_buffers_and_device_queues_are_counted_and_the_worker_goes_on() {
    let Some(ns) = Netns::create("buffers") else {
        return;
    };
    ns.run(|| {
        let mut options = ServerOptions::rest(SECRET, REALM);
        // A small send buffer on the listening sockets, so a few dozen datagrams fill it.
        options.extra_args = vec!["--udp-send-buffer=32768".into()];
        let server = TestServer::start(ServerKind::Tern, &options);
        server.wait_healthy(Duration::from_secs(5));
        let payload = [0x5a; 1000];

        // 1. To a peer, a slow queue with room: the relay socket's buffer fills (EAGAIN).
        let (mut client, _relayed, to_peer) = session(&server);
        ns.throttle(to_peer.local_addr().unwrap().port(), 100_000);
        for _ in 0..2000 {
            client.send_channel(0x4000, &payload);
        }
        let eagain = wait_above(&server, FULL, 0.0);
        assert!(
            eagain > 0.0,
            "no full send buffer counted for 2000 datagrams to a slow peer"
        );
        assert_eq!(
            ns.dropped(),
            0,
            "the queue had room: these were EAGAIN, not drops"
        );
        ns.unthrottle();
        still_serving(&server, &mut client);

        // 2. To a peer, a queue of one datagram: the device drops the rest (ENOBUFS).
        let (mut client, _relayed, to_peer) = session(&server);
        let before = settled(&server, FULL);
        ns.throttle(to_peer.local_addr().unwrap().port(), 1);
        for _ in 0..300 {
            client.send_channel(0x4000, &payload);
            // Paced, so the socket's buffer never fills: every loss is the queue's.
            std::thread::sleep(Duration::from_micros(200));
        }
        // Each drop is reported to the sending call (seen: 297 counted for 297 dropped); the
        // bound allows for a `sendmmsg` that returns the count it sent and leaves the error of
        // the next datagram for the following call.
        wait_above(&server, FULL, before);
        let enobufs = settled(&server, FULL) - before;
        let dropped = ns.dropped();
        assert!(dropped > 0, "the one-datagram queue dropped nothing");
        assert!(
            enobufs > 0.0 && enobufs <= 300.0,
            "{enobufs} counted for {dropped} datagrams the device queue dropped"
        );
        ns.unthrottle();
        still_serving(&server, &mut client);

        // 3. To a client: the listening socket's buffer fills (EAGAIN).
        let (mut client, relayed, from_peer) = session(&server);
        let before = settled(&server, FULL);
        ns.throttle(client.local_addr().port(), 100_000);
        for _ in 0..2000 {
            from_peer.send_to(&payload, relayed).unwrap();
        }
        wait_above(&server, FULL, before);
        let to_client = settled(&server, FULL) - before;
        assert!(
            to_client > 0.0,
            "no full send buffer counted for 2000 datagrams to a slow client"
        );
        ns.unthrottle();
        still_serving(&server, &mut client);

        eprintln!(
            "full buffers counted: {eagain} to a slow peer, {enobufs} to a one-datagram queue \
             ({dropped} dropped there), {to_client} to a slow client"
        );
        // None of it was a refusal.
        for kind in ["send_to_peer", "send_to_client"] {
            let series = format!(r#"tern_io_errors_total{{kind="{kind}"}}"#);
            assert_eq!(server.metric(&series), 0.0, "{series}");
        }
    });
}
