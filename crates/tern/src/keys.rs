//! The table of coturn keys: which ones tern implements, which ones it knows and ignores,
//! whether each takes a value, and how each is spelled as a flag and as an environment
//! variable.

/// Whether a key takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// A bare flag (`fingerprint`); may also be given `=1/true/yes` or `=0/false/no`.
    Flag,
    /// Needs a value (`min-port=49152`).
    Value,
    /// A flag with an optional value (`stale-nonce`, `stale-nonce=600`).
    OptionalValue,
}

/// A key tern implements.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The coturn spelling.
    pub name: &'static str,
    /// Value or flag.
    pub arity: Arity,
    /// Repeats accumulate (`denied-peer-ip`) instead of the last one winning.
    pub multi: bool,
    /// The value is a credential: never quote it in messages.
    pub secret: bool,
    /// coturn's one-letter command-line option, if tern accepts it too.
    pub short: Option<char>,
}

const fn key(name: &'static str, arity: Arity) -> Key {
    Key {
        name,
        arity,
        multi: false,
        secret: false,
        short: None,
    }
}

const fn multi(k: Key) -> Key {
    Key { multi: true, ..k }
}

const fn secret(k: Key) -> Key {
    Key { secret: true, ..k }
}

const fn short(k: Key, c: char) -> Key {
    Key {
        short: Some(c),
        ..k
    }
}

use Arity::{Flag, OptionalValue, Value};

/// Every key tern implements.
pub const IMPLEMENTED: &[Key] = &[
    short(multi(key("listening-ip", Value)), 'L'),
    short(key("listening-port", Value), 'p'),
    key("no-udp", Flag),
    key("no-tcp", Flag),
    short(multi(key("relay-ip", Value)), 'E'),
    short(multi(key("external-ip", Value)), 'X'),
    key("min-port", Value),
    key("max-port", Value),
    short(key("realm", Value), 'r'),
    key("use-auth-secret", Flag),
    secret(multi(key("static-auth-secret", Value))),
    multi(key("static-auth-secret-file", Value)),
    short(key("lt-cred-mech", Flag), 'a'),
    short(secret(multi(key("user", Value))), 'u'),
    short(key("fingerprint", Flag), 'f'),
    key("stale-nonce", OptionalValue),
    key("max-allocate-lifetime", Value),
    key("channel-lifetime", Value),
    key("permission-lifetime", Value),
    short(key("user-quota", Value), 'q'),
    short(key("total-quota", Value), 'Q'),
    key("max-bps", Value),
    multi(key("allowed-peer-ip", Value)),
    multi(key("denied-peer-ip", Value)),
    key("allow-loopback-peers", Flag),
    key("no-multicast-peers", Flag),
    key("rfc5766-channel-numbers", Flag),
    key("relay-threads", Value),
    key("udp-recv-buffer", Value),
    key("udp-send-buffer", Value),
    key("no-batched-io", Flag),
    key("no-cli", Flag),
    short(key("verbose", Flag), 'v'),
    short(key("Verbose", Flag), 'V'),
    short(key("log-file", Value), 'l'),
    key("log-format", Value),
    key("admin-listen", Value),
    key("admin-token-file", Value),
    key("prometheus", Flag),
    key("prometheus-port", Value),
    key("drain-timeout", Value),
    key("usage-log", Value),
    key("ready-min-free-ports", Value),
    key("xdp", Value),
    key("xdp-interface", Value),
    multi(key("alternate-server", Value)),
    key("tls-listening-port", Value),
    key("no-tls", Flag),
    key("cert", Value),
    key("pkey", Value),
    secret(key("pkey-pwd", Value)),
    key("cipher-list", Value),
    key("ec-curve-name", Value),
    key("no-tlsv1", Flag),
    key("no-tlsv1_1", Flag),
    key("no-tlsv1_2", Flag),
    key("dh566", Flag),
    key("dh1066", Flag),
    key("dh-file", Value),
    multi(key("tls-sni-cert", Value)),
    key("alt-listening-port", Value),
    key("alt-tls-listening-port", Value),
    key("tcp-proxy-port", Value),
    key("proxy-protocol", Flag),
    key("tls-handshake-timeout", Value),
    key("tcp-idle-timeout", Value),
    key("max-connections", Value),
    key("max-connections-per-ip", Value),
    key("unauthorized-ratelimit", Flag),
    key("unauthorized-ratelimit-rps", Value),
    key("auth-failure-limit", Value),
    key("auth-failure-window", Value),
    key("auth-lockout-duration", Value),
    key("allocation-default-address-family", Value),
    key("keep-address-family", Flag),
];

/// Keys that only shape logging and operations (admin port, drain): giving them does not
/// count as "configuring" the server (`tern serve -v` still starts the embedded default).
pub const LOGGING_ONLY: &[&str] = &[
    "verbose",
    "Verbose",
    "log-file",
    "log-format",
    "no-cli",
    "admin-listen",
    "admin-token-file",
    "prometheus",
    "prometheus-port",
    "drain-timeout",
    "usage-log",
    "ready-min-free-ports",
];

/// coturn keys tern knows of but does not implement; each draws one warning.
pub const UNIMPLEMENTED: &[(&str, Arity)] = &[
    ("listening-device", Value),
    ("relay-device", Value),
    ("aux-server", Value),
    ("udp-self-balance", Flag),
    ("max-allocate-timeout", Value),
    ("bps-capacity", Value),
    ("no-auth", Flag),
    ("oauth", Flag),
    ("server-name", Value),
    ("userdb", Value),
    ("psql-userdb", Value),
    ("sql-userdb", Value),
    ("mysql-userdb", Value),
    ("mongo-userdb", Value),
    ("redis-userdb", Value),
    ("redis-statsdb", Value),
    ("secure-stun", Flag),
    ("mobility", Flag),
    ("no-dtls", Flag),
    ("no-udp-relay", Flag),
    ("no-tcp-relay", Flag),
    ("stun-only", Flag),
    ("no-stun", Flag),
    ("server-relay", Flag),
    ("CA-file", Value),
    ("no-sslv2", Flag),
    ("no-sslv3", Flag),
    ("no-stdout-log", Flag),
    ("syslog", Flag),
    ("simple-log", Flag),
    ("new-log-timestamp", Flag),
    ("new-log-timestamp-format", Value),
    ("log-binding", Flag),
    ("tls-alternate-server", Value),
    ("rest-api-separator", Value),
    ("cli-ip", Value),
    ("cli-port", Value),
    ("cli-password", Value),
    ("cli-max-output-sessions", Value),
    ("web-admin", Flag),
    ("web-admin-ip", Value),
    ("web-admin-port", Value),
    ("web-admin-listen-on-workers", Flag),
    ("acme-redirect", Value),
    ("prometheus-username-labels", Flag),
    ("pidfile", Value),
    ("proc-user", Value),
    ("proc-group", Value),
    ("daemon", Flag),
    ("prod", Flag),
    ("no-software-attribute", Flag),
    ("check-origin-consistency", Flag),
    ("no-loopback-peers", Flag),
    ("mice", Flag),
    ("no-dynamic-ip-list", Flag),
    ("no-dynamic-realms", Flag),
    ("no-rfc5780", Flag),
    ("no-stun-backward-compatibility", Flag),
    ("response-origin-only-with-rfc5780", Flag),
    ("respond-http-unsupported", Flag),
    ("sha256", Flag),
    ("ne", Value),
    ("db", Value),
];

/// What the table says about a key.
#[derive(Debug, Clone, Copy)]
pub enum Known {
    /// tern implements it.
    Implemented(&'static Key),
    /// coturn has it; tern ignores it with a warning.
    Unimplemented(Arity),
    /// Neither tern nor (as far as tern knows) coturn has it.
    Unknown,
}

/// Looks a key up (case-sensitive, as coturn's `verbose`/`Verbose` are distinct).
pub fn lookup(name: &str) -> Known {
    if let Some(k) = IMPLEMENTED.iter().find(|k| k.name == name) {
        return Known::Implemented(k);
    }
    match UNIMPLEMENTED.iter().find(|(n, _)| *n == name) {
        Some((_, arity)) => Known::Unimplemented(*arity),
        None => Known::Unknown,
    }
}

/// The implemented key with this one-letter option.
pub fn by_short(c: char) -> Option<&'static Key> {
    IMPLEMENTED.iter().find(|k| k.short == Some(c))
}

/// `TERN_<KEY>`: uppercased, `-` → `_`.
pub fn env_var(name: &str) -> String {
    format!("TERN_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// The key an environment variable names, if any. `TERN_VERBOSE` is `verbose`, not
/// `Verbose`.
pub fn key_for_env_var(var: &str) -> Option<&'static str> {
    let all = IMPLEMENTED
        .iter()
        .map(|k| k.name)
        .chain(UNIMPLEMENTED.iter().map(|(n, _)| *n));
    all.filter(|n| *n != "Verbose").find(|n| env_var(n) == var)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert_eq!(env_var("static-auth-secret"), "TERN_STATIC_AUTH_SECRET");
        assert_eq!(key_for_env_var("TERN_EXTERNAL_IP"), Some("external-ip"));
        assert_eq!(key_for_env_var("TERN_VERBOSE"), Some("verbose"));
        assert_eq!(key_for_env_var("TERN_CERT"), Some("cert"));
        assert_eq!(key_for_env_var("TERN_BIN"), None);
    }

    #[test]
    fn no_key_is_both_implemented_and_ignored() {
        for k in IMPLEMENTED {
            assert!(
                !UNIMPLEMENTED.iter().any(|(n, _)| *n == k.name),
                "{}",
                k.name
            );
        }
    }
}
