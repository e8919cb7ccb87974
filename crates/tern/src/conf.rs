//! The turnserver.conf reader: coturn's line syntax, nothing about what keys mean.
//!
//! A line is blank, a `#` comment, a bare flag (`fingerprint`) or `key=value`
//! (`key = value` is accepted too). A `#` that follows whitespace starts a trailing comment
//! unless it is inside double quotes; a value wholly in double quotes loses its quotes.
//! Every entry remembers where it came from, so later errors can name file and line.

use std::fmt;
use std::path::Path;

use anyhow::Context as _;

/// Where a setting came from; shown in front of every warning and error about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a configuration file (`name` is the path as given).
    File { name: String, line: usize },
    /// A `TERN_*` environment variable.
    Env { var: String },
    /// A `tern serve` command-line flag (`--min-port`, `-p`).
    Flag { flag: String },
}

impl Origin {
    /// The precedence layer: file < environment < command line.
    pub fn layer(&self) -> u8 {
        match self {
            Origin::File { .. } => 0,
            Origin::Env { .. } => 1,
            Origin::Flag { .. } => 2,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { name, line } => write!(f, "{name}:{line}"),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Flag { flag } => write!(f, "flag {flag}"),
        }
    }
}

/// One `key[=value]` setting.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key as written (`min-port`, `Verbose`).
    pub key: String,
    /// The value; `None` for a bare flag.
    pub value: Option<String>,
    /// Where it was written.
    pub origin: Origin,
}

impl fmt::Debug for Entry {
    // Values may be secrets; never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("has_value", &self.value.is_some())
            .field("origin", &self.origin)
            .finish()
    }
}

/// A line the reader cannot make sense of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// File and line.
    pub origin: Origin,
    /// What is wrong (never quotes a value, which may be a secret).
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// Reads and parses a configuration file.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    Ok(parse_str(&text, &path.display().to_string())?)
}

/// Parses configuration text; `name` is used in origins.
pub fn parse_str(text: &str, name: &str) -> Result<Vec<Entry>, SyntaxError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let origin = Origin::File {
            name: name.to_owned(),
            line: index + 1,
        };
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key.trim(), Some(unquote(value.trim()).to_owned())),
            None => (line, None),
        };
        if key.is_empty() {
            return Err(SyntaxError {
                origin,
                message: "a line starts with `=`, no key".into(),
            });
        }
        if let Some((first, _)) = key.split_once(char::is_whitespace) {
            let message =
                format!("expected `key=value` or a bare flag; write `{first}=…` (coturn syntax)");
            return Err(SyntaxError { origin, message });
        }
        entries.push(Entry {
            key: key.to_owned(),
            value,
            origin,
        });
    }
    Ok(entries)
}

/// Drops a full-line comment, or a trailing one (`#` after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut in_quotes = false;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            '#' if prev_space && !in_quotes => return &line[..i],
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// Removes one pair of surrounding double quotes.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(entries: &[Entry]) -> Vec<(String, Option<String>, usize)> {
        entries
            .iter()
            .map(|e| {
                let Origin::File { line, .. } = e.origin else {
                    unreachable!()
                };
                (e.key.clone(), e.value.clone(), line)
            })
            .collect()
    }

    #[test]
    fn lines_comments_quotes_flags() {
        let text = "# full comment\n\n  fingerprint\nlistening-port=3478 # trailing\n\
                    realm = \"example.org\"\npidfile=\"/run/a#b.pid\"\nuser=a:b#c\n\
                    \t# indented comment\nstale-nonce\n";
        let got = kv(&parse_str(text, "t.conf").unwrap());
        let want = [
            ("fingerprint", None, 3),
            ("listening-port", Some("3478"), 4),
            ("realm", Some("example.org"), 5),
            ("pidfile", Some("/run/a#b.pid"), 6),
            ("user", Some("a:b#c"), 7),
            ("stale-nonce", None, 9),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(k, v, l)| (k.to_string(), v.map(str::to_string), *l))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn repeated_keys_are_kept_in_order() {
        let got = kv(&parse_str(
            "denied-peer-ip=10.0.0.0-10.255.255.255\ndenied-peer-ip=192.168.0.0/16\n",
            "x",
        )
        .unwrap());
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1.as_deref(), Some("192.168.0.0/16"));
    }

    #[test]
    fn empty_value_and_crlf() {
        let got = kv(&parse_str("realm=\r\nno-cli\r\n", "x").unwrap());
        assert_eq!(got[0], ("realm".into(), Some(String::new()), 1));
        assert_eq!(got[1], ("no-cli".into(), None, 2));
    }

    #[test]
    fn space_separated_is_an_error_naming_the_line() {
        let err = parse_str(
            "fingerprint\nstatic-auth-secret s3cret\n",
            "turnserver.conf",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("turnserver.conf:2: "), "{text}");
        assert!(text.contains("static-auth-secret="), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
