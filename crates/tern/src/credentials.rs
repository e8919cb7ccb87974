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

/// A transport a `turn:` URI is listed for by [`ice_urls`] (`tern credentials --transports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `turn:HOST[:PORT]?transport=udp`.
    Udp,
    /// `turn:HOST[:PORT]?transport=tcp`.
    Tcp,
    /// `turns:HOST:TLS_PORT?transport=tcp`: TLS over TCP.
    Tls,
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "udp" => Ok(Self::Udp),
            "tcp" => Ok(Self::Tcp),
            "tls" => Ok(Self::Tls),
            _ => Err(format!("`{s}` is not a transport: use udp, tcp or tls")),
        }
    }
}

/// A `--uri` that is not a STUN or TURN URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUri {
    /// The URI as given.
    pub uri: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl std::fmt::Display for BadUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--uri {}: {}", self.uri, self.reason)
    }
}

impl std::error::Error for BadUri {}

/// The `urls` of an `RTCIceServer` for `uris`, in order, without repeats.
///
/// A `turn:HOST[:PORT]` URI without a query is listed once per transport in `transports`:
/// `?transport=udp`, `?transport=tcp`, and for TLS `turns:HOST:TLS_PORT?transport=tcp` (RFC
/// 7065 URIs; the port of a `turns:` one is `tls_port`, since TLS listens on its own port). A
/// `turn:` URI with a query, a `turns:` URI, and `stun:`/`stuns:` URIs are listed as given.
pub fn ice_urls(
    uris: &[String],
    transports: &[Transport],
    tls_port: u16,
) -> Result<Vec<String>, BadUri> {
    let mut urls: Vec<String> = Vec::new();
    for uri in uris {
        let bad = |reason| BadUri {
            uri: uri.clone(),
            reason,
        };
        let expanded = match uri.split_once(':') {
            Some(("turn", rest)) if !rest.contains('?') => {
                let host = turn_host(rest).ok_or_else(|| bad("expected turn:HOST[:PORT]"))?;
                transports
                    .iter()
                    .map(|t| match t {
                        Transport::Udp => format!("{uri}?transport=udp"),
                        Transport::Tcp => format!("{uri}?transport=tcp"),
                        Transport::Tls => format!("turns:{host}:{tls_port}?transport=tcp"),
                    })
                    .collect()
            }
            Some(("turn" | "turns" | "stun" | "stuns", rest)) if !rest.is_empty() => {
                vec![uri.clone()]
            }
            _ => return Err(bad("not a turn:, turns:, stun: or stuns: URI")),
        };
        for url in expanded {
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    Ok(urls)
}

/// The host of `HOST[:PORT]` or `[IPv6][:PORT]`, brackets kept; `None` when malformed.
fn turn_host(rest: &str) -> Option<&str> {
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']')? + 1;
        (&rest[..end], rest[end..].strip_prefix(':'))
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    let no_host = host.is_empty() || host == "[]";
    (!no_host && port_ok).then_some(host)
}

/// The `turns:` URLs among `urls` whose host is an IP address, not a name. Firefox opens no
/// TLS connection for those (tests/webrtc/browser_test.py checks it), and every browser needs
/// the certificate to name what the URL names, so `tern credentials` warns about them.
pub fn turns_ip_literals(urls: &[String]) -> Vec<&str> {
    urls.iter()
        .filter_map(|url| {
            let rest = url.strip_prefix("turns:")?;
            let rest = rest.split('?').next().unwrap_or(rest);
            let host = turn_host(rest)?;
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            bare.parse::<std::net::IpAddr>()
                .is_ok()
                .then_some(url.as_str())
        })
        .collect()
}

/// What `tern credentials` prints on stderr for [`turns_ip_literals`].
pub fn turns_ip_literal_note(url: &str) -> String {
    format!(
        "note: {url} names an IP address. Firefox makes no turns: connection to an IP address \
         (its users fall back to UDP or TCP, or get no relay); give a host name instead, one the \
         certificate names (Chromium accepts an IP address only when the certificate lists it \
         as an IP SAN)."
    )
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

/// `s` as a JSON string literal (the usage records' escaping).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    tern_server::usage::json_string(&mut out, s);
    out
}

/// The three output lines of `tern credentials`: username, credential, and the
/// `RTCIceServer` JSON with `urls` (see [`ice_urls`]).
pub fn render(cred: &RestCredential, urls: &[String]) -> String {
    format!(
        "username: {}\ncredential: {}\n{}\n",
        cred.username,
        cred.credential,
        ice_server_json(urls, cred)
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
    fn turns_with_an_ip_address_is_found() {
        let urls: Vec<String> = [
            "turns:192.0.2.1:5349?transport=tcp",
            "turns:[2001:db8::1]:443?transport=tcp",
            "turns:turn.example.org:443?transport=tcp",
            "turns:192.0.2.1",
            "turn:192.0.2.1:3478?transport=udp",
            "turns:1.2.3.4.example.org:443",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            turns_ip_literals(&urls),
            [
                "turns:192.0.2.1:5349?transport=tcp",
                "turns:[2001:db8::1]:443?transport=tcp",
                "turns:192.0.2.1"
            ]
        );
    }

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
        let urls = ice_urls(&["turn:example.org:3478".into()], &[Transport::Udp], 5349).unwrap();
        let line = render(&c, &urls);
        let json = line.lines().nth(2).unwrap();
        assert_eq!(
            json,
            format!(
                "{{\"urls\":[\"turn:example.org:3478?transport=udp\"],\"username\":\"42\",\"credential\":\"{}\"}}",
                c.credential
            )
        );
    }

    fn urls(uris: &[&str], transports: &[Transport], tls_port: u16) -> Result<Vec<String>, BadUri> {
        let uris: Vec<String> = uris.iter().map(|u| (*u).to_owned()).collect();
        ice_urls(&uris, transports, tls_port)
    }

    #[test]
    fn turn_uris_expand_per_transport() {
        use Transport::*;
        assert_eq!(
            urls(&["turn:t.example:3478"], &[Udp, Tcp, Tls], 443).unwrap(),
            [
                "turn:t.example:3478?transport=udp",
                "turn:t.example:3478?transport=tcp",
                "turns:t.example:443?transport=tcp",
            ]
        );
        assert_eq!(
            urls(&["turn:[2001:db8::1]", "turn:192.0.2.1"], &[Tls], 5349).unwrap(),
            [
                "turns:[2001:db8::1]:5349?transport=tcp",
                "turns:192.0.2.1:5349?transport=tcp"
            ]
        );
        // As given: a query, turns:, stun:; repeats dropped, order kept.
        let given = [
            "turns:t.example:443?transport=tcp",
            "turn:t.example:3478?transport=tcp",
            "stun:t.example",
            "turns:t.example",
        ];
        assert_eq!(urls(&given, &[Udp], 5349).unwrap(), given);
        assert_eq!(
            urls(&["turn:a", "turns:a:5349?transport=tcp"], &[Udp, Tls], 5349).unwrap(),
            ["turn:a?transport=udp", "turns:a:5349?transport=tcp"]
        );
    }

    #[test]
    fn bad_uris_and_transports() {
        for bad in [
            "http://x",
            "turn:",
            "turn:host:port",
            "turn:[::1",
            "turn:[]",
            "x",
            "turns:",
        ] {
            let e = urls(&[bad], &[Transport::Udp], 5349).unwrap_err();
            assert_eq!(e.uri, bad);
            assert!(e.to_string().starts_with(&format!("--uri {bad}: ")), "{e}");
        }
        assert_eq!("TLS".parse::<Transport>(), Ok(Transport::Tls));
        assert!("dtls"
            .parse::<Transport>()
            .unwrap_err()
            .contains("udp, tcp or tls"));
    }

    #[test]
    fn json_escaping() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
