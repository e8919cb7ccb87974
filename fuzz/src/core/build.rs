//! How a client of the `core` target builds the request an operation describes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tern_wire::{attr, Class, MessageType, MessageWriter, Method, TransactionId};

use super::cast::{CREDENTIALS, REALM};
use super::ops::{Attr, Request};
use super::world::World;

impl World {
    /// The bytes of a request built by client `i`.
    pub(crate) fn build(&mut self, i: usize, req: &Request) -> Vec<u8> {
        let class = [
            Class::Request,
            Class::Indication,
            Class::Success,
            Class::Error,
        ][usize::from(req.class & 3)];
        let client = &mut self.clients[i];
        if !req.same_tid {
            client.sent += 1;
            let mut t = [0u8; 12];
            t[0] = i as u8;
            t[1] = 0x7E;
            t[8..].copy_from_slice(&client.sent.to_be_bytes());
            client.tid = TransactionId(t);
        }
        let tid = client.tid;
        let cred = &self.creds[usize::from(req.cred) % CREDENTIALS];
        let key = match req.key {
            0 => cred.key(),
            k => self.creds[usize::from(k - 1) % CREDENTIALS].key(),
        };
        let nonce = match req.nonce {
            0 => self.clients[i].nonce.clone(),
            1 => None,
            2 => self.clients[(i + 1) % self.clients.len()].nonce.clone(),
            _ => Some(req.raw_nonce.clone()),
        };
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::new(Method(req.method), class), tid);
        for a in &req.attrs {
            self.write_attr(&mut w, a);
        }
        let mac = req.auth & 3;
        if mac != 0 || req.auth & 0x80 != 0 {
            if req.auth & 4 == 0 {
                w.attr(attr::USERNAME, cred.username.as_bytes());
            }
            if req.auth & 8 == 0 {
                w.attr(attr::REALM, REALM.as_bytes());
            }
            if let Some(n) = &nonce {
                w.attr(attr::NONCE, n);
            }
        }
        if mac & 1 != 0 {
            w.message_integrity(&key);
        }
        if mac & 2 != 0 {
            w.message_integrity_sha256(&key);
        }
        if req.auth & 0x10 != 0 {
            w.attr(attr::SOFTWARE, b"after the integrity");
        }
        let fingerprint = (req.auth >> 5) & 3;
        if fingerprint != 0 {
            w.fingerprint();
        }
        w.finish();
        if fingerprint == 2 {
            let last = buf.len() - 1;
            buf[last] ^= 0x01;
        }
        buf
    }

    fn write_attr(&self, w: &mut MessageWriter<'_>, a: &Attr) {
        match a {
            Attr::Peer(p) => {
                w.xor_address(
                    attr::XOR_PEER_ADDRESS,
                    self.peers[usize::from(*p) % self.peers.len()],
                );
            }
            Attr::Address { v6, port, ip } => {
                let ip: IpAddr = if *v6 {
                    Ipv6Addr::from(*ip).into()
                } else {
                    Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).into()
                };
                w.xor_address(attr::XOR_PEER_ADDRESS, SocketAddr::new(ip, *port));
            }
            Attr::Lifetime(l) => {
                w.u32(attr::LIFETIME, *l);
            }
            Attr::Transport(t) => {
                w.attr(attr::REQUESTED_TRANSPORT, &[*t, 0, 0, 0]);
            }
            Attr::Channel(c) => {
                let [hi, lo] = c.to_be_bytes();
                w.attr(attr::CHANNEL_NUMBER, &[hi, lo, 0, 0]);
            }
            Attr::EvenPort(f) => {
                w.attr(attr::EVEN_PORT, &[*f]);
            }
            Attr::Token(t) => {
                let tokens = &self.model.tokens;
                let token = match tokens.len() {
                    0 => [*t; 8],
                    n => tokens[usize::from(*t) % n],
                };
                w.attr(attr::RESERVATION_TOKEN, &token);
            }
            Attr::Family(f) => {
                w.attr(attr::REQUESTED_ADDRESS_FAMILY, &[*f, 0, 0, 0]);
            }
            Attr::AdditionalFamily(f) => {
                w.attr(attr::ADDITIONAL_ADDRESS_FAMILY, &[*f, 0, 0, 0]);
            }
            Attr::DontFragment => {
                w.attr(attr::DONT_FRAGMENT, &[]);
            }
            Attr::Data(d) => {
                w.attr(attr::DATA, d);
            }
            Attr::Raw(t, v) => {
                w.attr(*t, v);
            }
        }
    }
}
