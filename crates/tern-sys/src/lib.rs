//! The system calls tern's server and load tools share.
//!
//! - [`Epoll`]: a level-triggered epoll set with typed interests ([`Interest`]) and
//!   `modify`, for datagram sockets now and stream connections next;
//! - [`Waker`]: an eventfd that wakes a thread blocked in [`Epoll::wait`].
//!
//! What is not on the per-packet path goes through [`rustix`], so it needs no `unsafe` here.

mod epoll;
mod wake;

pub use epoll::{Epoll, Interest, Ready};
pub use wake::Waker;
