//! The headers of one `sendmmsg`, built where they are sent: up to 64 messages, each a run of
//! datagrams to one destination (one iovec per datagram), with a UDP_SEGMENT control message
//! when the run has more than one. Only the entries used are written: zeroing the whole
//! arrays (16 KB) on every call cost more than the rest of the send.

use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use crate::sockopt::{Cmsg, SOL_UDP, UDP_SEGMENT};
use socket2::SockAddr;

/// Messages (and datagrams) in one `sendmmsg`.
pub(crate) const MAX: usize = 64;

/// Messages for one `sendmmsg`, borrowing their datagrams for `'a`.
pub(crate) struct SendHeaders<'a> {
    iovecs: [MaybeUninit<libc::iovec>; MAX],
    names: [MaybeUninit<libc::sockaddr_storage>; MAX],
    cmsgs: [MaybeUninit<Cmsg>; MAX],
    hdrs: [MaybeUninit<libc::mmsghdr>; MAX],
    /// Per message: first iovec, iovec count, address length, segment size.
    messages: [(usize, usize, libc::socklen_t, u16); MAX],
    iovs: usize,
    len: usize,
    _data: PhantomData<&'a [u8]>,
}

impl<'a> SendHeaders<'a> {
    pub fn new() -> Self {
        Self {
            iovecs: [const { MaybeUninit::uninit() }; MAX],
            names: [const { MaybeUninit::uninit() }; MAX],
            cmsgs: [const { MaybeUninit::uninit() }; MAX],
            hdrs: [const { MaybeUninit::uninit() }; MAX],
            messages: [(0, 0, 0, 0); MAX],
            iovs: 0,
            len: 0,
            _data: PhantomData,
        }
    }

    /// Adds a message of `datagrams` (one, or a GSO run of `segment`-byte datagrams) to `to`.
    /// Panics past 64 datagrams or messages.
    pub fn push(
        &mut self,
        datagrams: impl Iterator<Item = &'a [u8]>,
        to: SockAddr,
        segment: usize,
    ) {
        let first = self.iovs;
        for d in datagrams {
            self.iovecs[self.iovs].write(libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            });
            self.iovs += 1;
        }
        let name_len = to.len();
        self.names[self.len].write(to.as_storage());
        let count = self.iovs - first;
        self.messages[self.len] = (first, count, name_len, segment as u16);
        self.len += 1;
    }

    /// One `sendmmsg` of messages `from..` on `fd`; returns how many the kernel took.
    pub fn send(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        if from >= self.len {
            return Ok(0);
        }
        for m in from..self.len {
            let (first, count, name_len, segment) = self.messages[m];
            // SAFETY: mmsghdr is plain old data (integers and raw pointers); all zeroes is a
            // valid value of it.
            let hdr = &mut self.hdrs[m].write(unsafe { std::mem::zeroed() }).msg_hdr;
            hdr.msg_name = self.names[m].as_mut_ptr().cast();
            hdr.msg_namelen = name_len;
            // iovecs first..first + count were written by `push`.
            hdr.msg_iov = self.iovecs[first].as_mut_ptr();
            hdr.msg_iovlen = count;
            if count > 1 {
                let buf = self.cmsgs[m].write([0; 4]);
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
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
                }
            }
        }
        // SAFETY: headers from..len were initialised just above and point at initialised
        // iovecs over datagrams borrowed for 'a (the kernel only reads them), at initialised
        // addresses of the given lengths, and at control buffers holding one well-formed
        // UDP_SEGMENT cmsg or none; all live in `self`, which the &mut borrow holds in place
        // for the call.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs[from..self.len]
                    .as_mut_ptr()
                    .cast::<libc::mmsghdr>(),
                (self.len - from) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }
}
