//! ICMP errors on unconnected UDP sockets. Without `IP_RECVERR` (`IPV6_RECVERR`) Linux drops
//! the ICMP errors that answer an unconnected socket's datagrams, so a peer that is gone
//! (ICMP port unreachable) is invisible. With it, the kernel queues each one on the socket's
//! error queue, reports it once as the error of the next receive (ECONNREFUSED for port
//! unreachable) and keeps `EPOLLERR` raised until the queue is read with `MSG_ERRQUEUE`;
//! [`drain_icmp_errors`] reads it and sorts what it finds.

use std::os::fd::{AsRawFd, BorrowedFd};

/// ICMP errors read from an error queue, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IcmpErrors {
    /// Destination unreachable, port unreachable (ICMP type 3 code 3, ICMPv6 type 1 code 4):
    /// nothing listens on the peer's port.
    pub port_unreachable: u64,
    /// Any other destination unreachable (host, network, prohibited, ...).
    pub unreachable: u64,
    /// Any other queued error (time exceeded, parameter problem, a local error).
    pub other: u64,
}

impl IcmpErrors {
    /// Errors read in all.
    pub fn total(&self) -> u64 {
        self.port_unreachable + self.unreachable + self.other
    }
}

/// Whether `e` is how a receive reports a queued ICMP error (the socket's pending error, set
/// by the ICMP that `IP_RECVERR` queued): then the caller drains the queue and reads on.
pub fn is_icmp_report(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
                | libc::EPROTO
                | libc::EACCES
                | libc::EMSGSIZE
        )
    )
}

/// Turns on `IP_RECVERR` (or `IPV6_RECVERR` with `ipv6`) on `fd`; whether the kernel took it.
pub fn enable_icmp_errors(fd: BorrowedFd<'_>, ipv6: bool) -> bool {
    let (level, option) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `one`, which lives across the call, for its size; `fd` is
    // borrowed, so open.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Reads up to `max` entries of `fd`'s error queue without blocking and sorts them. No
/// allocation: the entries' payloads (the head of the datagram that drew the error) are
/// truncated into a small stack buffer.
pub fn drain_icmp_errors(fd: BorrowedFd<'_>, max: usize) -> IcmpErrors {
    let mut found = IcmpErrors::default();
    for _ in 0..max {
        let mut name: libc::sockaddr_storage = unsafe_zeroed();
        let mut data = [0u8; 64];
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = unsafe_zeroed();
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: every pointer in `msg` points at a live local of the size given beside it.
        let n = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            break; // EAGAIN: the queue is empty
        }
        let mut kind = Kind::Other;
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the control buffer the kernel just filled,
        // within `msg_controllen`; each header they return is inside `control`.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: `cmsg` is a header inside `control` (see above).
            let (level, typ) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
            let ours = (level == libc::IPPROTO_IP && typ == libc::IP_RECVERR)
                || (level == libc::IPPROTO_IPV6 && typ == libc::IPV6_RECVERR);
            if ours {
                // SAFETY: an IP_RECVERR / IPV6_RECVERR message carries a sock_extended_err
                // (then the offender's address); read unaligned, as CMSG_DATA promises no
                // alignment for it.
                let ee = unsafe {
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err)
                };
                kind = classify(ee.ee_origin, ee.ee_type, ee.ee_code);
            }
            // SAFETY: as for CMSG_FIRSTHDR above.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        match kind {
            Kind::PortUnreachable => found.port_unreachable += 1,
            Kind::Unreachable => found.unreachable += 1,
            Kind::Other => found.other += 1,
        }
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PortUnreachable,
    Unreachable,
    Other,
}

fn classify(origin: u8, typ: u8, code: u8) -> Kind {
    match (origin, typ, code) {
        (libc::SO_EE_ORIGIN_ICMP, 3, 3) | (libc::SO_EE_ORIGIN_ICMP6, 1, 4) => Kind::PortUnreachable,
        (libc::SO_EE_ORIGIN_ICMP, 3, _) | (libc::SO_EE_ORIGIN_ICMP6, 1, _) => Kind::Unreachable,
        _ => Kind::Other,
    }
}

/// An all-zero C struct (the kernel fills it in).
fn unsafe_zeroed<T: Copy>() -> T {
    // SAFETY: only used for the plain C structs above (msghdr, sockaddr_storage), for which
    // all zero bytes is a valid value.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    /// A datagram to a loopback port nobody listens on draws ICMP port unreachable: with the
    /// option on it is queued, reported once by the next send or receive, and read here; the
    /// socket works on.
    #[test]
    fn port_unreachable_is_queued_reported_and_drained() {
        for (ip, ipv6) in [("127.0.0.1", false), ("::1", true)] {
            let Ok(sock) = UdpSocket::bind((ip, 0)) else {
                continue; // no IPv6 here
            };
            sock.set_nonblocking(true).unwrap();
            assert!(enable_icmp_errors(sock.as_fd(), ipv6));
            let gone = UdpSocket::bind((ip, 0)).unwrap();
            let dead = gone.local_addr().unwrap();
            drop(gone);
            let mut reported = false;
            for _ in 0..3 {
                // A send after an ICMP reports the pending error instead of sending; again.
                if let Err(e) = sock.send_to(b"anyone?", dead) {
                    assert!(is_icmp_report(&e), "{e}");
                    reported = true;
                    sock.send_to(b"anyone?", dead).unwrap();
                }
            }
            let start = Instant::now();
            let mut found = IcmpErrors::default();
            while found.total() < 3 && start.elapsed() < Duration::from_secs(2) {
                let mut buf = [0u8; 16];
                if let Err(e) = sock.recv_from(&mut buf) {
                    reported |= is_icmp_report(&e);
                }
                let more = drain_icmp_errors(sock.as_fd(), 8);
                found.port_unreachable += more.port_unreachable;
                found.unreachable += more.unreachable;
                found.other += more.other;
            }
            assert_eq!(found.port_unreachable, 3, "{ip}: {found:?}");
            assert_eq!(found.total(), 3, "{ip}: {found:?}");
            assert!(reported, "{ip}: no send or receive reported the error");
            // Drained: nothing left, and the socket still sends and receives.
            assert_eq!(drain_icmp_errors(sock.as_fd(), 8), IcmpErrors::default());
            let me = sock.local_addr().unwrap();
            sock.send_to(b"self", me).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            let mut buf = [0u8; 16];
            let got = sock.recv_from(&mut buf);
            assert_eq!(
                got.as_ref().map(|r| r.0).map_err(|e| e.to_string()),
                Ok(4),
                "{ip}"
            );
        }
    }
}
