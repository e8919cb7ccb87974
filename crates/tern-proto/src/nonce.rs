//! Stateless nonces: the issue time and a MAC over it and the client's IP, so a flood of
//! unauthenticated requests costs no memory (RFC 8489 §9.2: the nonce is opaque to clients).

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// Length of a nonce: 16 hex digits of timestamp and 24 of MAC.
pub const NONCE_LEN: usize = 40;

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

fn mac(key: &[u8; 32], ts: u64, ip: IpAddr) -> [u8; 12] {
    let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("any key length");
    m.update(&ts.to_be_bytes());
    match ip {
        IpAddr::V4(v4) => m.update(&v4.octets()),
        IpAddr::V6(v6) => m.update(&v6.octets()),
    }
    let full = m.finalize().into_bytes();
    let mut out = [0u8; 12];
    out.copy_from_slice(&full[..12]);
    out
}

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
}

fn unhex(s: &[u8], out: &mut [u8]) -> Option<()> {
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        out[i] = d(pair[0])? << 4 | d(pair[1])?;
    }
    Some(())
}

impl NonceKey {
    /// A nonce key from secret random bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// A nonce for `client_ip` issued at wall-clock second `wall`.
    pub fn issue(&self, wall: u64, client_ip: IpAddr) -> [u8; NONCE_LEN] {
        let mut out = [0u8; NONCE_LEN];
        hex_into(&wall.to_be_bytes(), &mut out[..16]);
        hex_into(&mac(&self.key, wall, client_ip), &mut out[16..]);
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
        let mut ts = [0u8; 8];
        let mut tag = [0u8; 12];
        unhex(&nonce[..16], &mut ts).ok_or(NonceError::Invalid)?;
        unhex(&nonce[16..], &mut tag).ok_or(NonceError::Invalid)?;
        let ts = u64::from_be_bytes(ts);
        if !bool::from(mac(&self.key, ts, client_ip).ct_eq(&tag)) {
            return Err(NonceError::Invalid);
        }
        // A nonce from the future (clock stepped back) is stale too.
        if wall.saturating_sub(ts) >= lifetime_secs || ts > wall.saturating_add(5) {
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
        bad[20] ^= 1;
        assert_eq!(k.check(&bad, 1000, ip, 600), Err(NonceError::Invalid));
        assert_eq!(
            NonceKey::new([1; 32]).check(&n, 1000, ip, 600),
            Err(NonceError::Invalid)
        );
    }
}
