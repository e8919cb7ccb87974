//! `cipher-list`: coturn passes an OpenSSL cipher string to OpenSSL; tern maps the same
//! string onto the suites rustls offers and warns about what it cannot honour.
//!
//! rustls (with *ring*) has six TLS 1.2 suites, all ECDHE with AES-GCM or ChaCha20-Poly1305
//! and RSA or ECDSA certificates, and the three TLS 1.3 suites. The string is read as
//! OpenSSL reads it, over those suites:
//!
//! - Items are separated by `:`, `,` or spaces. An item is a suite name (OpenSSL's, such as
//!   `ECDHE-RSA-AES128-GCM-SHA256`, or the IANA one), an alias (`ALL`, `DEFAULT`, `HIGH`,
//!   `ECDHE`/`EECDH`/`kECDHE`, `aRSA`/`RSA`, `aECDSA`/`ECDSA`, `AES`, `AES128`, `AES256`,
//!   `AESGCM`, `CHACHA20`, `SHA256`, `SHA384`, `TLSv1.2`), or aliases joined by `+`
//!   (`ECDHE+AESGCM`: the suites in all of them).
//! - A bare item appends its suites not yet listed; `-` removes them (a later item may add
//!   them back); `!` removes them for good; `+` moves them to the end. `@STRENGTH` orders
//!   the list by key length, strongest first. `@SECLEVEL=n` is ignored with a warning.
//! - As in OpenSSL, the string chooses the TLS 1.2 suites only, unless it names TLS 1.3
//!   suites (`TLS_AES_128_GCM_SHA256`, `TLS_AES_256_GCM_SHA384`,
//!   `TLS_CHACHA20_POLY1305_SHA256`): then TLS 1.3 uses exactly those.
//! - An item that adds nothing rustls has (`DHE-RSA-AES256-GCM-SHA384`, `AES128-SHA`,
//!   `RC4`, a typo) is warned about and skipped. Removing what rustls never offers
//!   (`!aNULL`, `!MD5`, `!RC4`, `!3DES`, ...) is accepted silently.
//! - When a list is given, its order is the server's preference; without one, the client's
//!   order decides, among rustls' defaults.

use rustls::crypto::ring::cipher_suite as cs;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

use super::TlsError;

/// One suite rustls offers and the names OpenSSL knows it by.
struct Suite {
    suite: SupportedCipherSuite,
    /// OpenSSL's name (for TLS 1.3, OpenSSL uses the IANA name).
    openssl: &'static str,
    /// The IANA name.
    iana: &'static str,
    /// The OpenSSL aliases of its authentication and its cipher (TLS 1.2 suites; the ones
    /// every TLS 1.2 suite here has are [`TLS12_ALIASES`]).
    aliases: [&'static [&'static str]; 2],
    /// Key length, for `@STRENGTH`.
    bits: u16,
}

impl Suite {
    fn is_tls13(&self) -> bool {
        self.suite.version() == &rustls::version::TLS13
    }

    fn named(&self, name: &str) -> bool {
        name == self.openssl || name == self.iana
    }

    fn has_alias(&self, alias: &str) -> bool {
        !self.is_tls13()
            && (TLS12_ALIASES.contains(&alias) || self.aliases.iter().any(|a| a.contains(&alias)))
    }
}

/// Aliases that take in every TLS 1.2 suite rustls has.
const TLS12_ALIASES: &[&str] = &[
    "ALL", "DEFAULT", "HIGH", "ECDHE", "EECDH", "kECDHE", "kEECDH", "TLSv1.2",
];
const RSA: &[&str] = &["aRSA", "RSA"];
const ECDSA: &[&str] = &["aECDSA", "ECDSA"];
const AES128: &[&str] = &["AES", "AES128", "AESGCM", "SHA256"];
const AES256: &[&str] = &["AES", "AES256", "AESGCM", "SHA384"];
const CHACHA: &[&str] = &["CHACHA20"];

/// Every suite, in rustls' default order (TLS 1.3 first).
const SUITES: [Suite; 9] = [
    Suite {
        suite: cs::TLS13_AES_256_GCM_SHA384,
        openssl: "TLS_AES_256_GCM_SHA384",
        iana: "TLS_AES_256_GCM_SHA384",
        aliases: [&[], &[]],
        bits: 256,
    },
    Suite {
        suite: cs::TLS13_AES_128_GCM_SHA256,
        openssl: "TLS_AES_128_GCM_SHA256",
        iana: "TLS_AES_128_GCM_SHA256",
        aliases: [&[], &[]],
        bits: 128,
    },
    Suite {
        suite: cs::TLS13_CHACHA20_POLY1305_SHA256,
        openssl: "TLS_CHACHA20_POLY1305_SHA256",
        iana: "TLS_CHACHA20_POLY1305_SHA256",
        aliases: [&[], &[]],
        bits: 256,
    },
    Suite {
        suite: cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
        iana: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        aliases: [ECDSA, AES256],
        bits: 256,
    },
    Suite {
        suite: cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
        iana: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        aliases: [ECDSA, AES128],
        bits: 128,
    },
    Suite {
        suite: cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
        iana: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        aliases: [ECDSA, CHACHA],
        bits: 256,
    },
    Suite {
        suite: cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        openssl: "ECDHE-RSA-AES256-GCM-SHA384",
        iana: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        aliases: [RSA, AES256],
        bits: 256,
    },
    Suite {
        suite: cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        openssl: "ECDHE-RSA-AES128-GCM-SHA256",
        iana: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        aliases: [RSA, AES128],
        bits: 128,
    },
    Suite {
        suite: cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        openssl: "ECDHE-RSA-CHACHA20-POLY1305",
        iana: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        aliases: [RSA, CHACHA],
        bits: 256,
    },
];

/// TLS 1.3 suites OpenSSL knows that rustls does not offer.
const TLS13_ABSENT: &[&str] = &["TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"];

/// OpenSSL aliases that take in none of rustls' suites: removing them changes nothing.
#[rustfmt::skip]
const ABSENT_ALIASES: &[&str] = &[
    "aNULL", "eNULL", "NULL", "COMPLEMENTOFDEFAULT", "COMPLEMENTOFALL", "MEDIUM", "LOW",
    "EXP", "EXPORT", "RC4", "MD5", "DES", "3DES", "IDEA", "SEED", "CAMELLIA", "ARIA", "SHA1",
    "SHA", "DSS", "aDSS", "PSK", "aPSK", "kPSK", "kECDHEPSK", "kDHEPSK", "kRSAPSK", "SRP",
    "kSRP", "aSRP", "kRSA", "DH", "DHE", "EDH", "kDHE", "kEDH", "ADH", "AECDH", "aECDH", "kDH",
    "kDHr", "kDHd", "AESCCM", "AESCCM8", "CCM", "CCM8", "SSLv3", "TLSv1", "TLSv1.0", "GOST",
    "kGOST", "aGOST",
];

/// The cipher suites and protocol versions `cipher-list` leaves.
#[derive(Debug, Clone)]
pub struct CipherChoice {
    /// The suites, TLS 1.3 first, each version's in preference order.
    pub suites: Vec<SupportedCipherSuite>,
    /// The versions that have a suite (TLS 1.3 only with `tls13_only`).
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// Whether the server's order wins over the client's (a list was given).
    pub server_order: bool,
    /// What could not be honoured, one sentence each.
    pub warnings: Vec<String>,
}

/// Maps `cipher-list` (`None` or blank: rustls' defaults) onto rustls' suites. Fails when
/// no enabled version keeps a suite.
pub fn choose(list: Option<&str>, tls13_only: bool) -> Result<CipherChoice, TlsError> {
    let list = list.map(str::trim).filter(|l| !l.is_empty());
    let mut warnings = Vec::new();
    let (tls13, tls12, server_order) = match list {
        None => (
            (0..3).collect::<Vec<_>>(),
            (3..SUITES.len()).collect::<Vec<_>>(),
            false,
        ),
        Some(list) => {
            let mut e = Eval::default();
            for item in list.split([':', ',', ' ']).filter(|i| !i.is_empty()) {
                if let Some(w) = e.item(item) {
                    warnings.push(format!("cipher-list: {w}"));
                }
            }
            let tls13 = if e.names_tls13 {
                e.tls13
            } else {
                (0..3).collect()
            };
            (tls13, e.tls12, true)
        }
    };
    let mut versions = Vec::new();
    if !tls12.is_empty() && !tls13_only {
        versions.push(&rustls::version::TLS12);
    }
    if !tls13.is_empty() {
        versions.push(&rustls::version::TLS13);
    }
    if versions.is_empty() {
        return Err(TlsError::NoUsableCipherSuite {
            list: list.unwrap_or_default().to_owned(),
        });
    }
    if tls12.is_empty() && !tls13_only {
        warnings.push("cipher-list leaves no TLS 1.2 suite: TLS 1.2 is off".into());
    }
    if tls13.is_empty() {
        warnings.push("cipher-list leaves no TLS 1.3 suite: TLS 1.3 is off".into());
    }
    let suites = tls13
        .iter()
        .chain(if tls13_only { &[][..] } else { &tls12[..] })
        .map(|&i| SUITES[i].suite)
        .collect();
    Ok(CipherChoice {
        suites,
        versions,
        server_order,
        warnings,
    })
}

/// The state of an OpenSSL-style evaluation: indices into [`SUITES`].
#[derive(Default)]
struct Eval {
    tls12: Vec<usize>,
    tls13: Vec<usize>,
    banned: Vec<usize>,
    names_tls13: bool,
}

impl Eval {
    /// Applies one item; returns a warning when it cannot be honoured.
    fn item(&mut self, item: &str) -> Option<String> {
        if let Some(cmd) = item.strip_prefix('@') {
            if cmd == "STRENGTH" {
                self.tls12
                    .sort_by_key(|&i| std::cmp::Reverse(SUITES[i].bits));
                return None;
            }
            return Some(format!(
                "`{item}` is ignored (rustls applies its own security minimums)"
            ));
        }
        let (op, body) = match item.as_bytes()[0] {
            b'!' | b'-' | b'+' => (item.as_bytes()[0], &item[1..]),
            _ => (0, item),
        };
        if body.starts_with("TLS_") && !body.contains("_WITH_") {
            return self.tls13_item(op, body);
        }
        let Some(matched) = resolve(body) else {
            let absent = body.split('+').any(|part| ABSENT_ALIASES.contains(&part));
            return match op {
                b'!' | b'-' if absent => None,
                b'!' | b'-' => Some(format!(
                    "`{item}` names no cipher suite rustls offers; nothing removed"
                )),
                _ => Some(format!(
                    "`{body}` names no cipher suite rustls offers (only ECDHE with AES-GCM or \
                     ChaCha20-Poly1305 for TLS 1.2, and the TLS 1.3 suites); ignored"
                )),
            };
        };
        match op {
            b'!' | b'-' => {
                self.tls12.retain(|i| !matched.contains(i));
                if op == b'!' {
                    self.banned.extend(&matched);
                }
            }
            b'+' => {
                let (moved, kept) = self.tls12.iter().partition(|i| matched.contains(i));
                self.tls12 = kept;
                self.tls12.extend::<Vec<usize>>(moved);
            }
            _ => {
                for i in matched {
                    if !self.banned.contains(&i) && !self.tls12.contains(&i) {
                        self.tls12.push(i);
                    }
                }
            }
        }
        None
    }

    fn tls13_item(&mut self, op: u8, name: &str) -> Option<String> {
        let Some(i) = SUITES[..3].iter().position(|s| s.named(name)) else {
            if op != b'!' && op != b'-' {
                self.names_tls13 = true;
            }
            return if TLS13_ABSENT.contains(&name) {
                Some(format!(
                    "`{name}` is a TLS 1.3 suite rustls does not offer; ignored"
                ))
            } else {
                Some(format!(
                    "`{name}` is not a TLS 1.3 suite rustls knows; ignored"
                ))
            };
        };
        match op {
            b'!' | b'-' => self.tls13.retain(|&j| j != i),
            _ => {
                self.names_tls13 = true;
                if !self.tls13.contains(&i) {
                    self.tls13.push(i);
                }
            }
        }
        None
    }
}

/// The TLS 1.2 suites an item (without its operator) takes in: one suite by name, or the
/// suites in every alias joined by `+`. `None` when it takes in none of them.
fn resolve(body: &str) -> Option<Vec<usize>> {
    let tls12 = 3..SUITES.len();
    let matched: Vec<usize> = if let Some(i) = tls12.clone().find(|&i| SUITES[i].named(body)) {
        vec![i]
    } else {
        tls12
            .filter(|&i| body.split('+').all(|alias| SUITES[i].has_alias(alias)))
            .collect()
    };
    (!matched.is_empty()).then_some(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(c: &CipherChoice) -> Vec<String> {
        c.suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect()
    }

    #[test]
    fn table_matches_rustls() {
        let all: Vec<_> = rustls::crypto::ring::ALL_CIPHER_SUITES.to_vec();
        let ours: Vec<_> = SUITES.iter().map(|s| s.suite).collect();
        assert_eq!(format!("{all:?}"), format!("{ours:?}"));
        for s in &SUITES {
            assert_eq!(
                format!("{:?}", s.suite.suite()).replace("TLS13_", "TLS_"),
                s.iana
            );
            assert_eq!(s.is_tls13(), s.openssl == s.iana);
        }
    }

    #[test]
    fn operators() {
        let c = choose(Some("ECDHE+AESGCM:!ECDSA:+AES128"), false).unwrap();
        assert_eq!(
            names(&c)[3..],
            [
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            ]
        );
        // `-` lets a later item add back; `!` does not.
        let c = choose(Some("aRSA:-AES128:AES128:!CHACHA20:CHACHA20"), false).unwrap();
        assert_eq!(
            names(&c)[3..],
            [
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            ]
        );
        let c = choose(Some("AES128:CHACHA20:@STRENGTH"), false).unwrap();
        assert!(names(&c)[3].contains("CHACHA20"), "{:?}", names(&c));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn coturn_style_lists() {
        let quiet = |list: &str, tls12: usize| {
            let c = choose(Some(list), false).unwrap();
            assert!(c.warnings.is_empty(), "{list}: {:?}", c.warnings);
            assert_eq!(c.suites.len(), 3 + tls12, "{list}");
            assert_eq!(c.versions.len(), 2, "{list}");
            assert!(c.server_order);
        };
        quiet("DEFAULT", 6);
        quiet("ALL:!COMPLEMENTOFDEFAULT:!eNULL", 6);
        quiet("HIGH:!aNULL:!MD5:!RC4:!3DES", 6);
        quiet("ECDHE+AESGCM:ECDHE+CHACHA20:!DSS", 6);
        quiet("kEECDH+aRSA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 4);
        let c = choose(None, false).unwrap();
        assert_eq!((c.suites.len(), c.server_order), (9, false));
        assert_eq!(choose(Some("  "), false).unwrap().suites.len(), 9);

        // Mozilla's intermediate list: the order is kept, the DHE suites cannot be.
        let mozilla = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
                       ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
                       ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
                       DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";
        let c = choose(Some(mozilla), false).unwrap();
        assert_eq!(
            names(&c)[3..5],
            [
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            ]
        );
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("`DHE-RSA-AES128-GCM-SHA256` names no cipher suite"));

        let c = choose(
            Some("ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA:FOO:!BAR"),
            false,
        )
        .unwrap();
        assert_eq!(c.suites.len(), 4);
        let w = c.warnings.join("\n");
        assert_eq!(c.warnings.len(), 3, "{w}");
        assert!(w.contains("`AES128-SHA`") && w.contains("`FOO`"), "{w}");
        assert!(w.contains("`!BAR` names no cipher suite rustls offers; nothing removed"));

        let c = choose(Some("@SECLEVEL=2:DEFAULT"), false).unwrap();
        assert_eq!(c.suites.len(), 9);
        assert!(c.warnings[0].contains("`@SECLEVEL=2` is ignored"));
    }

    #[test]
    fn tls13_names_restrict_tls13() {
        // Only TLS 1.3 named: TLS 1.2 has nothing left and is turned off, with a warning.
        let c = choose(Some("TLS_AES_128_GCM_SHA256"), false).unwrap();
        assert_eq!(names(&c), ["TLS13_AES_128_GCM_SHA256"]);
        assert_eq!(c.versions, [&rustls::version::TLS13]);
        assert!(c.warnings[0].contains("TLS 1.2 is off"), "{:?}", c.warnings);

        let c = choose(
            Some("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256:ECDHE-RSA-AES256-GCM-SHA384"),
            false,
        )
        .unwrap();
        assert_eq!(
            names(&c),
            [
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
            ]
        );
        assert!(c.warnings[0].contains("a TLS 1.3 suite rustls does not offer"));

        // With no-tlsv1_2 a TLS 1.2 list leaves the TLS 1.3 defaults, quietly.
        let c = choose(Some("ECDHE-RSA-AES128-GCM-SHA256"), true).unwrap();
        assert_eq!(c.suites.len(), 3);
        assert_eq!(c.versions, [&rustls::version::TLS13]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // Without any TLS 1.3 suite, TLS 1.3 is off; with no-tlsv1_2 that leaves nothing.
        let c = choose(Some("TLS_AES_128_CCM_8_SHA256:AESGCM"), false).unwrap();
        assert_eq!(c.versions, [&rustls::version::TLS12]);
        assert!(c.warnings.iter().any(|w| w.contains("TLS 1.3 is off")));
        assert!(choose(Some("TLS_AES_128_CCM_8_SHA256:AESGCM"), true).is_err());
        assert!(choose(Some("-TLS_AES_128_GCM_SHA256:!ALL"), false).is_ok());
    }
}
