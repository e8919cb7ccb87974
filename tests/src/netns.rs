//! Two network namespaces joined by a veth pair, for the XDP fast path's end-to-end suite:
//! `<name>-srv` (tern) and `<name>-gen` (clients and peers), each end with a fixed MAC and a
//! permanent neighbour entry for the other, so the fast path's route lookup finds a
//! neighbour from the first packet. The generator's end carries an `XDP_PASS` program, so
//! frames tern's end sends with `XDP_TX` are received (a native-XDP veth needs one on its
//! peer). The addresses are private and live only inside the two namespaces; nothing leaves
//! the machine. Both namespaces (and so the veth pair) are deleted on drop.
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF), `ip` (iproute2 with libbpf),
//! `ethtool` and `clang` (to build the pass program).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::process::run_bounded;

/// An `XDP_PASS` program, for the generator's veth end.
const PASS_C: &str = "__attribute__((section(\"xdp\"), used)) int pass(void *ctx) { return 2; }\n\
char _license[] __attribute__((section(\"license\"), used)) = \"GPL\";\n";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The two namespaces and their veth pair.
pub struct VethPair {
    /// tern's namespace.
    pub srv: String,
    /// The clients' and peers' namespace.
    pub gen: String,
    /// tern's veth end (in `srv`): where the XDP program attaches.
    pub srv_dev: String,
    /// The generator's end (in `gen`).
    pub gen_dev: String,
    /// `10.201.<n>.1` (`10.<net>.<n>.1` from [`VethPair::in_net`]): tern's address.
    pub server_ip: Ipv4Addr,
    /// `10.201.<n>.2`: the clients' address.
    pub client_ip: Ipv4Addr,
    /// `10.201.<n>.3`: the peers' address.
    pub peer_ip: Ipv4Addr,
    /// `fd00:203:<n>::1` (`fd00:<net>:<n>::1`, `net` as a hex group, from [`VethPair::in_net`]): tern's IPv6 address.
    pub server_ip6: Ipv6Addr,
    /// `fd00:203:<n>::2`: the clients' IPv6 address.
    pub client_ip6: Ipv6Addr,
    /// `fd00:203:<n>::3`: the peers' IPv6 address.
    pub peer_ip6: Ipv6Addr,
    dir: PathBuf,
}

/// Runs `ip args…`; panics with its output when it fails.
fn ip(args: &[&str]) {
    let out = run_bounded(Command::new("ip").args(args), Duration::from_secs(10));
    assert!(out.success(), "ip {}: {out:?}", args.join(" "));
}

/// Whether this process may create namespaces and attach XDP programs (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// How a [`VethPair`] differs from the plain one.
#[derive(Debug, Default, Clone, Copy)]
pub struct Setup {
    /// Leave TX checksum offload on at the generator's end, as a pod or container next to
    /// tern on one host has it: its UDP frames then carry only the pseudo-header sum.
    pub tx_checksum_offload: bool,
}

impl VethPair {
    /// Creates the namespaces, the veth pair and the pass program. `subnet` (1..=254) picks
    /// `10.201.<subnet>.0/24` and `fd00:203:<subnet>::/64` (added without duplicate address
    /// detection, so usable at once). tern's namespace forwards both families: the fast
    /// path's route lookup (bpf_fib_lookup) answers only for a device that forwards.
    pub fn new(subnet: u8) -> VethPair {
        VethPair::in_net_with(201, subnet, Setup::default())
    }

    /// [`VethPair::new`] set up as `setup` says.
    pub fn with(subnet: u8, setup: Setup) -> VethPair {
        VethPair::in_net_with(201, subnet, setup)
    }

    /// [`VethPair::new`] in `10.<net>.<subnet>.0/24` (and `fd00:<net>:<subnet>::/64`), for a
    /// suite that keeps to its own `10.<net>.0.0/16` (the MACs carry `net` too).
    pub fn in_net(net: u8, subnet: u8) -> VethPair {
        VethPair::in_net_with(net, subnet, Setup::default())
    }

    /// [`VethPair::in_net`] set up as `setup` says.
    pub fn in_net_with(net: u8, subnet: u8, setup: Setup) -> VethPair {
        // The suites of 10.201/16 keep their fd00:203::/32 of before.
        let net6 = if net == 201 { 0x203 } else { u16::from(net) };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{n}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("tern-netns-{tag}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pair = VethPair {
            srv: format!("tern{tag}-srv"),
            gen: format!("tern{tag}-gen"),
            srv_dev: format!("ts{tag}"),
            gen_dev: format!("tg{tag}"),
            server_ip: Ipv4Addr::new(10, net, subnet, 1),
            client_ip: Ipv4Addr::new(10, net, subnet, 2),
            peer_ip: Ipv4Addr::new(10, net, subnet, 3),
            server_ip6: Ipv6Addr::new(0xfd00, net6, subnet.into(), 0, 0, 0, 0, 1),
            client_ip6: Ipv6Addr::new(0xfd00, net6, subnet.into(), 0, 0, 0, 0, 2),
            peer_ip6: Ipv6Addr::new(0xfd00, net6, subnet.into(), 0, 0, 0, 0, 3),
            dir,
        };
        // From here on, drop cleans up whatever was made.
        ip(&["netns", "add", &pair.srv]);
        ip(&["netns", "add", &pair.gen]);
        let (smac, gmac) = (
            format!("02:00:00:{net:02x}:{subnet:02x}:01"),
            format!("02:00:00:{net:02x}:{subnet:02x}:02"),
        );
        ip(&[
            "link",
            "add",
            &pair.srv_dev,
            "address",
            &smac,
            "netns",
            &pair.srv,
            "type",
            "veth",
            "peer",
            "name",
            &pair.gen_dev,
            "address",
            &gmac,
            "netns",
            &pair.gen,
        ]);
        let srv = format!("{}/24", pair.server_ip);
        ip(&["-n", &pair.srv, "addr", "add", &srv, "dev", &pair.srv_dev]);
        for a in [pair.client_ip, pair.peer_ip] {
            let a = format!("{a}/24");
            ip(&["-n", &pair.gen, "addr", "add", &a, "dev", &pair.gen_dev]);
        }
        let srv6 = format!("{}/64", pair.server_ip6);
        ip(&[
            "-n",
            &pair.srv,
            "addr",
            "add",
            &srv6,
            "dev",
            &pair.srv_dev,
            "nodad",
        ]);
        for a in [pair.client_ip6, pair.peer_ip6] {
            let a = format!("{a}/64");
            ip(&[
                "-n",
                &pair.gen,
                "addr",
                "add",
                &a,
                "dev",
                &pair.gen_dev,
                "nodad",
            ]);
        }
        for key in [
            "net.ipv4.conf.all.forwarding=1",
            "net.ipv6.conf.all.forwarding=1",
        ] {
            let out = run_bounded(
                Command::new("ip").args(["netns", "exec", &pair.srv, "sysctl", "-qw", key]),
                Duration::from_secs(10),
            );
            assert!(out.success(), "sysctl {key} in {}: {out:?}", pair.srv);
        }
        for (ns, dev) in [(&pair.srv, &pair.srv_dev), (&pair.gen, &pair.gen_dev)] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        // Local sockets leave checksums to the device (CHECKSUM_PARTIAL): over veth the
        // frame then carries only the pseudo-header sum, which the fast path verifies and
        // leaves to the kernel. A real NIC puts the full checksum on the wire; so does this
        // end with TX checksum offload off, unless the test wants it on.
        let tx = if setup.tx_checksum_offload {
            "on"
        } else {
            "off"
        };
        let out = run_bounded(
            Command::new("ip").args([
                "netns",
                "exec",
                &pair.gen,
                "ethtool",
                "-K",
                &pair.gen_dev,
                "tx",
                tx,
            ]),
            Duration::from_secs(10),
        );
        assert!(
            out.success(),
            "ethtool -K {} tx {tx}: {out:?}",
            pair.gen_dev
        );
        // Permanent neighbours both ways, so the fast path's route lookup finds them from
        // the first packet: the generator's addresses from tern's end, and tern's from the
        // generator's.
        let neighbours = [
            (
                &pair.srv,
                &pair.srv_dev,
                &gmac,
                IpAddr::from(pair.client_ip),
            ),
            (&pair.srv, &pair.srv_dev, &gmac, pair.peer_ip.into()),
            (&pair.srv, &pair.srv_dev, &gmac, pair.client_ip6.into()),
            (&pair.srv, &pair.srv_dev, &gmac, pair.peer_ip6.into()),
            (&pair.gen, &pair.gen_dev, &smac, pair.server_ip6.into()),
            (&pair.gen, &pair.gen_dev, &smac, pair.server_ip.into()),
        ];
        for (ns, dev, mac, a) in neighbours {
            let a = a.to_string();
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                &a,
                "lladdr",
                mac,
                "nud",
                "permanent",
                "dev",
                dev,
            ]);
        }
        let (src, obj) = (pair.dir.join("pass.c"), pair.dir.join("pass.o"));
        std::fs::write(&src, PASS_C).expect("write pass.c");
        let out = run_bounded(
            Command::new("clang")
                .args(["-O2", "-target", "bpf", "-c"])
                .arg(&src)
                .arg("-o")
                .arg(&obj),
            Duration::from_secs(60),
        );
        assert!(out.success(), "clang pass.c: {out:?}");
        ip(&[
            "-n",
            &pair.gen,
            "link",
            "set",
            "dev",
            &pair.gen_dev,
            "xdpdrv",
            "obj",
            obj.to_str().expect("utf-8 path"),
            "sec",
            "xdp",
        ]);
        pair
    }

    /// `ip netns exec <ns> <program>`: a command that runs inside `ns`.
    pub fn exec(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }

    /// Runs `f` on a thread that has entered namespace `ns`: the sockets it opens live
    /// there.
    pub fn within<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{ns}");
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&path);
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns takes a file descriptor that stays open for the call (`f` lives to the
    // end of this function) and a flag constant; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.srv, &self.gen] {
            let _ = run_bounded(
                Command::new("ip").args(["netns", "del", ns]),
                Duration::from_secs(10),
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
