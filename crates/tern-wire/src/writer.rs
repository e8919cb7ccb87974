use std::net::SocketAddr;
use std::ops::Range;

use crate::integrity::{fingerprint_over, hmac_sha1_over, hmac_sha256_over};
use crate::{
    attr, fingerprint_of, Class, MessageType, Method, TransactionId, HEADER_LEN, MAGIC_COOKIE,
};

/// Type and length in front of every attribute value.
const ATTR_HEADER_LEN: usize = 4;
/// A FINGERPRINT attribute: its header and the CRC.
const FINGERPRINT_LEN: usize = ATTR_HEADER_LEN + 4;

/// Most bytes [`frame_data_indication`] writes before the payload: the STUN header,
/// XOR-PEER-ADDRESS with an IPv6 address, and DATA's type and length.
pub const DATA_INDICATION_HEADROOM: usize = HEADER_LEN + ATTR_HEADER_LEN + 20 + ATTR_HEADER_LEN;
/// Most bytes [`frame_data_indication`] writes after the payload: padding to four bytes and
/// FINGERPRINT.
pub const DATA_INDICATION_TAILROOM: usize = 3 + FINGERPRINT_LEN;
/// The largest payload a Data indication can carry: the header's 16-bit length counts every
/// attribute with its padding, FINGERPRINT included.
pub const DATA_INDICATION_MAX_PAYLOAD: usize =
    (u16::MAX as usize - (DATA_INDICATION_HEADROOM - HEADER_LEN) - FINGERPRINT_LEN) & !3;

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
        self.coded(attr::ERROR_CODE, 0, code, reason)
    }

    /// Appends ADDRESS-ERROR-CODE (RFC 8656 §18.12): why no relayed address of `family`
    /// ([`attr::FAMILY_IPV4`] or [`attr::FAMILY_IPV6`]) was allocated, as `code` (440 or
    /// 508) and a reason phrase.
    pub fn address_error_code(&mut self, family: u8, code: u16, reason: &str) -> &mut Self {
        self.coded(attr::ADDRESS_ERROR_CODE, family, code, reason)
    }

    /// Appends an ADDRESS-ERROR-CODE-shaped attribute of type `typ`: [`attr::ADDRESS_ERROR_CODE`],
    /// or [`attr::ADDRESS_ERROR_CODE_DRAFT`] for a client that asked at the draft codepoint.
    pub fn address_error_code_as(
        &mut self,
        typ: u16,
        family: u8,
        code: u16,
        reason: &str,
    ) -> &mut Self {
        self.coded(typ, family, code, reason)
    }

    /// An ERROR-CODE-shaped attribute: `first` (reserved, or the family), zero, class,
    /// number, reason, padding.
    fn coded(&mut self, typ: u16, first: u8, code: u16, reason: &str) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf
            .extend_from_slice(&((4 + reason.len()) as u16).to_be_bytes());
        self.buf
            .extend_from_slice(&[first, 0, (code / 100) as u8, (code % 100) as u8]);
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

/// Frames the payload at `buf[payload]` as a Data indication (RFC 8656 §11.4) in place,
/// without copying it: the header, XOR-PEER-ADDRESS (`peer`, XORed with `tid`) and DATA's
/// type and length go into the bytes just before the payload, padding and, with
/// `fingerprint`, FINGERPRINT into those just after. Returns where the message is in `buf`.
///
/// # Panics
///
/// If fewer than [`DATA_INDICATION_HEADROOM`] bytes precede the payload, fewer than
/// [`DATA_INDICATION_TAILROOM`] follow it, or it is longer than
/// [`DATA_INDICATION_MAX_PAYLOAD`].
pub fn frame_data_indication(
    buf: &mut [u8],
    payload: Range<usize>,
    peer: SocketAddr,
    tid: &TransactionId,
    fingerprint: bool,
) -> Range<usize> {
    let len = payload.len();
    assert!(
        len <= DATA_INDICATION_MAX_PAYLOAD,
        "payload too big for a Data indication"
    );
    let mut addr = [0u8; 20];
    let addr_len = attr::encode_address(attr::xor_addr(peer, tid), &mut addr);
    let start = payload.start - (HEADER_LEN + ATTR_HEADER_LEN + addr_len + ATTR_HEADER_LEN);
    let pad = (4 - len % 4) % 4;
    let end = payload.end + pad + if fingerprint { FINGERPRINT_LEN } else { 0 };
    let typ = MessageType::new(Method::DATA, Class::Indication).to_u16();
    let h = &mut buf[start..payload.start];
    h[0..2].copy_from_slice(&typ.to_be_bytes());
    h[2..4].copy_from_slice(&((end - start - HEADER_LEN) as u16).to_be_bytes());
    h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    h[8..20].copy_from_slice(&tid.0);
    h[20..22].copy_from_slice(&attr::XOR_PEER_ADDRESS.to_be_bytes());
    h[22..24].copy_from_slice(&(addr_len as u16).to_be_bytes());
    h[24..24 + addr_len].copy_from_slice(&addr[..addr_len]);
    let d = 24 + addr_len;
    h[d..d + 2].copy_from_slice(&attr::DATA.to_be_bytes());
    h[d + 2..d + 4].copy_from_slice(&(len as u16).to_be_bytes());
    buf[payload.end..payload.end + pad].fill(0);
    if fingerprint {
        let at = payload.end + pad;
        buf[at..at + 2].copy_from_slice(&attr::FINGERPRINT.to_be_bytes());
        buf[at + 2..at + 4].copy_from_slice(&4u16.to_be_bytes());
        let crc = fingerprint_of(&buf[start..at]);
        buf[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
    }
    start..end
}
