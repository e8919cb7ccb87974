//! What a worker's epoll event is about, as a typed token encoded into the event's `u64`:
//! the kind in the top byte, its id below. The relay port is one field of a relay's token,
//! never the token itself.

use tern_proto::{ConnId, Family, ListenerId, RelayEndpoint};

/// The source of an epoll event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    /// The worker's eventfd: commands (drain, reload) or stop.
    Wake,
    /// A UDP listening socket.
    Listener(ListenerId),
    /// The socket of a relayed endpoint.
    Relay(RelayEndpoint),
    /// A stream connection (TCP, later TLS).
    Conn(ConnId),
    /// A TCP listening socket, by its position in the worker's list.
    TcpListener(u32),
}

const KIND_SHIFT: u32 = 56;
const ID_MASK: u64 = (1 << KIND_SHIFT) - 1;
// Kind 0 is no token, so a zeroed event never decodes.
const WAKE: u64 = 1;
const LISTENER: u64 = 2;
const RELAY: u64 = 3;
const CONN: u64 = 4;
const TCP_LISTENER: u64 = 5;

impl Token {
    /// The `u64` epoll carries.
    pub fn encode(self) -> u64 {
        let (kind, id) = match self {
            Self::Wake => (WAKE, 0),
            Self::Listener(l) => (LISTENER, u64::from(l.0)),
            Self::Relay(r) => (RELAY, (r.family.index() as u64) << 16 | u64::from(r.port)),
            Self::Conn(c) => (CONN, u64::from(c.0)),
            Self::TcpListener(i) => (TCP_LISTENER, u64::from(i)),
        };
        kind << KIND_SHIFT | id
    }

    /// The token `encode` made `value` from, if it is one.
    #[inline]
    pub fn decode(value: u64) -> Option<Self> {
        let id = value & ID_MASK;
        let small = u32::try_from(id).ok();
        Some(match value >> KIND_SHIFT {
            WAKE if id == 0 => Self::Wake,
            LISTENER => Self::Listener(ListenerId(small?)),
            RELAY => Self::Relay(RelayEndpoint {
                family: *Family::ALL.get(usize::try_from(id >> 16).ok()?)?,
                port: id as u16,
            }),
            CONN => Self::Conn(ConnId(small?)),
            TCP_LISTENER => Self::TcpListener(small?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_round_trips_and_junk_does_not_decode() {
        let tokens = [
            Token::Wake,
            Token::Listener(ListenerId(0)),
            Token::Listener(ListenerId(u32::MAX)),
            Token::Relay(RelayEndpoint {
                family: Family::V4,
                port: 0,
            }),
            Token::Relay(RelayEndpoint {
                family: Family::V6,
                port: u16::MAX,
            }),
            Token::Conn(ConnId(7)),
            Token::TcpListener(0),
            Token::TcpListener(3),
        ];
        for t in tokens {
            assert_eq!(Token::decode(t.encode()), Some(t), "{t:?}");
        }
        let distinct: std::collections::BTreeSet<u64> = tokens.iter().map(|t| t.encode()).collect();
        assert_eq!(distinct.len(), tokens.len());
        for junk in [
            0,
            1,
            49152,
            u64::MAX,
            9 << KIND_SHIFT,
            RELAY << KIND_SHIFT | 2 << 16,
        ] {
            assert_eq!(Token::decode(junk), None, "{junk:#x}");
        }
    }
}
