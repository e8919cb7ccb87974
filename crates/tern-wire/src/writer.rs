use std::net::SocketAddr;

use crate::integrity::{fingerprint_over, hmac_sha1_over, hmac_sha256_over};
use crate::{attr, MessageType, TransactionId, HEADER_LEN, MAGIC_COOKIE};

/// Writes one STUN message into a caller-owned `Vec<u8>`.
///
/// The vector is cleared first and keeps its capacity, so a reused buffer does not allocate
/// once it has grown. Every method keeps the header's length field current, so
/// [`MessageWriter::message_integrity`] and [`MessageWriter::fingerprint`] can be called at
/// any point and cover exactly what was written before them.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    buf: &'b mut Vec<u8>,
}

impl<'b> MessageWriter<'b> {
    /// Starts a message of type `typ` with transaction id `tid`.
    pub fn new(buf: &'b mut Vec<u8>, typ: MessageType, tid: TransactionId) -> Self {
        buf.clear();
        buf.extend_from_slice(&typ.to_u16().to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&tid.0);
        Self { buf }
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Appends an attribute with `value`, padded to four bytes with zeros.
    pub fn attr(&mut self, typ: u16, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = (4 - value.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.set_len();
        self
    }

    /// Appends a plain address attribute such as MAPPED-ADDRESS.
    pub fn address(&mut self, typ: u16, addr: SocketAddr) -> &mut Self {
        let mut v = [0u8; 20];
        let n = attr::encode_address(addr, &mut v);
        self.attr(typ, &v[..n])
    }

    /// Appends an XOR address attribute such as XOR-MAPPED-ADDRESS.
    pub fn xor_address(&mut self, typ: u16, addr: SocketAddr) -> &mut Self {
        let tid = self.transaction_id();
        self.address(typ, attr::xor_addr(addr, &tid))
    }

    /// Appends a 32-bit attribute such as LIFETIME.
    pub fn u32(&mut self, typ: u16, v: u32) -> &mut Self {
        self.attr(typ, &v.to_be_bytes())
    }

    /// Appends ERROR-CODE with `code` (300..=699) and a reason phrase.
    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&attr::ERROR_CODE.to_be_bytes());
        self.buf
            .extend_from_slice(&((4 + reason.len()) as u16).to_be_bytes());
        self.buf
            .extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        self.buf.extend_from_slice(reason.as_bytes());
        let pad = (4 - (self.buf.len() - start) % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.set_len();
        self
    }

    /// Appends UNKNOWN-ATTRIBUTES listing `types`.
    pub fn unknown_attributes(&mut self, types: &[u16]) -> &mut Self {
        let mut v = [0u8; 64];
        let n = types.len().min(32);
        for (i, t) in types[..n].iter().enumerate() {
            v[2 * i..2 * i + 2].copy_from_slice(&t.to_be_bytes());
        }
        self.attr(attr::UNKNOWN_ATTRIBUTES, &v[..2 * n])
    }

    /// Appends MESSAGE-INTEGRITY: HMAC-SHA1 with `key` over everything written so far.
    pub fn message_integrity(&mut self, key: &[u8]) -> &mut Self {
        let at = self.buf.len();
        self.buf
            .extend_from_slice(&attr::MESSAGE_INTEGRITY.to_be_bytes());
        self.buf.extend_from_slice(&20u16.to_be_bytes());
        self.buf.extend_from_slice(&[0u8; 20]);
        self.set_len();
        let mac = hmac_sha1_over(self.buf, at, key);
        self.buf[at + 4..at + 24].copy_from_slice(&mac);
        self
    }

    /// Appends MESSAGE-INTEGRITY-SHA256 (full 32 bytes) with `key`.
    pub fn message_integrity_sha256(&mut self, key: &[u8]) -> &mut Self {
        let at = self.buf.len();
        self.buf
            .extend_from_slice(&attr::MESSAGE_INTEGRITY_SHA256.to_be_bytes());
        self.buf.extend_from_slice(&32u16.to_be_bytes());
        self.buf.extend_from_slice(&[0u8; 32]);
        self.set_len();
        let mac = hmac_sha256_over(self.buf, at, 32, key);
        self.buf[at + 4..at + 36].copy_from_slice(&mac);
        self
    }

    /// Appends FINGERPRINT over everything written so far; write nothing after it.
    pub fn fingerprint(&mut self) -> &mut Self {
        let at = self.buf.len();
        self.buf.extend_from_slice(&attr::FINGERPRINT.to_be_bytes());
        self.buf.extend_from_slice(&4u16.to_be_bytes());
        self.buf.extend_from_slice(&[0u8; 4]);
        self.set_len();
        let crc = fingerprint_over(self.buf, at);
        self.buf[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        self
    }

    /// The transaction id being written.
    pub fn transaction_id(&self) -> TransactionId {
        let mut t = [0u8; 12];
        t.copy_from_slice(&self.buf[8..20]);
        TransactionId(t)
    }

    /// Ends the message; returns its length.
    pub fn finish(self) -> usize {
        self.buf.len()
    }
}
