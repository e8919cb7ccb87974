//! TURN REST API credentials (coturn's `use-auth-secret`): the username is
//! `<expiry unix time>[:<name>]` and the password is base64(HMAC-SHA1(secret, username)).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// A time-limited username and its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestCredential {
    /// `<expiry>` or `<expiry>:<name>`.
    pub username: String,
    /// Standard base64 (with padding) of HMAC-SHA1 keyed with the secret.
    pub credential: String,
}

/// Computes the credential valid until `expiry` (unix seconds).
pub fn rest_credential(secret: &[u8], expiry: u64, name: Option<&str>) -> RestCredential {
    let username = match name {
        Some(name) if !name.is_empty() => format!("{expiry}:{name}"),
        _ => expiry.to_string(),
    };
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    RestCredential {
        username,
        credential,
    }
}

/// `turn:HOST:PORT` → `turn:HOST:PORT?transport=udp`; a URI with a query is kept as is.
pub fn udp_uri(uri: &str) -> String {
    if uri.contains('?') {
        uri.to_owned()
    } else {
        format!("{uri}?transport=udp")
    }
}

/// One line of JSON in the shape of a WebRTC `RTCIceServer`.
pub fn ice_server_json(urls: &[String], cred: &RestCredential) -> String {
    let urls: Vec<String> = urls.iter().map(|u| json_string(u)).collect();
    format!(
        "{{\"urls\":[{}],\"username\":{},\"credential\":{}}}",
        urls.join(","),
        json_string(&cred.username),
        json_string(&cred.credential)
    )
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The three output lines of `tern credentials`.
pub fn render(cred: &RestCredential, uri: &str) -> String {
    format!(
        "username: {}\ncredential: {}\n{}\n",
        cred.username,
        cred.credential,
        ice_server_json(&[udp_uri(uri)], cred)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently:
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"north",
    //   b"1700086400:alice",hashlib.sha1).digest()).decode())'
    // (cross-checked with `openssl dgst -sha1 -hmac north -binary | base64`)
    const VECTOR: &str = "SXua5ne/+mDhiHTp0pQJzRO4ESg=";

    #[test]
    fn known_vector() {
        let c = rest_credential(b"north", 1_700_086_400, Some("alice"));
        assert_eq!(c.username, "1700086400:alice");
        assert_eq!(c.credential, VECTOR);
    }

    #[test]
    fn no_name_and_json() {
        let c = rest_credential(b"s", 42, None);
        assert_eq!(c.username, "42");
        assert_eq!(c.credential.len(), 28); // 20 bytes, padded base64
        assert!(c.credential.ends_with('='));
        let line = render(&c, "turn:example.org:3478");
        let json = line.lines().nth(2).unwrap();
        assert_eq!(
            json,
            format!(
                "{{\"urls\":[\"turn:example.org:3478?transport=udp\"],\"username\":\"42\",\"credential\":\"{}\"}}",
                c.credential
            )
        );
    }

    #[test]
    fn json_escaping() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
