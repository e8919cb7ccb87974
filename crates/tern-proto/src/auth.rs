//! The long-term credential mechanism (RFC 8489 §9.2) with static users and TURN REST API
//! secrets (coturn's `use-auth-secret`).

use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

use crate::config::{StaticUser, UserSecret};
use crate::error::AuthFailure;

/// The long-term key: `MD5(username ":" realm ":" password)` (RFC 8489 §9.2.2).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// The TURN REST API password for `username`: `base64(HMAC-SHA1(secret, username))`.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The expiry timestamp of a REST username `<unix-expiry>[:<name>]`, if it has that form.
pub fn rest_expiry(username: &str) -> Option<u64> {
    let ts = username.split_once(':').map_or(username, |(ts, _)| ts);
    if ts.is_empty() || ts.len() > 20 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ts.parse().ok()
}

/// Up to this many REST secrets are tried per request.
pub const MAX_SECRETS: usize = 8;

/// The candidate keys for one username: one per static user of that name, or one per REST
/// secret. A small fixed array: no allocation per request.
#[derive(Debug, Default)]
pub struct Candidates {
    keys: [[u8; 16]; MAX_SECRETS],
    len: usize,
}

impl Candidates {
    pub(crate) fn push(&mut self, key: [u8; 16]) {
        if self.len < MAX_SECRETS {
            self.keys[self.len] = key;
            self.len += 1;
        }
    }

    /// The keys to try, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8; 16]> {
        self.keys[..self.len].iter()
    }
}

/// The credentials this server accepts.
#[derive(Clone)]
pub struct Credentials {
    realm: String,
    secrets: Vec<Vec<u8>>,
    users: Vec<(String, [u8; 16])>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("realm", &self.realm)
            .field("secrets", &self.secrets.len())
            .field("users", &self.users.len())
            .finish()
    }
}

impl Credentials {
    /// Precomputes static users' keys; keeps REST secrets for per-request derivation.
    pub fn new(realm: &str, secrets: &[Vec<u8>], users: &[StaticUser]) -> Self {
        let users = users
            .iter()
            .map(|u| {
                let key = match &u.secret {
                    UserSecret::Password(p) => long_term_key(&u.name, realm, p),
                    UserSecret::Key(k) => *k,
                };
                (u.name.clone(), key)
            })
            .collect();
        Self {
            realm: realm.to_owned(),
            secrets: secrets.iter().take(MAX_SECRETS).cloned().collect(),
            users,
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The keys `username` may have used at wall-clock time `wall` (Unix seconds).
    pub fn candidates(&self, username: &str, wall: u64) -> Result<Candidates, AuthFailure> {
        let mut c = Candidates::default();
        for (name, key) in &self.users {
            if name == username {
                c.push(*key);
            }
        }
        if c.len > 0 {
            return Ok(c);
        }
        if self.secrets.is_empty() {
            return Err(AuthFailure::UnknownUser);
        }
        let expiry = rest_expiry(username).ok_or(AuthFailure::UnknownUser)?;
        if expiry < wall {
            return Err(AuthFailure::ExpiredRestCredential);
        }
        for secret in &self.secrets {
            c.push(long_term_key(
                username,
                &self.realm,
                &rest_password(secret, username),
            ));
        }
        Ok(c)
    }
}

/// The part of a username that `user-quota` counts: the name of a REST username
/// (`<expiry>:<name>`), which is unique per session otherwise, or the whole static username.
pub fn quota_name(username: &str) -> &str {
    match (rest_expiry(username), username.split_once(':')) {
        (Some(_), Some((_, name))) => name,
        _ => username,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_password_matches_coturn_scheme() {
        // python3: base64.b64encode(hmac.new(b"north", b"1700000000:alice", hashlib.sha1).digest())
        assert_eq!(
            rest_password(b"north", "1700000000:alice"),
            "Cd/49soE35ICqcJF/bCTn8Z4OyE="
        );
    }

    #[test]
    fn rest_expiry_forms() {
        assert_eq!(rest_expiry("1700000000:alice"), Some(1_700_000_000));
        assert_eq!(rest_expiry("1700000000"), Some(1_700_000_000));
        assert_eq!(rest_expiry("alice"), None);
        assert_eq!(rest_expiry("alice:1700000000"), None);
        assert_eq!(rest_expiry(":x"), None);
    }

    #[test]
    fn expired_and_rotated() {
        let c = Credentials::new("r", &[b"old".to_vec(), b"new".to_vec()], &[]);
        assert_eq!(
            c.candidates("100:a", 101).unwrap_err(),
            AuthFailure::ExpiredRestCredential
        );
        let keys = c.candidates("200:a", 100).unwrap();
        assert_eq!(keys.iter().count(), 2);
        let pw = rest_password(b"new", "200:a");
        assert!(keys.iter().any(|k| *k == long_term_key("200:a", "r", &pw)));
        assert_eq!(
            c.candidates("bob", 100).unwrap_err(),
            AuthFailure::UnknownUser
        );
    }

    #[test]
    fn quota_names() {
        assert_eq!(quota_name("1700000000:alice"), "alice");
        assert_eq!(quota_name("alice"), "alice");
    }
}
