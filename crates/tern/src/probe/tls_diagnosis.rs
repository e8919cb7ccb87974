//! What a failed TLS handshake means, in plain words: each certificate error rustls' verifier
//! reports (name, chain, dates) and each handshake failure, explained with the facts of the
//! certificates the server presented.
use std::fmt::Write as _;
use std::net::IpAddr;

use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, Error};
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

const DAY: i64 = 86_400;

/// What the probe knows of one certificate the server presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CertFacts {
    /// Its DNS names and IP addresses (subjectAltName), as written.
    pub names: Vec<String>,
    /// Its subject: the common name, else the whole distinguished name.
    pub subject: String,
    /// Its issuer, the same way.
    pub issuer: String,
    /// Subject and issuer are the same name: a root, or a self-signed leaf.
    pub self_issued: bool,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

impl CertFacts {
    /// Reads a DER certificate; `None` if x509-parser cannot.
    pub fn read(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                    GeneralName::IPAddress(b) => {
                        names.extend(ip_from_bytes(b).map(|ip| ip.to_string()))
                    }
                    _ => {}
                }
            }
        }
        let display = |name: &x509_parser::x509::X509Name<'_>| {
            let cn = name
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok());
            cn.map_or_else(|| name.to_string(), str::to_owned)
        };
        Some(Self {
            names,
            subject: display(cert.subject()),
            issuer: display(cert.issuer()),
            self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// The names, or a note that there are none.
    pub fn names_text(&self) -> String {
        if self.names.is_empty() {
            format!("no subjectAltName at all (subject {})", self.subject)
        } else {
            self.names.join(", ")
        }
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// `2027-01-05 12:00 UTC`.
pub(super) fn utc(secs: i64) -> String {
    match ASN1Time::from_timestamp(secs) {
        Ok(t) => {
            let t = t.to_datetime();
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        Err(_) => format!("{secs} (Unix time)"),
    }
}

/// Whole days from `from` to `to`, rounded towards zero.
pub(super) fn days(from: i64, to: i64) -> i64 {
    (to - from) / DAY
}

/// What the explanation is about: the name checked, the trust used, what was presented.
pub(super) struct Context<'a> {
    /// The name sent as SNI and checked (`--tls-name`, else the host given).
    pub name: &'a str,
    /// `Some` for an IP literal, which sends no SNI and needs an IP SAN.
    pub ip: Option<IpAddr>,
    /// `--ca FILE` and the subjects of the CAs in it; `None` for Mozilla's roots.
    pub ca: Option<(&'a str, &'a [String])>,
    /// The certificates presented, leaf first (those x509-parser could read).
    pub chain: &'a [CertFacts],
    /// Now, Unix seconds.
    pub now: i64,
    /// The TCP port, for hints.
    pub port: u16,
}

/// A failed handshake's `[FAIL]` line and diagnosis.
pub(super) fn explain(error: &Error, cx: &Context<'_>) -> (String, String) {
    match error {
        Error::InvalidCertificate(e) => certificate(e, cx),
        Error::AlertReceived(alert) => (
            format!("the server ended the handshake with the alert {alert:?}"),
            format!(
                "the server refused this client: no TLS version or cipher suite in common (the \
                 probe offers TLS 1.2 and 1.3 with ECDHE and AES-GCM or ChaCha20-Poly1305), or \
                 no certificate for {}",
                match cx.ip {
                    Some(_) => "a client that sends no SNI (it connected by IP address)".to_owned(),
                    None => format!("the name {} sent as SNI", cx.name),
                }
            ),
        ),
        Error::PeerIncompatible(p) => (
            format!("no TLS parameters in common with the server ({p:?})"),
            "the server offers no TLS version, cipher suite or key exchange this client has \
             (TLS 1.2/1.3, ECDHE, AES-GCM, ChaCha20-Poly1305): is it limited to TLS 1.0/1.1 or to \
             an old cipher-list?"
                .to_owned(),
        ),
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::PeerMisbehaved(_) => (
            format!("the server did not answer in TLS ({error})"),
            format!(
                "something other than a TLS server answers on port {}: a plain TURN port (try \
                 --transport tcp) or another service; TURN over TLS usually listens on 5349 or 443",
                cx.port
            ),
        ),
        _ => (
            format!("the TLS handshake failed: {error}"),
            "the server and this client could not agree on a TLS session".to_owned(),
        ),
    }
}

/// A certificate the verifier refused.
fn certificate(e: &CertificateError, cx: &Context<'_>) -> (String, String) {
    let leaf = cx.chain.first();
    match e {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let presented = match (leaf, e) {
                (Some(leaf), _) => leaf.names.clone(),
                (None, CertificateError::NotValidForNameContext { presented, .. }) => {
                    presented.clone()
                }
                _ => Vec::new(),
            };
            wrong_name(&presented, leaf, cx)
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let not_after = match (leaf, e) {
                (Some(leaf), _) => Some(leaf.not_after),
                (None, CertificateError::ExpiredContext { not_after, .. }) => {
                    i64::try_from(not_after.as_secs()).ok()
                }
                _ => None,
            };
            let what = match not_after {
                Some(t) => format!(
                    "the certificate expired on {} ({} days ago)",
                    utc(t),
                    days(t, cx.now)
                ),
                None => "the certificate has expired".to_owned(),
            };
            let diagnosis = "renew the certificate and have the server load the new one (tern \
                reloads on SIGHUP or when the file changes; coturn needs a restart): is the \
                renewal job (certbot renew, cert-manager) running, and does `cert` point at the \
                renewed file?";
            (what, diagnosis.to_owned())
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            let what = match leaf {
                Some(leaf) => format!(
                    "the certificate is not valid before {}",
                    utc(leaf.not_before)
                ),
                None => "the certificate is not valid yet".to_owned(),
            };
            let diagnosis = format!(
                "its validity starts in the future: is this machine's clock right (it says {})? \
                 Check NTP here and on the machine that issued the certificate",
                utc(cx.now)
            );
            (what, diagnosis)
        }
        CertificateError::UnknownIssuer => unknown_issuer(cx),
        CertificateError::BadSignature => (
            "a signature in the certificate chain does not verify".to_owned(),
            "the certificates the server sends do not belong together (an intermediate of \
             another CA, or a leaf from an older issuance): rebuild `cert` from the CA's \
             fullchain.pem"
                .to_owned(),
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => (
            "the certificate is not for TLS servers".to_owned(),
            "its extendedKeyUsage lacks serverAuth: issue a TLS server certificate".to_owned(),
        ),
        other => (
            format!(
                "the certificate was refused: {}",
                Error::InvalidCertificate(other.clone())
            ),
            "the server's certificate cannot be verified; inspect it with `openssl s_client \
             -showcerts`"
                .to_owned(),
        ),
    }
}

/// The name checked is not among the certificate's.
fn wrong_name(
    presented: &[String],
    leaf: Option<&CertFacts>,
    cx: &Context<'_>,
) -> (String, String) {
    let covers = if presented.is_empty() {
        match leaf {
            Some(leaf) => leaf.names_text(),
            None => "no name".to_owned(),
        }
    } else {
        presented.join(", ")
    };
    if let Some(ip) = cx.ip {
        let ip_sans: Vec<&String> = presented
            .iter()
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect();
        if ip_sans.is_empty() {
            return (
                format!("the certificate has no IP address SAN, and {ip} is an IP address"),
                format!(
                    "you connected to the IP address {ip}, but the certificate covers only {covers}: \
                     a client given an IP address checks it against the certificate's IP SANs and \
                     sends no SNI. Put a name the certificate covers in the turns: URI (here: \
                     --tls-name NAME or turns:NAME), or issue the certificate with IP:{ip} in its \
                     subjectAltName (public CAs rarely do)"
                ),
            );
        }
        let list = ip_sans
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return (
            format!("the certificate is not valid for {ip}"),
            format!(
                "the certificate covers the IP addresses {list}, not {ip} (all its names: \
                 {covers}): connect to one of them, or reissue it with IP:{ip}"
            ),
        );
    }
    let mut diagnosis = format!(
        "the certificate covers {covers}; you connected to {}: use a name it covers in the \
         turns: URI, or serve a certificate for {} (`cert`/`pkey`, or tern's tls-sni-cert for \
         this name)",
        cx.name, cx.name
    );
    if presented.is_empty() {
        let _ = write!(
            diagnosis,
            ". Clients take names from subjectAltName only, never from the subject's common name: \
             reissue it with DNS:{}",
            cx.name
        );
    }
    (
        format!("the certificate is not valid for {}", cx.name),
        diagnosis,
    )
}

/// The chain does not lead to a trusted root.
fn unknown_issuer(cx: &Context<'_>) -> (String, String) {
    let trusted = match cx.ca {
        Some((path, subjects)) => format!("--ca {path} (which holds {})", subjects.join(", ")),
        None => "Mozilla's root store (pass --ca FILE to trust a private CA)".to_owned(),
    };
    let Some(leaf) = cx.chain.first() else {
        return (
            "the certificate's issuer is not trusted".to_owned(),
            format!("the chain the server sent does not lead to a root in {trusted}"),
        );
    };
    let last = cx.chain.last().unwrap_or(leaf);
    if cx.chain.len() == 1 && leaf.self_issued {
        return (
            format!(
                "the server sent a self-signed certificate ({})",
                leaf.subject
            ),
            format!(
                "nothing vouches for a self-signed certificate: clients accept it only where it \
                 is installed as a trusted root. Use a certificate from a CA (e.g. Let's \
                 Encrypt); it is not in {trusted}"
            ),
        );
    }
    if cx.chain.len() == 1 {
        return (
            format!(
                "the server sent only its own certificate, issued by \"{}\", which is not a \
                 trusted root",
                leaf.issuer
            ),
            format!(
                "\"{}\" is not in {trusted}. If it is an intermediate CA (Let's Encrypt's R10, \
                 R11, E5 and E6 are), the server must send it too: make `cert` the full chain \
                 (fullchain.pem, not cert.pem). If it is a private CA, every client must trust \
                 it",
                leaf.issuer
            ),
        );
    }
    let n = cx.chain.len();
    if last.self_issued {
        return (
            format!(
                "the chain the server sent ends at the root \"{}\", which is not trusted",
                last.subject
            ),
            format!(
                "\"{}\" is a root CA that is not in {trusted}: a private CA, which every client \
                 must trust (browsers will refuse it otherwise)",
                last.subject
            ),
        );
    }
    (
        format!(
            "the chain the server sent ({n} certificates) ends at \"{}\", issued by \"{}\", which \
             is not trusted",
            last.subject, last.issuer
        ),
        format!(
            "\"{}\" is not in {trusted}: is an intermediate missing from `cert` (use the CA's \
             fullchain.pem), or is it a private CA that clients must trust?",
            last.issuer
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(names: &[&str], subject: &str, issuer: &str) -> CertFacts {
        CertFacts {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            subject: subject.into(),
            issuer: issuer.into(),
            self_issued: subject == issuer,
            not_before: 1_600_000_000,
            not_after: 1_700_000_000,
        }
    }

    fn cx<'a>(name: &'a str, chain: &'a [CertFacts]) -> Context<'a> {
        Context {
            name,
            ip: name.parse().ok(),
            ca: None,
            chain,
            now: 1_700_000_000 + 3 * DAY,
            port: 5349,
        }
    }

    #[test]
    fn dates() {
        // `date -u -d @1700000000` says Tue Nov 14 22:13:20 UTC 2023.
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(days(0, 3 * DAY + 5), 3);
        assert_eq!(days(3 * DAY, 0), -3);
    }

    #[test]
    fn expired_names_the_date() {
        let chain = [facts(&["turn.test"], "turn.test", "CA")];
        let (what, diagnosis) = certificate(&CertificateError::Expired, &cx("turn.test", &chain));
        assert_eq!(
            what,
            "the certificate expired on 2023-11-14 22:13 UTC (3 days ago)"
        );
        assert!(diagnosis.contains("renew the certificate"));
    }

    #[test]
    fn unknown_issuer_tells_a_missing_intermediate_from_a_private_root() {
        let leaf = facts(&["turn.test"], "turn.test", "R11");
        let (what, diagnosis) = unknown_issuer(&cx("turn.test", std::slice::from_ref(&leaf)));
        assert!(
            what.contains("only its own certificate, issued by \"R11\""),
            "{what}"
        );
        assert!(diagnosis.contains("fullchain.pem"), "{diagnosis}");
        assert!(diagnosis.contains("Mozilla's root store"), "{diagnosis}");

        let chain = [leaf.clone(), facts(&[], "Private Root", "Private Root")];
        let (what, _) = unknown_issuer(&cx("turn.test", &chain));
        assert!(what.contains("ends at the root \"Private Root\""), "{what}");

        let own = [facts(&["turn.test"], "turn.test", "turn.test")];
        let (what, _) = unknown_issuer(&cx("turn.test", &own));
        assert!(what.contains("self-signed"), "{what}");
    }

    #[test]
    fn wrong_name_and_ip_without_ip_san() {
        let chain = [facts(&["turn.test", "alt.test"], "turn.test", "CA")];
        let names: Vec<String> = chain[0].names.clone();
        let (what, diagnosis) = wrong_name(&names, chain.first(), &cx("other.test", &chain));
        assert_eq!(what, "the certificate is not valid for other.test");
        assert!(diagnosis.contains("covers turn.test, alt.test; you connected to other.test"));

        let (what, diagnosis) = wrong_name(&names, chain.first(), &cx("192.0.2.1", &chain));
        assert!(what.contains("no IP address SAN"), "{what}");
        assert!(diagnosis.contains("IP:192.0.2.1"), "{diagnosis}");

        let with_ip = vec!["turn.test".to_owned(), "192.0.2.9".to_owned()];
        let (what, diagnosis) = wrong_name(&with_ip, None, &cx("192.0.2.1", &chain));
        assert_eq!(what, "the certificate is not valid for 192.0.2.1");
        assert!(
            diagnosis.contains("covers the IP addresses 192.0.2.9"),
            "{diagnosis}"
        );
    }
}
