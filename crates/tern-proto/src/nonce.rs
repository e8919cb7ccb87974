//! Stateless nonces: the issue time and a MAC over it and the client's IP, so a flood of
//! unauthenticated requests costs no memory (RFC 8489 §9.2: the nonce is opaque to clients).
//!
//! A nonce is 16 characters: 12 bytes in base64, a 32-bit issue second and the first 64 bits
//! of HMAC-SHA1 over it and the client's IP. Every 401 and 438 carries one, so its length is
//! part of what an unauthenticated request can make the server send (the amplification
//! table in the README); 64 bits of MAC are what DNS server cookies use for the same job
//! (RFC 9018), and forging one only proves an address the forger could not receive at.

use std::net::IpAddr;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// Length of a nonce: 12 bytes in base64.
pub const NONCE_LEN: usize = 16;
/// Bytes of MAC in a nonce.
const MAC_LEN: usize = 8;
/// How far ahead of the clock a nonce's issue time may be (another worker's clock read a
/// moment later).
const FUTURE_SLACK: i64 = 5;

/// Issues and checks nonces.
#[derive(Clone)]
pub struct NonceKey {
    key: [u8; 32],
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

/// Why a nonce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceError {
    /// Not a nonce this server issued (or issued for another client IP).
    Invalid,
    /// Issued more than the nonce lifetime ago.
    Expired,
}

fn mac(key: &[u8; 32], ts: u32, ip: IpAddr) -> [u8; MAC_LEN] {
    let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("any key length");
    m.update(&ts.to_be_bytes());
    match ip {
        IpAddr::V4(v4) => m.update(&v4.octets()),
        IpAddr::V6(v6) => m.update(&v6.octets()),
    }
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

impl NonceKey {
    /// A nonce key from secret random bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// A nonce for `client_ip` issued at wall-clock second `wall`.
    pub fn issue(&self, wall: u64, client_ip: IpAddr) -> [u8; NONCE_LEN] {
        // The low 32 bits of the second: ages are taken modulo 2^32 (136 years).
        let ts = wall as u32;
        let mut raw = [0u8; 4 + MAC_LEN];
        raw[..4].copy_from_slice(&ts.to_be_bytes());
        raw[4..].copy_from_slice(&mac(&self.key, ts, client_ip));
        let mut out = [0u8; NONCE_LEN];
        let n = B64
            .encode_slice(raw, &mut out)
            .expect("12 bytes are 16 base64 characters");
        debug_assert_eq!(n, NONCE_LEN);
        out
    }

    /// Checks a nonce from `client_ip` at wall-clock second `wall`.
    pub fn check(
        &self,
        nonce: &[u8],
        wall: u64,
        client_ip: IpAddr,
        lifetime_secs: u64,
    ) -> Result<(), NonceError> {
        if nonce.len() != NONCE_LEN {
            return Err(NonceError::Invalid);
        }
        let mut raw = [0u8; 4 + MAC_LEN + 2];
        let n = B64
            .decode_slice(nonce, &mut raw)
            .map_err(|_| NonceError::Invalid)?;
        if n != 4 + MAC_LEN {
            return Err(NonceError::Invalid);
        }
        let ts = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        if !bool::from(mac(&self.key, ts, client_ip).ct_eq(&raw[4..4 + MAC_LEN])) {
            return Err(NonceError::Invalid);
        }
        // Seconds since issue, modulo 2^32 and signed: a nonce from the future (a clock
        // stepped back) is stale too.
        let age = i64::from((wall as u32).wrapping_sub(ts) as i32);
        let stale = if age < 0 {
            age < -FUTURE_SLACK
        } else {
            age.unsigned_abs() >= lifetime_secs
        };
        if stale {
            return Err(NonceError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_check_expire() {
        let k = NonceKey::new([9; 32]);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let n = k.issue(1000, ip);
        assert_eq!(k.check(&n, 1000, ip, 600), Ok(()));
        assert_eq!(k.check(&n, 1599, ip, 600), Ok(()));
        assert_eq!(k.check(&n, 1600, ip, 600), Err(NonceError::Expired));
        assert_eq!(
            k.check(&n, 1000, "192.0.2.8".parse().unwrap(), 600),
            Err(NonceError::Invalid)
        );
        let mut bad = n;
        bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(k.check(&bad, 1000, ip, 600), Err(NonceError::Invalid));
        assert_eq!(
            NonceKey::new([1; 32]).check(&n, 1000, ip, 600),
            Err(NonceError::Invalid)
        );
        assert_eq!(k.check(&n[..15], 1000, ip, 600), Err(NonceError::Invalid));
        assert_eq!(
            k.check(b"!!!!!!!!!!!!!!!!", 1000, ip, 600),
            Err(NonceError::Invalid)
        );
    }

    #[test]
    fn sixteen_printable_characters() {
        let n = NonceKey::new([9; 32]).issue(1_700_000_000, "2001:db8::1".parse().unwrap());
        assert_eq!(n.len(), 16);
        // RFC 8489 §14.10: qdtext, so no quote and no backslash.
        assert!(n
            .iter()
            .all(|&c| c.is_ascii_graphic() && c != b'"' && c != b'\\'));
    }

    #[test]
    fn from_the_future_and_across_the_32_bit_wrap() {
        let k = NonceKey::new([9; 32]);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let n = k.issue(1000, ip);
        // Another worker's clock a moment behind is fine; a clock stepped back is not.
        assert_eq!(k.check(&n, 996, ip, 600), Ok(()));
        assert_eq!(k.check(&n, 994, ip, 600), Err(NonceError::Expired));
        let wrap = u64::from(u32::MAX) - 10;
        let n = k.issue(wrap, ip);
        assert_eq!(k.check(&n, wrap + 100, ip, 600), Ok(()));
        assert_eq!(k.check(&n, wrap + 600, ip, 600), Err(NonceError::Expired));
    }
}
