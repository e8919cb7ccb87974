use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{attr, Message, HEADER_LEN};

const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// The outcome of checking a message's integrity attribute against a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// The message has neither MESSAGE-INTEGRITY nor MESSAGE-INTEGRITY-SHA256.
    Absent,
    /// The MAC matches the key.
    Valid,
    /// The MAC does not match the key.
    Invalid,
}

/// Feeds `buf[..at]` into `update`, with the header's length field rewritten to
/// `at + attr_len - 20`, as if the attribute at `at` (of total size `attr_len`) were the last.
fn feed_prefix(buf: &[u8], at: usize, attr_len: usize, mut update: impl FnMut(&[u8])) {
    let len = (at + attr_len - HEADER_LEN) as u16;
    update(&buf[0..2]);
    update(&len.to_be_bytes());
    update(&buf[4..at]);
}

/// CRC-32 of the message up to the FINGERPRINT attribute at `at`, XORed as RFC 8489 §14.7 says.
pub(crate) fn fingerprint_over(buf: &[u8], at: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    feed_prefix(buf, at, 8, |b| h.update(b));
    h.finalize() ^ FINGERPRINT_XOR
}

/// HMAC-SHA1 over the message up to a MESSAGE-INTEGRITY attribute at `at`.
pub(crate) fn hmac_sha1_over(buf: &[u8], at: usize, key: &[u8]) -> [u8; 20] {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    feed_prefix(buf, at, 24, |b| mac.update(b));
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 over the message up to a MESSAGE-INTEGRITY-SHA256 attribute at `at` whose
/// value is `value_len` bytes.
pub(crate) fn hmac_sha256_over(buf: &[u8], at: usize, value_len: usize, key: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    feed_prefix(buf, at, 4 + value_len, |b| mac.update(b));
    mac.finalize().into_bytes().into()
}

impl Message<'_> {
    /// Checks MESSAGE-INTEGRITY (or, when only that is present, MESSAGE-INTEGRITY-SHA256)
    /// against `key`, comparing MACs in constant time.
    pub fn check_integrity(&self, key: &[u8]) -> Integrity {
        let buf = self.as_bytes();
        if let Some(at) = self.integrity_offset() {
            let expected = hmac_sha1_over(buf, at, key);
            let got = &buf[at + 4..at + 24];
            return if bool::from(expected.ct_eq(got)) {
                Integrity::Valid
            } else {
                Integrity::Invalid
            };
        }
        if let Some(at) = self.integrity_sha256_offset() {
            let value = self
                .get(attr::MESSAGE_INTEGRITY_SHA256)
                .map(|a| a.value)
                .unwrap_or_default();
            let expected = hmac_sha256_over(buf, at, value.len(), key);
            let ok = bool::from(expected[..value.len()].ct_eq(value));
            return if ok {
                Integrity::Valid
            } else {
                Integrity::Invalid
            };
        }
        Integrity::Absent
    }
}

/// The FINGERPRINT value for a message whose bytes up to (not including) its FINGERPRINT
/// attribute are `prefix`, with the header's length field already counting the attribute.
/// For writers that frame messages in place (Data indications around a payload).
pub fn fingerprint_of(prefix: &[u8]) -> u32 {
    crc32fast::hash(prefix) ^ FINGERPRINT_XOR
}
