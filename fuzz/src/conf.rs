//! The turnserver.conf reader (crates/tern/src/conf.rs), the settings built from its entries
//! (settings.rs) and their mapping onto the server's configuration (mapping.rs).

use tern::conf::{parse_str, Origin};
use tern::keys::{lookup, Known};

/// The name the fuzzed text is read under.
const NAME: &str = "fuzz.conf";

/// A configuration file's text, read, validated and mapped as `tern serve` does at start
/// (without reading the certificate files or any other file it names).
///
/// Checked: a syntax error names the file and a line of the text; every entry's key is a
/// word and its line is in the text; a settings error names where it came from; and no
/// secret (a `static-auth-secret` or `pkey-pwd` value, a `user` password) that the text
/// holds only once, and that nothing else could print ([`distinctive`]), appears in an
/// error, a warning, or the settings' and mapping's debug output.
pub fn conf(data: &[u8]) {
    // The reader takes a file's text as UTF-8; other bytes fail before it runs.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    let entries = match parse_str(text, NAME) {
        Ok(entries) => entries,
        Err(e) => {
            let Origin::File { line, .. } = e.origin else {
                panic!("a file's syntax error comes from the file: {e}");
            };
            assert!((1..=lines).contains(&line), "{e}");
            assert!(
                e.to_string().starts_with(&format!("{NAME}:{line}: ")),
                "{e}"
            );
            return;
        }
    };
    let mut secrets = Vec::new();
    for e in &entries {
        let Origin::File { line, .. } = e.origin else {
            panic!("an entry of the file comes from the file: {e:?}");
        };
        assert!((1..=lines).contains(&line), "{e:?}");
        assert!(
            !e.key.is_empty() && !e.key.contains(char::is_whitespace),
            "{e:?}"
        );
        assert!(!e.key.starts_with('#'), "a comment is not a key: {e:?}");
        if let (Known::Implemented(k), Some(value)) = (lookup(&e.key), &e.value) {
            let secret = match k.name {
                "user" => value.split_once(':').map_or("", |(_, password)| password),
                _ if k.secret => value.as_str(),
                _ => "",
            };
            if distinctive(secret) && text.matches(secret).count() == 1 {
                secrets.push(secret.to_owned());
            }
        }
    }
    let no_secret = |what: &str, shown: &str| {
        for s in &secrets {
            assert!(!shown.contains(s.as_str()), "a secret in {what}: {shown}");
        }
    };
    let loaded = match tern::settings::from_entries(&entries) {
        Ok(loaded) => loaded,
        Err(e) => {
            let shown = format!("{e:#}");
            no_secret("a settings error", &shown);
            return;
        }
    };
    for w in &loaded.warnings {
        no_secret("a warning", w);
    }
    let mut settings = loaded.settings;
    no_secret("the settings", &format!("{settings:?}"));
    // TLS reads the certificate and key files; what they hold is not this target's input.
    settings.no_tls = true;
    match tern::mapping::map(&settings, |_| None, true) {
        Ok(mapped) => {
            no_secret("the mapped configuration", &format!("{mapped:?}"));
            let core = &mapped.server.core;
            assert!(core
                .relay_ports
                .iter()
                .flatten()
                .all(|p| core.relay_port_range.contains(p)));
        }
        Err(e) => no_secret("a mapping error", &format!("{e:#}")),
    }
}

/// Whether a secret could only appear in output by being printed: at least 8 ASCII letters
/// and digits, with one of each. Debug output escapes no such character, and its field
/// names, numbers and addresses hold no such run.
fn distinctive(secret: &str) -> bool {
    secret.len() >= 8
        && secret.chars().all(|c| c.is_ascii_alphanumeric())
        && secret.chars().any(|c| c.is_ascii_digit())
        && secret.chars().any(|c| c.is_ascii_alphabetic())
}
