//! The receive ring: buffers with headroom and tailroom, and the recvmmsg headers over them,
//! built once. What each receive got is a [`RecvMeta`] per slot.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::sockopt::{Cmsg, SOL_UDP, UDP_GRO};

const CTRL_LEN: usize = std::mem::size_of::<Cmsg>();
/// Size of the address buffer handed to the kernel.
const NAME_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
/// The source recorded for an entry without a usable address.
const UNSPECIFIED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// What one receive put into a slot of a [`RecvRing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes received.
    pub len: usize,
    /// The size of the datagrams UDP GRO coalesced into the entry (the last may be shorter),
    /// or `len` for a single datagram.
    pub segment: usize,
    /// The source (the unspecified address for the rare entry without one, which callers
    /// drop).
    pub from: SocketAddr,
}

impl Default for RecvMeta {
    fn default() -> Self {
        Self {
            len: 0,
            segment: 0,
            from: UNSPECIFIED,
        }
    }
}

impl RecvMeta {
    /// The ranges of the datagrams in the entry: one, or GRO's segments.
    pub fn datagrams(self) -> impl Iterator<Item = std::ops::Range<usize>> {
        let seg = self.segment.max(1);
        (0..self.len)
            .step_by(seg)
            .map(move |at| at..(at + seg).min(self.len))
    }
}

/// Receive buffers together with their recvmmsg headers, built once. A receive then costs
/// the datagrams it returns, not the batch it could have returned: filling 64 headers and
/// zeroing 64 addresses on every call was about 5 % of the server's CPU at a load of one
/// datagram per wake-up (commit 4e416b6). quinn-udp builds its headers on every call, which
/// is why tern keeps its own.
///
/// Slot `i` is `headroom` spare bytes, room for one datagram of up to `max` bytes, and
/// `tailroom` spare bytes; a datagram received into it starts at `headroom`.
pub struct RecvRing {
    /// `count * stride` bytes from `Box::into_raw`; every access goes through this pointer.
    bufs: *mut u8,
    names: *mut libc::sockaddr_storage,
    iovecs: *mut libc::iovec,
    hdrs: *mut libc::mmsghdr,
    /// One control buffer per slot, for the UDP_GRO segment size.
    ctrls: *mut Cmsg,
    /// What the last receive into each slot got.
    meta: Vec<RecvMeta>,
    count: usize,
    stride: usize,
    headroom: usize,
    max: usize,
}

// SAFETY: the raw pointers address allocations the ring owns alone (the headers point only
// into the ring's own iovecs, addresses and buffers); they move with it and are freed with it.
unsafe impl Send for RecvRing {}

impl std::fmt::Debug for RecvRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvRing")
            .field("count", &self.count)
            .field("stride", &self.stride)
            .finish_non_exhaustive()
    }
}

/// A zeroed boxed slice of `n` values, as a raw pointer for `free_raw`.
///
/// # Safety
/// All-zero bytes must be a valid `T` (libc's plain-old-data structs).
unsafe fn raw_zeroed<T>(n: usize) -> *mut T {
    // SAFETY: per the contract.
    let v: Box<[T]> = (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
    Box::into_raw(v).cast()
}

/// Frees what `raw_zeroed::<T>(n)` (or a boxed slice of n `T`) returned.
///
/// # Safety
/// `p` came from `Box::into_raw` of a boxed slice of exactly `n` `T`s and is not used again.
unsafe fn free_raw<T>(p: *mut T, n: usize) {
    // SAFETY: per the contract.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)) });
}

impl RecvRing {
    /// `count` slots, each `headroom` spare bytes, room for a datagram of up to `max` bytes,
    /// and `tailroom` spare bytes.
    pub fn new(count: usize, headroom: usize, max: usize, tailroom: usize) -> Self {
        let stride = headroom + max + tailroom;
        let bufs: *mut u8 = Box::into_raw(vec![0u8; count * stride].into_boxed_slice()).cast();
        // SAFETY: all four are plain old data, valid as all zeroes.
        let (names, iovecs, hdrs, ctrls) = unsafe {
            (
                raw_zeroed::<libc::sockaddr_storage>(count),
                raw_zeroed::<libc::iovec>(count),
                raw_zeroed::<libc::mmsghdr>(count),
                raw_zeroed::<Cmsg>(count),
            )
        };
        for i in 0..count {
            // SAFETY: i < count, the length of each array; bufs holds count * stride bytes and
            // headroom + max <= stride.
            unsafe {
                *iovecs.add(i) = libc::iovec {
                    iov_base: bufs.add(i * stride + headroom).cast(),
                    iov_len: max,
                };
                let h = &mut (*hdrs.add(i)).msg_hdr;
                h.msg_name = names.add(i).cast();
                h.msg_namelen = NAME_LEN;
                h.msg_iov = iovecs.add(i);
                h.msg_iovlen = 1;
                h.msg_control = ctrls.add(i).cast();
                h.msg_controllen = CTRL_LEN;
            }
        }
        Self {
            bufs,
            names,
            iovecs,
            hdrs,
            ctrls,
            meta: vec![RecvMeta::default(); count],
            count,
            stride,
            headroom,
            max,
        }
    }

    /// Slot `i` whole: headroom, datagram room and tailroom.
    pub fn slot(&self, i: usize) -> &[u8] {
        assert!(i < self.count);
        // SAFETY: slot i lies inside the buffer allocation; the shared borrow of self keeps
        // recv (which takes &mut self) from writing it meanwhile.
        unsafe { std::slice::from_raw_parts(self.bufs.add(i * self.stride), self.stride) }
    }

    /// Slot `i` whole, writable (to frame a datagram in place).
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        assert!(i < self.count);
        // SAFETY: as in `slot`, and the exclusive borrow of self makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.bufs.add(i * self.stride), self.stride) }
    }

    /// The first `len` bytes of the datagram received into slot `i` (with GRO, an entry
    /// holds several datagrams; see [`RecvMeta::segment`]).
    pub fn datagram(&self, i: usize, len: usize) -> &[u8] {
        &self.slot(i)[self.headroom..self.headroom + len]
    }

    /// What the last receive into slot `i` got.
    #[inline]
    pub fn meta(&self, i: usize) -> RecvMeta {
        self.meta[i]
    }

    /// Everything the last receive put into slot `i`.
    pub fn received(&self, i: usize) -> &[u8] {
        self.datagram(i, self.meta[i].len)
    }

    /// The bytes before slot `i`'s datagram.
    pub fn headroom(&self) -> usize {
        self.headroom
    }

    /// Receives up to `room` datagrams from `fd` without blocking into slots `start..`,
    /// recording each one's [`RecvMeta`]; returns how many (0 when nothing is queued). With
    /// `batched` false, one recvfrom into slot `start` (the plain fallback, never used on a
    /// socket with GRO on).
    pub fn recv(
        &mut self,
        fd: BorrowedFd<'_>,
        start: usize,
        room: usize,
        batched: bool,
    ) -> io::Result<usize> {
        let fd = fd.as_raw_fd();
        let room = room.min(self.count.saturating_sub(start));
        if room == 0 {
            return Ok(0);
        }
        if !batched {
            let mut storage = zeroed_storage();
            let mut len = NAME_LEN;
            let (h, max) = (self.headroom, self.max);
            let data = &mut self.slot_mut(start)[h..h + max];
            // SAFETY: the buffer pointer and length describe the slot's datagram room;
            // storage and len live across the call and len holds storage's size.
            let r = unsafe {
                libc::recvfrom(
                    fd,
                    data.as_mut_ptr().cast(),
                    data.len(),
                    libc::MSG_DONTWAIT,
                    (&mut storage as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                )
            };
            if r < 0 {
                return would_block_is_none(io::Error::last_os_error());
            }
            self.meta[start] = RecvMeta {
                len: r as usize,
                segment: r as usize,
                from: from_storage(&storage).unwrap_or(UNSPECIFIED),
            };
            return Ok(1);
        }
        // SAFETY: start + room <= count, so the headers start..start + room exist; each
        // points at its own iovec (over its own slot's datagram room) and address, all owned
        // by the ring and alive across the call; msg_namelen holds the address size (set at
        // construction and restored after every receive below).
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.add(start),
                room as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return would_block_is_none(io::Error::last_os_error());
        }
        let r = r as usize;
        for j in 0..r {
            // SAFETY: start + j < start + room <= count; the kernel wrote this header's
            // msg_len and msg_namelen and the address (the storage was initialised at
            // construction, so a short write leaves it initialised).
            let (hdr, name) =
                unsafe { (&mut *self.hdrs.add(start + j), &*self.names.add(start + j)) };
            // A datagram without a usable address (none occur on AF_INET/6 sockets) becomes
            // an empty one from the unspecified address, which the core drops.
            let (len, from) = match (hdr.msg_hdr.msg_namelen > 0)
                .then(|| from_storage(name))
                .flatten()
            {
                Some(addr) => (hdr.msg_len as usize, addr),
                None => (0, UNSPECIFIED),
            };
            let segment = gro_segment(&hdr.msg_hdr).filter(|&s| s > 0).unwrap_or(len);
            self.meta[start + j] = RecvMeta { len, segment, from };
            hdr.msg_hdr.msg_namelen = NAME_LEN;
            hdr.msg_hdr.msg_controllen = CTRL_LEN;
        }
        Ok(r)
    }
}

impl Drop for RecvRing {
    fn drop(&mut self) {
        // SAFETY: each pointer came from Box::into_raw of a boxed slice of that length in
        // `new`, and is not used after this.
        unsafe {
            free_raw(self.hdrs, self.count);
            free_raw(self.ctrls, self.count);
            free_raw(self.iovecs, self.count);
            free_raw(self.names, self.count);
            free_raw(self.bufs, self.count * self.stride);
        }
    }
}

/// The UDP_GRO segment size in `hdr`'s control messages, if there is one.
fn gro_segment(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: msg_control points at the slot's control buffer and msg_controllen is what the
    // kernel wrote into it (at most CTRL_LEN); CMSG_FIRSTHDR/CMSG_NXTHDR stay within it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_UDP
                && (*c).cmsg_type == UDP_GRO
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(2) as usize
            {
                let data = libc::CMSG_DATA(c);
                return Some(if (*c).cmsg_len as usize >= libc::CMSG_LEN(4) as usize {
                    std::ptr::read_unaligned(data.cast::<libc::c_int>()) as usize
                } else {
                    usize::from(std::ptr::read_unaligned(data.cast::<u16>()))
                });
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

/// EAGAIN means nothing was queued: 0 datagrams, not an error.
fn would_block_is_none(e: io::Error) -> io::Result<usize> {
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(0)
    } else {
        Err(e)
    }
}

/// Kernel socket addresses. On the receive path, once per datagram: socket2's `SockAddr`
/// would copy the 128-byte storage first, so the conversion reads it in place.
/// Converts a kernel socket address to a `SocketAddr`.
pub(crate) fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `s`; returns its length.
pub(crate) fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (AF_UNSPEC) value.
    unsafe { std::mem::zeroed() }
}
