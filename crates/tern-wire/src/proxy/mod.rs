//! The PROXY protocol header a load balancer puts in front of a TCP connection (HAProxy's
//! "The PROXY protocol, versions 1 & 2", `doc/proxy-protocol.txt`): the human-readable
//! version 1 line and the binary version 2 block.
//!
//! On a listener configured for it, the first bytes of every connection are this header, and
//! the address it carries, not the socket's peer, is the client that authentication, quotas,
//! logs and the 5-tuple see. A connection whose header is missing or malformed is closed: the
//! specification forbids guessing whether a header is there, since that would let anyone who
//! can reach the port spoof their address.
//!
//! [`decode_header`] looks at the bytes received so far and says whether a whole header is at
//! the front, how many more bytes it needs at least, or why the connection must be closed. It
//! is a pure function: no allocation, no copy, no state, no I/O. Each error is reported as soon
//! as the bytes that decide it are in: a connection that does not start with `PROXY ` or the
//! version 2 signature is refused on its first wrong byte.
//!
//! ```
//! use tern_wire::proxy::{self, Command, Decoded, Limits, Version};
//!
//! let mut conn = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 3478\r\n".to_vec();
//! conn.extend_from_slice(&[0x00, 0x01]); // the first STUN message starts here
//!
//! // A read that ends inside the header: wait for more.
//! assert!(matches!(proxy::decode_header(&conn[..20], Limits::default()), Ok(Decoded::NeedMore { .. })));
//!
//! let Ok(Decoded::Header(header)) = proxy::decode_header(&conn, Limits::default()) else {
//!     panic!("a whole header");
//! };
//! assert_eq!(header.version, Version::V1);
//! assert_eq!(header.command, Command::Proxy);
//! let client = header.addresses.expect("TCP4 carries addresses").source;
//! assert_eq!(client, "203.0.113.7:51000".parse().unwrap());
//! conn.drain(..header.consumed); // the TURN stream follows
//! assert_eq!(conn, [0x00, 0x01]);
//! ```
//!
//! What is not checked: a version 2 header's TLVs are walked so that one running past the
//! header is refused, but their contents are not read (a `PP2_TYPE_CRC32C` checksum is not
//! verified); [`ProxyHeader::tlvs`] says where they lie for a caller that wants them.

mod error;
mod v1;
mod v2;

use std::net::SocketAddr;
use std::ops::Range;

pub use error::ProxyError;

/// The longest version 1 line, CRLF included (the specification's worst case,
/// `PROXY UNKNOWN` followed by two full IPv6 addresses and two ports).
pub const V1_MAX_LEN: usize = 107;

/// The shortest version 1 line, `PROXY UNKNOWN\r\n`, and so the shortest header of either
/// version.
pub const V1_MIN_LEN: usize = 15;

/// The 12 bytes every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The fixed part of a version 2 header: signature, version and command, family and
/// transport, and the length of what follows.
pub const V2_FIXED_LEN: usize = 16;

/// The default for [`Limits::max_v2_len`]: 4,096 bytes.
///
/// The largest address block (AF_UNIX, 216 bytes) and the TLVs load balancers add (ALPN,
/// the SNI, a unique ID of up to 128 bytes, TLS details, a cloud endpoint ID) fit with room
/// to spare, while a connection cannot make the listener buffer the 65,551 bytes the length
/// field allows.
pub const DEFAULT_MAX_V2_LEN: usize = 4_096;

/// Bounds on what a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest version 2 header accepted, its 16 fixed bytes included. A longer length
    /// field is refused with [`ProxyError::V2TooLong`] as soon as the 16 bytes are in.
    /// Version 1 lines are bounded by the specification ([`V1_MAX_LEN`]).
    pub max_v2_len: usize,
}

impl Default for Limits {
    /// [`DEFAULT_MAX_V2_LEN`].
    fn default() -> Self {
        Self {
            max_v2_len: DEFAULT_MAX_V2_LEN,
        }
    }
}

/// Which version of the protocol the header is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The text line, `PROXY ...\r\n`.
    V1,
    /// The binary block after [`V2_SIGNATURE`].
    V2,
}

/// What the proxy says the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Version 2 `LOCAL`: the proxy opened the connection for itself, typically a health
    /// check. Use the connection's real endpoints; the address block is ignored.
    Local,
    /// Relayed on behalf of a client: version 1 always, version 2 `PROXY`.
    Proxy,
}

/// The address family the proxy names (version 2's high nibble of byte 14; version 1's
/// `TCP4`, `TCP6` or `UNKNOWN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `AF_UNSPEC`, version 1 `UNKNOWN`, and every `LOCAL` header (whose family is ignored).
    Unspecified,
    /// `AF_INET`, version 1 `TCP4`.
    Inet,
    /// `AF_INET6`, version 1 `TCP6`.
    Inet6,
    /// `AF_UNIX`: the addresses are paths, not IP addresses, and are not returned.
    Unix,
}

/// The transport the proxy names (version 2's low nibble of byte 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `UNSPEC`, version 1 `UNKNOWN`, and every `LOCAL` header.
    Unspecified,
    /// `STREAM` (TCP), version 1 `TCP4` and `TCP6`.
    Stream,
    /// `DGRAM` (UDP).
    Datagram,
}

/// The original connection's endpoints, as the proxy saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Addresses {
    /// The client: whoever connected to the proxy. This is the address tern treats as the
    /// connection's peer.
    pub source: SocketAddr,
    /// The address the client connected to, on the proxy.
    pub destination: SocketAddr,
}

/// A whole, valid header at the front of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Version 1 or 2.
    pub version: Version,
    /// `LOCAL` or `PROXY`.
    pub command: Command,
    /// The family named, [`Family::Unspecified`] for `LOCAL`.
    pub family: Family,
    /// The transport named, [`Transport::Unspecified`] for `LOCAL`.
    pub transport: Transport,
    /// The client and the address it connected to: present for a `PROXY` header over
    /// IPv4 or IPv6 with a stream or datagram transport. `None` means the proxy gave no IP
    /// endpoints (`LOCAL`, `UNKNOWN`, `AF_UNSPEC`, `UNSPEC` transport, `AF_UNIX`); the
    /// specification has the receiver use the connection's real endpoints then, or refuse it.
    /// An IPv4-mapped IPv6 address is returned as the proxy wrote it.
    pub addresses: Option<Addresses>,
    /// Bytes the header occupies: remove this many from the front of the buffer; what follows
    /// is the proxied stream.
    pub consumed: usize,
    /// Where a version 2 header's TLVs lie in the decoded buffer (empty for version 1, for
    /// `LOCAL`, and for `AF_UNSPEC`, whose block is opaque). Each was checked to fit.
    pub tlvs: Range<usize>,
}

/// What [`decode_header`] found at the front of a buffer that breaks no rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole header.
    Header(ProxyHeader),
    /// The header is not complete: at least `missing` more bytes must arrive before it can
    /// be. An empty buffer needs [`V1_MIN_LEN`], the shortest header.
    NeedMore {
        /// A lower bound on the bytes still to arrive; exact for version 2 once its 16 fixed
        /// bytes are in.
        missing: usize,
    },
}

/// Looks at the first bytes received on a connection, `buf`, and returns the whole PROXY
/// header at its front, how many more bytes it needs at least, or why the connection must be
/// closed.
///
/// The first byte picks the version: `P` for version 1, `\r` for version 2; anything else is
/// [`ProxyError::NotProxy`]. Every rule is checked as soon as the bytes it needs are in, so a
/// prefix of a valid header is never refused and a broken one is refused without waiting for
/// more. Version 1's fields are read once the CRLF is in, as the specification asks.
pub fn decode_header(buf: &[u8], limits: Limits) -> Result<Decoded, ProxyError> {
    match buf.first() {
        None => Ok(Decoded::NeedMore {
            missing: V1_MIN_LEN,
        }),
        Some(b'P') => v1::decode(buf),
        Some(&b) if b == V2_SIGNATURE[0] => v2::decode(buf, limits),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

/// Whether `buf` agrees with `expected` on the bytes both have.
fn agrees_with(buf: &[u8], expected: &[u8]) -> bool {
    let n = buf.len().min(expected.len());
    buf[..n] == expected[..n]
}
