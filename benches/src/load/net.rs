//! Socket set-up shared by the load generator and the bare forwarder.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffer size asked for on every benchmark socket, so that the generator drops nothing
/// itself (the kernel caps it at `net.core.rmem_max` / `wmem_max`).
pub const SOCKET_BUFFER: usize = 4 << 20;

/// A non-blocking IPv4 UDP socket bound to `addr` with large buffers.
pub fn bind_udp(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&SocketAddr::V4(addr).into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Parses `A-B` into an inclusive port range.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected A-B"))?;
    let a: u16 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if a == 0 || b < a {
        return Err(format!("{s:?}: need 0 < A <= B"));
    }
    Ok((a, b))
}

/// Whether `addr` is on loopback: the benchmarks never send anywhere else, except inside a
/// network namespace of their own (see [`may_use`]).
pub fn is_loopback(addr: SocketAddrV4) -> bool {
    addr.ip().is_loopback()
}

/// Where `ip netns add NAME` bind-mounts the namespace it makes: iproute2's `NETNS_RUN_DIR`,
/// `/var/run/netns`, which is `/run/netns` where `/var/run` links to `/run` (current systems;
/// both are searched).
pub const NETNS_RUN_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// A namespace's identity: the device and inode of its nsfs file. `stat` follows the
/// `/proc/PID/ns/net` magic link, and a name's bind mount under [`NETNS_RUN_DIRS`] has the
/// same pair, so comparing pairs tells whether two paths are one namespace.
fn ns_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// The name under `run_dir` of the network namespace whose nsfs file is `ns` (what
/// `ip netns identify` prints), if it has one.
pub fn netns_name(ns: &Path, run_dir: &Path) -> Option<String> {
    let id = ns_id(ns).ok()?;
    std::fs::read_dir(run_dir)
        .ok()?
        .flatten()
        .find(|e| ns_id(&e.path()).is_ok_and(|other| other == id))
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// The name of the network namespace of its own this process runs in, or why it is not in
/// one.
///
/// A namespace of its own is one that `ip netns add` made and `ip netns exec` entered: this
/// process's namespace is bind-mounted under [`NETNS_RUN_DIRS`], and it is not PID 1's (the
/// host's). PID 1's namespace cannot always be read: under a sandbox whose init holds
/// capabilities this process lacks, `/proc/1/ns/net` is EACCES even to root, and comparing
/// against it alone refused every namespace. The name is what tells, and PID 1's namespace is
/// compared when it can be read, so a name given to the host's own namespace
/// (`ip netns attach NAME 1`) is still refused there. A namespace with no name
/// (`unshare --net`) is refused: nothing tells it from the host's where PID 1 is unreadable.
pub fn own_netns() -> Result<String, String> {
    let own = Path::new("/proc/self/ns/net");
    let id = ns_id(own).map_err(|e| format!("{}: {e}", own.display()))?;
    if ns_id(Path::new("/proc/1/ns/net")).is_ok_and(|init| init == id) {
        return Err("this process runs in the host's network namespace (PID 1's)".into());
    }
    NETNS_RUN_DIRS
        .iter()
        .find_map(|dir| netns_name(own, Path::new(dir)))
        .ok_or_else(|| {
            "this process's network namespace has no name under /run/netns: make one with \
             `ip netns add NAME` and run the generator with `ip netns exec NAME`"
                .into()
        })
}

/// Whether the generator may use `ip`: loopback always; a private (RFC 1918) address only
/// inside a network namespace of its own (the XDP benchmark's veth pair, see [`own_netns`]),
/// where it reaches nothing outside the machine. `Err` says why not.
pub fn may_use(ip: std::net::Ipv4Addr) -> Result<(), String> {
    if ip.is_loopback() {
        return Ok(());
    }
    if !ip.is_private() {
        return Err("neither loopback nor private".into());
    }
    own_netns().map(drop).map_err(|why| {
        format!("a private address only inside a network namespace of its own: {why}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_named_by_its_bind_mount_and_only_by_it() {
        let dir = std::env::temp_dir().join(format!("tern-netns-name-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A file that is not this namespace's bind mount does not name it, whatever it is
        // called; a missing directory names nothing.
        std::fs::write(dir.join("host"), b"").unwrap();
        assert_eq!(netns_name(Path::new("/proc/self/ns/net"), &dir), None);
        // A name is found by identity: the same file reached through another path (what a
        // bind mount is to the nsfs file).
        assert_eq!(netns_name(&dir.join("host"), &dir).as_deref(), Some("host"));
        assert_eq!(
            netns_name(Path::new("/proc/self/ns/net"), &dir.join("none")),
            None
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loopback_is_always_allowed_and_public_addresses_never() {
        assert_eq!(may_use([127, 0, 0, 1].into()), Ok(()));
        assert_eq!(may_use([127, 9, 9, 9].into()), Ok(()));
        assert!(may_use([8, 8, 8, 8].into()).is_err());
        assert!(may_use([100, 64, 0, 1].into()).is_err());
    }
}
