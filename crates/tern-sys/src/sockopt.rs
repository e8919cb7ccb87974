//! The two UDP socket options neither rustix nor socket2 sets: UDP_SEGMENT (GSO) and UDP_GRO.

use std::os::fd::{AsRawFd, BorrowedFd};

/// The level of the UDP options and control messages.
pub(crate) const SOL_UDP: libc::c_int = 17;
/// The UDP_SEGMENT socket option and control message: UDP GSO (Linux 4.18+).
pub(crate) const UDP_SEGMENT: libc::c_int = 103;
/// The UDP_GRO socket option and control message (Linux 5.0+).
pub(crate) const UDP_GRO: libc::c_int = 104;
/// A control message buffer: room for one cmsghdr carrying an int (CMSG_SPACE(4) is 24,
/// CMSG_SPACE(2) for a segment size less), 8-byte aligned. One type for sending and
/// receiving.
pub(crate) type Cmsg = [u64; 4];

/// Sets the `SOL_UDP` option `option` to `value` on `fd`; whether the kernel took it.
pub(crate) fn set_udp_int(fd: BorrowedFd<'_>, option: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: setsockopt reads `value`, which lives across the call, for its size; `fd` is
    // borrowed, so open.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_UDP,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Asks the kernel to coalesce runs of datagrams from one source into one receive (UDP GRO),
/// reporting the segment size in a control message that [`crate::RecvRing::recv`] reads into
/// [`crate::RecvMeta::segment`]. Returns whether the kernel took it.
pub fn enable_gro(fd: BorrowedFd<'_>) -> bool {
    set_udp_int(fd, UDP_GRO, 1)
}
