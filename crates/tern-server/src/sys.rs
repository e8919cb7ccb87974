//! The one module with `unsafe`: the system calls the standard library does not wrap
//! (recvmmsg, sendmmsg, the open-file limit), each in a small safe function whose
//! invariant is written next to its `unsafe` block. Epoll and the eventfd are in tern-sys.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Raises the soft `RLIMIT_NOFILE` to at least `wanted` (bounded by the hard limit);
/// returns the soft limit in force afterwards.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn raise_nofile_limit(wanted: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; RLIMIT_NOFILE is a valid resource.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur as u64 >= wanted {
        return lim.rlim_cur as u64;
    }
    let new = libc::rlimit {
        rlim_cur: (wanted as libc::rlim_t).min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own and only raises the soft limit within the hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
        new.rlim_cur as u64
    } else {
        lim.rlim_cur as u64
    }
}

/// Converts a kernel socket address to a `SocketAddr`.
fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
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
fn to_storage(addr: SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let out =
                unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = a.port().to_be();
            out.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let out =
                unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_flowinfo = a.flowinfo();
            out.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            out.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (AF_UNSPEC) value.
    unsafe { std::mem::zeroed() }
}

/// Receive buffers together with their recvmmsg headers, built once. A receive then costs
/// the datagrams it returns, not the batch it could have returned: filling 64 headers and
/// zeroing 64 addresses on every call was about 5 % of the server's CPU at a load of one
/// datagram per wake-up.
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

    /// The `len` bytes of the datagram received into slot `i`.
    pub fn datagram(&self, i: usize, len: usize) -> &[u8] {
        &self.slot(i)[self.headroom..self.headroom + len]
    }

    /// Receives up to `room` datagrams from `fd` without blocking into slots `start..`,
    /// filling `lens`, `segs` and `from` for those received; returns how many (0 when nothing
    /// is queued). `segs[j]` is the size of the datagrams that the kernel coalesced into
    /// entry j (UDP_GRO, see [`enable_gro`]; the last may be shorter), or `lens[j]` for a
    /// single datagram. With `batched` false, one recvfrom into slot `start` (the plain
    /// fallback, never used on a socket with GRO on).
    #[allow(clippy::too_many_arguments)]
    pub fn recv(
        &mut self,
        fd: RawFd,
        start: usize,
        room: usize,
        batched: bool,
        lens: &mut [usize],
        segs: &mut [usize],
        from: &mut [SocketAddr],
    ) -> io::Result<usize> {
        let room = room
            .min(self.count.saturating_sub(start))
            .min(lens.len())
            .min(segs.len())
            .min(from.len());
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
            lens[0] = r as usize;
            segs[0] = r as usize;
            from[0] = from_storage(&storage).unwrap_or(UNSPECIFIED);
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
            match (hdr.msg_hdr.msg_namelen > 0)
                .then(|| from_storage(name))
                .flatten()
            {
                Some(addr) => {
                    lens[j] = hdr.msg_len as usize;
                    from[j] = addr;
                }
                None => {
                    lens[j] = 0;
                    from[j] = UNSPECIFIED;
                }
            }
            segs[j] = gro_segment(&hdr.msg_hdr)
                .filter(|&s| s > 0)
                .unwrap_or(lens[j]);
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

/// A control buffer: room for one cmsghdr carrying an int (CMSG_SPACE(4) is 24), 8-byte
/// aligned.
type Cmsg = [u64; 4];
const CTRL_LEN: usize = std::mem::size_of::<Cmsg>();
/// The UDP_GRO socket option and control message (Linux 5.0+).
const UDP_GRO: libc::c_int = 104;

/// Asks the kernel to coalesce runs of datagrams from one source into one receive (UDP GRO),
/// reporting the segment size in a control message that [`RecvRing::recv`] reads. Returns
/// whether the kernel took it.
pub fn enable_gro(fd: RawFd) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `one`, which lives across the call, for its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            SOL_UDP,
            UDP_GRO,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
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

/// Size of the address buffer handed to the kernel.
const NAME_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
const UNSPECIFIED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// EAGAIN means nothing was queued: 0 datagrams, not an error.
fn would_block_is_none(e: io::Error) -> io::Result<usize> {
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(0)
    } else {
        Err(e)
    }
}

/// Sends `data` to `to` from `fd` without blocking. A full socket buffer drops the datagram,
/// as the network would; that is not an error.
pub fn send_to(fd: RawFd, data: &[u8], to: SocketAddr) -> io::Result<()> {
    let mut storage = zeroed_storage();
    let len = to_storage(to, &mut storage);
    // SAFETY: data describes a live buffer; storage holds a valid address of length len.
    let r = unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT,
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock {
            return Err(e);
        }
    }
    Ok(())
}

/// `setsockopt`/cmsg level and option for UDP generic segmentation offload (Linux 4.18+).
const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
/// Most segments in one GSO send (the kernel's UDP_MAX_SEGMENTS is at least this).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send (one UDP datagram's worth).
const GSO_MAX_BYTES: usize = 65_000;

/// Whether UDP GSO is used: probed once, turned off for good if the kernel refuses a send.
static GSO: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(GSO_UNKNOWN);
const GSO_UNKNOWN: u8 = 0;
const GSO_ON: u8 = 1;
const GSO_OFF: u8 = 2;

/// Whether the kernel takes UDP_SEGMENT on `fd`'s kind of socket.
fn gso_enabled(fd: RawFd) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match GSO.load(Relaxed) {
        GSO_ON => true,
        GSO_OFF => false,
        _ => {
            let zero: libc::c_int = 0;
            // SAFETY: setsockopt reads `zero`, which lives across the call, for its size.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    SOL_UDP,
                    UDP_SEGMENT,
                    (&zero as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            let on = r == 0;
            GSO.store(if on { GSO_ON } else { GSO_OFF }, Relaxed);
            on
        }
    }
}

/// Turns GSO off (used by tests to compare both paths, and after the kernel refused it).
pub fn disable_gso() {
    GSO.store(GSO_OFF, std::sync::atomic::Ordering::Relaxed);
}

/// The datagrams of a [`send_many`] that the kernel refused (no route, an address of the
/// wrong family, ...): each is lost, and the others were still sent. A full socket buffer is
/// not a refusal.
#[derive(Debug, Default)]
pub struct Refused {
    /// Datagrams refused.
    pub datagrams: u64,
    /// The error of the last refusal, for the log.
    pub last: Option<io::Error>,
}

impl Refused {
    fn add(&mut self, datagrams: usize, error: io::Error) {
        self.datagrams += datagrams as u64;
        self.last = Some(error);
    }

    fn send_to(&mut self, fd: RawFd, data: &[u8], to: SocketAddr) {
        if let Err(e) = send_to(fd, data, to) {
            self.add(1, e);
        }
    }
}

/// Sends each `(data, to)` from `fd`. Batched: one sendmmsg per 64 datagrams, and within it
/// consecutive datagrams to the same destination with the same length (the last may be
/// shorter) go as one UDP GSO send, which the kernel splits into the same datagrams after
/// a single pass through the stack. Plain: one sendto each. Datagrams the kernel does not
/// take at once are dropped, as the network would; those it refuses are skipped (the rest
/// still go) and counted in the result.
pub fn send_many<'a>(
    fd: RawFd,
    msgs: impl Iterator<Item = (&'a [u8], SocketAddr)>,
    batched: bool,
) -> Refused {
    const MAX: usize = 64;
    let mut refused = Refused::default();
    if !batched {
        for (data, to) in msgs {
            refused.send_to(fd, data, to);
        }
        return refused;
    }
    let mut msgs = msgs.peekable();
    let Some(first) = msgs.next() else {
        return refused;
    };
    if msgs.peek().is_none() {
        // One datagram (the common case at light load): sendto spares the kernel the
        // message-header copies of sendmmsg.
        refused.send_to(fd, first.0, first.1);
        return refused;
    }
    let gso = gso_enabled(fd);
    let mut pending: [(&[u8], SocketAddr); MAX] = [(&[], UNSPECIFIED); MAX];
    pending[0] = first;
    let mut n = 1;
    loop {
        for m in msgs.by_ref().take(MAX - n) {
            pending[n] = m;
            n += 1;
        }
        send_chunk(fd, &pending[..n], gso, &mut refused);
        if msgs.peek().is_none() {
            return refused;
        }
        n = 0;
    }
}

/// One sendmmsg for up to 64 datagrams, grouped for GSO when `gso`.
fn send_chunk(fd: RawFd, msgs: &[(&[u8], SocketAddr)], gso: bool, refused: &mut Refused) {
    const MAX: usize = 64;
    // Space for one cmsghdr carrying a u16, as CMSG_SPACE(2) says, 8-byte aligned.
    type Cmsg = [u64; 4];
    let msgs = &msgs[..msgs.len().min(MAX)];
    // Entries are written as they are used (the first msgs.len() iovecs, the first h of the
    // rest): zeroing the whole arrays (16 KB) on every call cost more than the rest of this
    // function.
    let mut storages = [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; MAX];
    let mut iovecs = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX];
    let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX];
    let mut cmsgs = [const { MaybeUninit::<Cmsg>::uninit() }; MAX];
    // (first datagram, datagrams) of each header, to resend one by one if GSO is refused.
    let mut groups = [const { MaybeUninit::<(usize, usize)>::uninit() }; MAX];
    for (i, (data, _)) in msgs.iter().enumerate() {
        iovecs[i].write(libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        });
    }
    let mut h = 0;
    let mut i = 0;
    while i < msgs.len() {
        let (first, to) = msgs[i];
        let size = first.len();
        let mut j = i + 1;
        let mut bytes = size;
        if gso && size > 0 {
            while j < msgs.len()
                && j - i < GSO_MAX_SEGMENTS
                && msgs[j].1 == to
                && msgs[j - 1].0.len() == size
                && !msgs[j].0.is_empty()
                && msgs[j].0.len() <= size
                && bytes + msgs[j].0.len() <= GSO_MAX_BYTES
            {
                bytes += msgs[j].0.len();
                j += 1;
            }
        }
        let storage = storages[h].write(zeroed_storage());
        let len = to_storage(to, storage);
        // SAFETY: mmsghdr is plain old data (integers and raw pointers); all zeros is a valid
        // value of it.
        let hdr = &mut hdrs[h].write(unsafe { std::mem::zeroed() }).msg_hdr;
        hdr.msg_name = (storage as *mut libc::sockaddr_storage).cast();
        hdr.msg_namelen = len;
        // The iovecs i..j were initialised above (j <= msgs.len()).
        hdr.msg_iov = iovecs[i].as_mut_ptr();
        hdr.msg_iovlen = j - i;
        if j - i > 1 {
            let buf = cmsgs[h].write([0; 4]);
            hdr.msg_control = buf.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE is a pure computation on a length.
            hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
            // SAFETY: msg_control points at `buf`, which is CMSG_SPACE(2) bytes or more and
            // 8-byte aligned, so CMSG_FIRSTHDR returns a pointer into it and CMSG_DATA one
            // with room for the u16 written.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(hdr);
                (*c).cmsg_level = SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size as u16);
            }
        }
        groups[h].write((i, j - i));
        h += 1;
        i = j;
    }
    let mut sent = 0;
    while sent < h {
        // SAFETY: headers sent..h are initialised and point at initialised iovecs over
        // buffers that outlive the call (the kernel only reads them), at initialised
        // addresses of the given lengths, and at control buffers holding one well-formed
        // UDP_SEGMENT cmsg or none.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs[sent..h].as_mut_ptr().cast::<libc::mmsghdr>(),
                (h - sent) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r >= 0 {
            sent += r as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => break,
            io::ErrorKind::Interrupted => continue,
            _ => {
                // SAFETY: sent < h, and groups 0..h were written above.
                let (first, count) = unsafe { groups[sent].assume_init() };
                if count > 1 && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) {
                    // The kernel or the route refuses GSO: stop using it, send these plainly.
                    disable_gso();
                    for (data, to) in &msgs[first..first + count] {
                        refused.send_to(fd, data, *to);
                    }
                } else {
                    // The kernel refuses these datagrams (e.g. no route): skip them.
                    refused.add(count, e);
                }
                sent += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn pair() -> (UdpSocket, [UdpSocket; 2]) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let txs = [(); 2].map(|_| UdpSocket::bind("127.0.0.1:0").unwrap());
        (rx, txs)
    }

    /// Waits until `n` datagrams are queued on `fd` (loopback delivery is synchronous, but
    /// be safe), by peeking.
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
            let mut lens = [0usize; 8];
            let mut segs = [0usize; 8];
            let mut from = [UNSPECIFIED; 8];
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
                    let n = ring
                        .recv(
                            rx.as_raw_fd(),
                            slot,
                            8 - slot,
                            batched,
                            &mut lens,
                            &mut segs,
                            &mut from,
                        )
                        .unwrap();
                    assert!(n > 0, "queued datagrams not received");
                    for j in 0..n {
                        assert_eq!(segs[j], lens[j], "one datagram per entry without GRO");
                        got.push((ring.datagram(slot + j, lens[j]).to_vec(), from[j]));
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
                let n = ring
                    .recv(
                        rx.as_raw_fd(),
                        0,
                        8,
                        batched,
                        &mut lens,
                        &mut segs,
                        &mut from,
                    )
                    .unwrap();
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
        let mut lens = [0usize; 8];
        let mut segs = [0usize; 8];
        let mut from = [UNSPECIFIED; 8];
        assert_eq!(
            ring.recv(rx.as_raw_fd(), 4, 8, true, &mut lens, &mut segs, &mut from)
                .unwrap(),
            0
        );
        assert_eq!(
            ring.recv(rx.as_raw_fd(), 3, 8, true, &mut lens, &mut segs, &mut from)
                .unwrap(),
            1
        );
        assert_eq!(
            (ring.datagram(3, lens[0]), from[0]),
            (&b"x"[..], txs[0].local_addr().unwrap())
        );
    }

    #[test]
    fn send_many_sends_one_or_many_in_order() {
        for batched in [true, false] {
            let (rx, txs) = pair();
            let to = rx.local_addr().unwrap();
            rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            for count in [1usize, 2, 70] {
                let data: Vec<Vec<u8>> = (0..count).map(|k| vec![k as u8; 50]).collect();
                let refused = send_many(
                    txs[0].as_raw_fd(),
                    data.iter().map(|d| (&d[..], to)),
                    batched,
                );
                assert_eq!(refused.datagrams, 0, "{:?}", refused.last);
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
            let refused = send_many(txs[0].as_raw_fd(), msgs.into_iter(), batched);
            assert_eq!(refused.datagrams, 2, "batched {batched}");
            assert!(refused.last.is_some());
            let mut b = [0u8; 8];
            for want in [&b"a"[..], b"ddd"] {
                let (n, _) = rx.recv_from(&mut b).unwrap();
                assert_eq!(&b[..n], want);
            }
        }
    }

    #[test]
    fn gro_coalesces_a_gso_burst_and_reports_its_segment_size() {
        let (rx, txs) = pair();
        let to = rx.local_addr().unwrap();
        if !enable_gro(rx.as_raw_fd()) {
            eprintln!("kernel without UDP_GRO: nothing to test");
            return;
        }
        // Five 100-byte datagrams and a 40-byte one, all to one destination: one GSO send.
        let data: Vec<Vec<u8>> = (0..6u8)
            .map(|k| vec![k; if k == 5 { 40 } else { 100 }])
            .collect();
        let refused = send_many(txs[0].as_raw_fd(), data.iter().map(|d| (&d[..], to)), true);
        assert_eq!(refused.datagrams, 0, "{:?}", refused.last);
        settle(&rx);
        let mut ring = RecvRing::new(8, 4, 65_535, 0);
        let (mut lens, mut segs, mut from) = ([0usize; 8], [0usize; 8], [UNSPECIFIED; 8]);
        let mut got = Vec::new();
        while got.len() < data.len() {
            let n = ring
                .recv(rx.as_raw_fd(), 0, 8, true, &mut lens, &mut segs, &mut from)
                .unwrap();
            assert!(n > 0, "queued datagrams not received");
            for j in 0..n {
                assert_eq!(from[j], txs[0].local_addr().unwrap());
                let all = ring.datagram(j, lens[j]);
                got.extend(all.chunks(segs[j]).map(<[u8]>::to_vec));
            }
        }
        assert_eq!(got, data);
        // The kernel took UDP_GRO, so the burst came as one entry, not six.
        assert_eq!((lens[0], segs[0]), (540, 100), "GSO burst not coalesced");
    }
}
