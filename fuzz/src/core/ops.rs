//! The operations a `core` input is made of, read from and written to the byte format of
//! [`crate::input`].

use crate::input::{Reader, Writer};

/// Most operations run per input; the rest of a longer input is ignored.
pub const MAX_OPS: usize = 256;

/// Most attributes a built request carries besides the credentials.
pub const MAX_ATTRS: u8 = 12;

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A datagram from a client, as is.
    Raw {
        /// Which client (taken modulo the number of clients).
        client: u8,
        /// The datagram.
        data: Vec<u8>,
    },
    /// A STUN message from a client, built and signed as a client would.
    Request(Request),
    /// A ChannelData message from a client.
    ChannelData {
        /// Which client.
        client: u8,
        /// The channel number.
        channel: u16,
        /// The length field; `None` for the payload's length.
        declared: Option<u16>,
        /// The application data.
        payload: Vec<u8>,
        /// Bytes of padding after it (0 to 3).
        padding: u8,
    },
    /// A datagram from a peer to a relayed endpoint.
    Peer {
        /// Below 0x80: the relay port of client `port` modulo the clients, the victim
        /// included, if it holds one; otherwise the pool's first port plus `port & 0x7F`,
        /// which may be held or not, or outside the pool.
        port: u8,
        /// Which peer (modulo the table of peers).
        peer: u8,
        /// Bit 0: the worker for a port nobody holds. Bit 1: the other address family,
        /// which has no relay ports.
        flags: u8,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Both clocks move forward (modulo 2,048 seconds).
    Advance {
        /// Seconds.
        secs: u16,
    },
    /// The wall clock alone moves, forward or back (an NTP step).
    Wall {
        /// Seconds.
        delta: i16,
    },
    /// A stream client's connection closes (nothing for a UDP client).
    Close {
        /// Which client.
        client: u8,
    },
    /// The workers start draining; bit 0 says whether with an alternate server.
    Drain {
        /// With an alternate server.
        alternate: bool,
    },
    /// The credentials are reloaded with one of four sets.
    Reload {
        /// Which set (modulo 4).
        set: u8,
    },
    /// An operator revokes allocations on every worker, as `tern revoke` does.
    Revoke {
        /// Modulo 4: the user of client `client` (the username of its allocation, else of
        /// credential `client`), that user's REST `<name>`, the handle of its allocation (else
        /// of one that ended), its client IP.
        selector: u8,
        /// Which client (modulo the clients; modulo the credentials for a username).
        client: u8,
        /// The refusal period in seconds, modulo 2,048; 0 for none.
        for_secs: u16,
    },
    /// An operator lists one worker's sessions, page by page.
    Sessions {
        /// Which worker (modulo 2).
        worker: u8,
        /// Bit 0: by the user of client `client` (as for [`Op::Revoke`]); bit 1: its REST
        /// `<name>`; bit 2: by client `client`'s IP.
        filter: u8,
        /// Which client.
        client: u8,
        /// Records per page, modulo 8 (0 lists nothing and says whether any match).
        limit: u8,
        /// Modulo 3: from the start, after client `client`'s allocation (else one that
        /// ended), after the last allocation that ended on the worker.
        cursor: u8,
    },
}

/// A STUN message a client builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Which client.
    pub client: u8,
    /// The method (12 bits).
    pub method: u16,
    /// The class: 0 request, 1 indication, 2 success, 3 error.
    pub class: u8,
    /// Reuse the client's previous transaction id (a retransmission) instead of a fresh one.
    pub same_tid: bool,
    /// The attributes, before the credentials.
    pub attrs: Vec<Attr>,
    /// Bits 0–1: MESSAGE-INTEGRITY (1), MESSAGE-INTEGRITY-SHA256 (2), both (3), none (0).
    /// Bit 2: leave out USERNAME. Bit 3: leave out REALM. Bit 4: an attribute after the
    /// integrity. Bits 5–6: FINGERPRINT none (0), valid (1, 3), corrupt (2). Bit 7: write
    /// USERNAME, REALM and NONCE even without integrity.
    pub auth: u8,
    /// Whose username (modulo the table of credentials).
    pub cred: u8,
    /// 0: sign with that credential's key; n: with the key of credential n - 1.
    pub key: u8,
    /// 0: the nonce the client holds; 1: none; 2: the nonce another client holds; 3: `raw_nonce`.
    pub nonce: u8,
    /// The NONCE value when `nonce` is 3.
    pub raw_nonce: Vec<u8>,
}

/// An attribute of a built message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    /// XOR-PEER-ADDRESS of a peer of the table.
    Peer(u8),
    /// XOR-PEER-ADDRESS of any address.
    Address {
        /// IPv6 (else IPv4, from the first 4 bytes of `ip`).
        v6: bool,
        /// The port.
        port: u16,
        /// The address bytes.
        ip: [u8; 16],
    },
    /// LIFETIME.
    Lifetime(u32),
    /// REQUESTED-TRANSPORT with this protocol number.
    Transport(u8),
    /// CHANNEL-NUMBER.
    Channel(u16),
    /// EVEN-PORT with this flags byte (0x80: reserve the next port).
    EvenPort(u8),
    /// RESERVATION-TOKEN: one the server handed out (by rank), or eight copies of the byte
    /// when none was.
    Token(u8),
    /// REQUESTED-ADDRESS-FAMILY with this family byte.
    Family(u8),
    /// ADDITIONAL-ADDRESS-FAMILY with this family byte.
    AdditionalFamily(u8),
    /// DONT-FRAGMENT.
    DontFragment,
    /// DATA.
    Data(Vec<u8>),
    /// Any attribute.
    Raw(u16, Vec<u8>),
}

impl Op {
    /// Reads one operation; any bytes make one.
    pub fn read(r: &mut Reader<'_>) -> Op {
        match r.u8() % 11 {
            0 => Op::Raw {
                client: r.u8(),
                data: r.bytes().to_vec(),
            },
            1 => Op::Request(Request::read(r)),
            2 => {
                let client = r.u8();
                let channel = r.u16();
                let declared = match r.u8() {
                    0 => Some(r.u16()),
                    _ => None,
                };
                Op::ChannelData {
                    client,
                    channel,
                    declared,
                    payload: r.bytes().to_vec(),
                    padding: r.u8() % 4,
                }
            }
            3 => Op::Peer {
                port: r.u8(),
                peer: r.u8(),
                flags: r.u8(),
                payload: r.bytes().to_vec(),
            },
            4 => Op::Advance { secs: r.u16() },
            5 => Op::Wall {
                delta: r.u16() as i16,
            },
            6 => Op::Close { client: r.u8() },
            7 => Op::Drain {
                alternate: r.u8() & 1 != 0,
            },
            8 => Op::Reload { set: r.u8() },
            9 => Op::Revoke {
                selector: r.u8(),
                client: r.u8(),
                for_secs: r.u16(),
            },
            _ => Op::Sessions {
                worker: r.u8(),
                filter: r.u8(),
                client: r.u8(),
                limit: r.u8(),
                cursor: r.u8(),
            },
        }
    }

    /// Writes the operation so that [`Op::read`] reads it back.
    pub fn write(&self, w: &mut Writer) {
        match self {
            Op::Raw { client, data } => {
                w.u8(0).u8(*client).bytes(data);
            }
            Op::Request(req) => {
                w.u8(1);
                req.write(w);
            }
            Op::ChannelData {
                client,
                channel,
                declared,
                payload,
                padding,
            } => {
                w.u8(2).u8(*client).u16(*channel);
                match declared {
                    Some(len) => w.u8(0).u16(*len),
                    None => w.u8(1),
                };
                w.bytes(payload).u8(*padding);
            }
            Op::Peer {
                port,
                peer,
                flags,
                payload,
            } => {
                w.u8(3).u8(*port).u8(*peer).u8(*flags).bytes(payload);
            }
            Op::Advance { secs } => {
                w.u8(4).u16(*secs);
            }
            Op::Wall { delta } => {
                w.u8(5).u16(*delta as u16);
            }
            Op::Close { client } => {
                w.u8(6).u8(*client);
            }
            Op::Drain { alternate } => {
                w.u8(7).u8(u8::from(*alternate));
            }
            Op::Reload { set } => {
                w.u8(8).u8(*set);
            }
            Op::Revoke {
                selector,
                client,
                for_secs,
            } => {
                w.u8(9).u8(*selector).u8(*client).u16(*for_secs);
            }
            Op::Sessions {
                worker,
                filter,
                client,
                limit,
                cursor,
            } => {
                w.u8(10)
                    .u8(*worker)
                    .u8(*filter)
                    .u8(*client)
                    .u8(*limit)
                    .u8(*cursor);
            }
        }
    }
}

impl Request {
    fn read(r: &mut Reader<'_>) -> Request {
        let client = r.u8();
        let method = r.u16() & 0x0FFF;
        let class = r.u8();
        let same_tid = class & 0x80 != 0;
        let count = r.u8() % (MAX_ATTRS + 1);
        let attrs = (0..count).map(|_| Attr::read(r)).collect();
        let auth = r.u8();
        let cred = r.u8();
        let key = r.u8();
        let nonce = r.u8() % 4;
        let raw_nonce = if nonce == 3 {
            r.bytes().to_vec()
        } else {
            Vec::new()
        };
        Request {
            client,
            method,
            class: class & 3,
            same_tid,
            attrs,
            auth,
            cred,
            key,
            nonce,
            raw_nonce,
        }
    }

    fn write(&self, w: &mut Writer) {
        let count = u8::try_from(self.attrs.len())
            .ok()
            .filter(|&n| n <= MAX_ATTRS)
            .expect("at most MAX_ATTRS attributes");
        w.u8(self.client)
            .u16(self.method)
            .u8(self.class & 3 | if self.same_tid { 0x80 } else { 0 })
            .u8(count);
        for a in &self.attrs {
            a.write(w);
        }
        w.u8(self.auth).u8(self.cred).u8(self.key).u8(self.nonce);
        if self.nonce == 3 {
            w.bytes(&self.raw_nonce);
        }
    }
}

impl Attr {
    fn read(r: &mut Reader<'_>) -> Attr {
        match r.u8() % 12 {
            0 => Attr::Peer(r.u8()),
            1 => Attr::Address {
                v6: r.u8() & 1 != 0,
                port: r.u16(),
                ip: r.array(),
            },
            2 => Attr::Lifetime(r.u32()),
            3 => Attr::Transport(r.u8()),
            4 => Attr::Channel(r.u16()),
            5 => Attr::EvenPort(r.u8()),
            6 => Attr::Token(r.u8()),
            7 => Attr::Family(r.u8()),
            8 => Attr::AdditionalFamily(r.u8()),
            9 => Attr::DontFragment,
            10 => Attr::Data(r.bytes().to_vec()),
            _ => Attr::Raw(r.u16(), r.bytes().to_vec()),
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Attr::Peer(p) => w.u8(0).u8(*p),
            Attr::Address { v6, port, ip } => w.u8(1).u8(u8::from(*v6)).u16(*port).raw(ip),
            Attr::Lifetime(l) => w.u8(2).u32(*l),
            Attr::Transport(t) => w.u8(3).u8(*t),
            Attr::Channel(c) => w.u8(4).u16(*c),
            Attr::EvenPort(f) => w.u8(5).u8(*f),
            Attr::Token(t) => w.u8(6).u8(*t),
            Attr::Family(f) => w.u8(7).u8(*f),
            Attr::AdditionalFamily(f) => w.u8(8).u8(*f),
            Attr::DontFragment => w.u8(9),
            Attr::Data(d) => w.u8(10).bytes(d),
            Attr::Raw(t, v) => w.u8(11).u16(*t).bytes(v),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_reads_back_as_written() {
        let ops = vec![
            Op::Raw {
                client: 3,
                data: vec![0, 1, 0, 0],
            },
            Op::Request(Request {
                client: 1,
                method: 0x003,
                class: 0,
                same_tid: true,
                attrs: vec![
                    Attr::Peer(2),
                    Attr::Address {
                        v6: true,
                        port: 9,
                        ip: [7; 16],
                    },
                    Attr::Lifetime(600),
                    Attr::Transport(17),
                    Attr::Channel(0x4001),
                    Attr::EvenPort(0x80),
                    Attr::Token(1),
                    Attr::Family(2),
                    Attr::AdditionalFamily(1),
                    Attr::DontFragment,
                    Attr::Data(b"hi".to_vec()),
                    Attr::Raw(0x8022, b"sw".to_vec()),
                ],
                auth: 0x21,
                cred: 2,
                key: 0,
                nonce: 3,
                raw_nonce: b"n".to_vec(),
            }),
            Op::ChannelData {
                client: 0,
                channel: 0x4000,
                declared: Some(9),
                payload: b"abc".to_vec(),
                padding: 1,
            },
            Op::ChannelData {
                client: 0,
                channel: 0x4000,
                declared: None,
                payload: vec![],
                padding: 0,
            },
            Op::Peer {
                port: 0x81,
                peer: 4,
                flags: 3,
                payload: b"x".to_vec(),
            },
            Op::Advance { secs: 301 },
            Op::Wall { delta: -30 },
            Op::Close { client: 4 },
            Op::Drain { alternate: true },
            Op::Reload { set: 2 },
            Op::Revoke {
                selector: 3,
                client: 1,
                for_secs: 700,
            },
            Op::Sessions {
                worker: 1,
                filter: 5,
                client: 2,
                limit: 3,
                cursor: 1,
            },
        ];
        let mut w = Writer::default();
        for op in &ops {
            op.write(&mut w);
        }
        let mut r = Reader::new(&w.out);
        let back: Vec<Op> = ops.iter().map(|_| Op::read(&mut r)).collect();
        assert_eq!(back, ops);
        assert!(r.is_empty());
    }
}
