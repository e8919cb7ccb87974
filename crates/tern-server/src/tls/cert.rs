//! What a loaded certificate says about itself: the names it covers and when it expires,
//! for the start-up and reload logs and the expiry gauge.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use super::TlsError;

const DAY: i64 = 86_400;

/// The facts about one served certificate (its leaf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// The SNI name it is served for; `None` for the default certificate.
    pub sni: Option<String>,
    /// The file the chain was read from.
    pub cert_path: PathBuf,
    /// The file the key was read from.
    pub key_path: PathBuf,
    /// The names the leaf covers: its DNS and IP subject alternative names, else its
    /// subject common names.
    pub names: Vec<String>,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Certificates in the served chain (the leaf and the intermediates in the file).
    pub chain_len: usize,
}

/// When a certificate expires, seen from a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Whole days from the moment to notAfter, rounded down; negative once expired.
    pub days_left: i64,
}

impl CertificateFacts {
    /// Reads the facts from the leaf of `chain`, which came from `cert_path`.
    pub(crate) fn read(
        sni: Option<String>,
        cert_path: PathBuf,
        key_path: PathBuf,
        chain: &[CertificateDer<'_>],
    ) -> Result<Self, TlsError> {
        let invalid = |index: usize, e: &dyn std::fmt::Display| TlsError::CertInvalid {
            path: cert_path.clone(),
            reason: format!("certificate {index} of the chain: {e}"),
        };
        for (i, der) in chain.iter().enumerate().skip(1) {
            x509_parser::parse_x509_certificate(der).map_err(|e| invalid(i, &e))?;
        }
        let (_, leaf) =
            x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| invalid(0, &e))?;
        let mut names = Vec::new();
        if let Some(san) = leaf
            .subject_alternative_name()
            .map_err(|e| invalid(0, &e))?
        {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                    GeneralName::IPAddress(ip) => {
                        if let Some(ip) = ip_from_bytes(ip) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        if names.is_empty() {
            names.extend(
                leaf.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_ascii_lowercase),
            );
        }
        let validity = leaf.validity();
        Ok(Self {
            sni,
            names,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            chain_len: chain.len(),
            cert_path,
            key_path,
        })
    }

    /// notAfter and the whole days left until then, from `now`.
    pub fn expiry(&self, now: SystemTime) -> Expiry {
        Expiry {
            not_after: self.not_after,
            days_left: (self.not_after - unix_seconds(now)).div_euclid(DAY),
        }
    }

    /// Whether `now` lies within notBefore..=notAfter.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        (self.not_before..=self.not_after).contains(&unix_seconds(now))
    }

    /// Whether the leaf covers `name` (lowercase): an equal name, or a `*.` name of the
    /// certificate matching one label. A wildcard `name` (an SNI entry `*.example.org`) is
    /// covered by the same wildcard only.
    pub fn covers(&self, name: &str) -> bool {
        self.names.iter().any(|n| {
            n == name
                || n.strip_prefix("*.").is_some_and(|domain| {
                    name.split_once('.')
                        .is_some_and(|(label, rest)| label != "*" && rest == domain)
                })
        })
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn facts(names: &[&str], not_after: i64) -> CertificateFacts {
        CertificateFacts {
            sni: None,
            cert_path: "/c".into(),
            key_path: "/k".into(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            not_before: 0,
            not_after,
            chain_len: 1,
        }
    }

    #[test]
    fn days_left_round_down_and_go_negative() {
        let f = facts(&[], 10 * DAY);
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(f.expiry(at(0)).days_left, 10);
        assert_eq!(f.expiry(at(1)).days_left, 9);
        assert_eq!(f.expiry(at(10 * DAY as u64)).days_left, 0);
        assert_eq!(f.expiry(at(10 * DAY as u64 + 1)).days_left, -1);
        assert_eq!(f.expiry(at(0)).not_after, 10 * DAY);
        assert!(f.is_valid_at(at(5)));
        assert!(!f.is_valid_at(at(11 * DAY as u64)));
    }

    #[test]
    fn wildcard_coverage() {
        let f = facts(&["*.example.org", "turn.test"], 0);
        assert!(f.covers("turn.test"));
        assert!(f.covers("a.example.org"));
        assert!(f.covers("*.example.org"));
        assert!(!f.covers("example.org"));
        assert!(!f.covers("a.b.example.org"));
        assert!(!facts(&["a.example.org"], 0).covers("*.example.org"));
    }
}
