//! TURN REST API credentials (draft-uberti-behave-turn-rest-00, as coturn implements it):
//! username `<expiry unix seconds>:<name>`, password base64(HMAC-SHA1(secret, username)).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("time fits i64")
}

/// `(username, password)` valid for `ttl_secs` from now. A negative `ttl_secs` gives an
/// already expired username.
pub fn rest_credentials(secret: &str, name: &str, ttl_secs: i64) -> (String, String) {
    rest_credentials_at(secret, name, unix_now() + ttl_secs)
}

/// `(username, password)` with the given expiry (unix seconds).
pub fn rest_credentials_at(secret: &str, name: &str, expiry: i64) -> (String, String) {
    let username = format!("{expiry}:{name}");
    let password = rest_password(secret, &username);
    (username, password)
}

/// base64(HMAC-SHA1(secret, username)).
pub fn rest_password(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_openssl() {
        // printf '1700000000:alice' | openssl dgst -sha1 -hmac north -binary | base64
        let (user, pass) = rest_credentials_at("north", "alice", 1_700_000_000);
        assert_eq!(user, "1700000000:alice");
        assert_eq!(pass, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
    }
}
