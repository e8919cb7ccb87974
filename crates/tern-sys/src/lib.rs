//! The system calls tern's server and load tools share, in small modules; the only crate of
//! the workspace with `unsafe` (each block says why it is sound).
//!
//! - [`RecvRing`]: receive buffers with headroom and tailroom and their `recvmmsg` headers,
//!   built once; what each receive got is a [`RecvMeta`] (length, GRO segment size, source).
//! - [`send_many`]: many datagrams to many destinations in one `sendmmsg`, runs to one
//!   destination as UDP GSO sends, with each socket's own [`Gso`] state; [`send_to`] for one.
//! - [`enable_gro`]: UDP GRO on a receiving socket.
//! - [`Epoll`] (with [`Interest`] and [`Ready`]) and [`Waker`] (an eventfd), the open-file
//!   limit and the timer slack: not on the per-packet path, so through rustix.
//!
//! The ring and the multi-destination send are tern's own rather than quinn-udp's: quinn-udp
//! builds its `recvmmsg` headers on every call, which was about 5 % of tern's CPU at one
//! datagram per wake-up when tern did the same (commit 4e416b6, the README's Performance
//! section), and it sends to one destination per call, where tern's worker sends one batch
//! to many clients in one `sendmmsg` (see the `send` module).

mod epoll;
mod errqueue;
mod limits;
mod mmsg;
mod ring;
mod send;
mod sockopt;
mod wake;

pub use epoll::{Epoll, Interest, Ready};
pub use errqueue::{drain_icmp_errors, enable_icmp_errors, is_icmp_report, IcmpErrors};
pub use limits::{clock_ticks_per_second, precise_timers, raise_nofile_limit};
pub use ring::{RecvMeta, RecvRing};
pub use send::{send_many, send_to, Gso, SendReport};
pub use sockopt::enable_gro;
pub use wake::Waker;
