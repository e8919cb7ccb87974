//! What the TLS part is configured with: plain data, filled by the binary from coturn's keys
//! (`cert`, `pkey`, `cipher-list`, `ec-curve-name`, `no-tlsv1_2`, `pkey-pwd`) and tern's own
//! repeatable [`SNI_CERT_KEY`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// tern's own key for a certificate served to clients that ask for another name (SNI):
/// `tls-sni-cert=NAME:CERT:KEY`, repeatable. See [`SniCert`].
pub const SNI_CERT_KEY: &str = "tls-sni-cert";

/// coturn keys about Diffie-Hellman parameters. rustls has no finite-field DHE suite (only
/// ECDHE), so each of them draws one warning ([`no_dhe_warning`]) and is otherwise ignored.
pub const NO_DHE_KEYS: [&str; 3] = ["dh-file", "dh566", "dh1066"];

/// The warning for a key of [`NO_DHE_KEYS`].
pub fn no_dhe_warning(key: &str) -> String {
    format!(
        "`{key}` is ignored: tern's TLS has no finite-field DHE suites, only ECDHE \
         (ec-curve-name chooses its group)"
    )
}

/// The TLS configuration: the default certificate, the ones for other names, and the
/// protocol choices. Building it into a server configuration reads the files
/// ([`super::Generation::load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `cert`: PEM file with the certificate chain, leaf first, then the intermediates. It is
    /// served as given, so it should hold the whole chain up to (not including) the root.
    pub cert: PathBuf,
    /// `pkey`: PEM file with the leaf's private key (PKCS#8, PKCS#1 RSA or SEC1 EC),
    /// unencrypted.
    pub key: PathBuf,
    /// [`SNI_CERT_KEY`]: certificates for other names; a client whose SNI matches none of
    /// them (or that sends none) gets the default one.
    pub sni: Vec<SniCert>,
    /// `cipher-list`: an OpenSSL cipher string mapped onto the suites rustls offers
    /// ([`super::ciphers`]); `None` or empty keeps rustls' defaults.
    pub cipher_list: Option<String>,
    /// `no-tlsv1_2`: TLS 1.3 only. (`no-tlsv1` and `no-tlsv1_1` are always in force: rustls
    /// has neither.)
    pub tls13_only: bool,
    /// `ec-curve-name`: the one key-exchange group to use (`prime256v1`, `secp384r1`,
    /// `X25519`, ...); `None` keeps rustls' groups ([`super::curves`]).
    pub ec_curve_name: Option<String>,
    /// Whether `pkey-pwd` was given. tern reads no encrypted key, so loading then fails with
    /// [`super::TlsError::EncryptedKey`].
    pub pkey_pwd: bool,
}

impl TlsSettings {
    /// Settings with a default certificate and key and every other choice left at its
    /// default.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            sni: Vec::new(),
            cipher_list: None,
            tls13_only: false,
            ec_curve_name: None,
            pkey_pwd: false,
        }
    }

    /// Every file the settings name (certificates and keys, default first): the files to
    /// watch for changes. A watch that hashes their content sees a Kubernetes Secret's
    /// symlink swap, since reading a path follows the links to the new data.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.cert.clone(), self.key.clone()];
        for s in &self.sni {
            files.push(s.cert.clone());
            files.push(s.key.clone());
        }
        files
    }
}

/// A certificate for the clients that ask for `name` in their SNI.
///
/// Written `NAME:CERT:KEY` ([`SNI_CERT_KEY`]): the name is up to the first `:`, the key
/// file after the last one, and the certificate file is what lies between (so it may hold
/// a `:`; the key file may not). `NAME` is a DNS name, or `*.` and a domain to match any
/// single label in front of it (`*.example.org` matches `turn.example.org`, not
/// `example.org` nor `a.b.example.org`). Names are compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCert {
    /// The server name, lowercase; may start with `*.`.
    pub name: String,
    /// PEM file with the chain for this name, leaf first.
    pub cert: PathBuf,
    /// PEM file with its private key.
    pub key: PathBuf,
}

/// Why a [`SNI_CERT_KEY`] value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCertError(String);

impl fmt::Display for SniCertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SniCertError {}

impl FromStr for SniCert {
    type Err = SniCertError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| SniCertError(format!("`{value}`: {why} (NAME:CERT:KEY)"));
        let (name, files) = value
            .split_once(':')
            .ok_or_else(|| err("needs a name, a certificate file and a key file"))?;
        let (cert, key) = files
            .rsplit_once(':')
            .ok_or_else(|| err("needs a certificate file and a key file after the name"))?;
        let name = name.trim().to_ascii_lowercase();
        if !valid_name(&name) {
            return Err(err(
                "the name is not a DNS name or a `*.` wildcard of one label",
            ));
        }
        if cert.trim().is_empty() || key.trim().is_empty() {
            return Err(err("a file name is empty"));
        }
        Ok(Self {
            name,
            cert: cert.trim().into(),
            key: key.trim().into(),
        })
    }
}

/// A DNS name of letters, digits, `-` and `_` in dot-separated labels, optionally behind `*.`.
fn valid_name(name: &str) -> bool {
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_cert_syntax() {
        let s: SniCert = "TURN.example.org:/etc/tls/a.crt:/etc/tls/a.key"
            .parse()
            .unwrap();
        assert_eq!(s.name, "turn.example.org");
        assert_eq!(s.cert, PathBuf::from("/etc/tls/a.crt"));
        assert_eq!(s.key, PathBuf::from("/etc/tls/a.key"));
        // The certificate file may hold a colon; the name and the key file may not.
        let s: SniCert = "*.example.org:/certs/x:y.pem:/keys/k.pem".parse().unwrap();
        assert_eq!(s.name, "*.example.org");
        assert_eq!(s.cert, PathBuf::from("/certs/x:y.pem"));
        for bad in [
            "turn.example.org",
            "turn.example.org:/only-one-file",
            ":/a:/b",
            "bad name:/a:/b",
            "*.:/a:/b",
            "a.*.example.org:/a:/b",
            "192.0.2.1:/a:/b",
            "-x.example.org:/a:/b",
            "x.example.org::/b",
        ] {
            let e = bad.parse::<SniCert>().expect_err(bad).to_string();
            assert!(e.contains(bad) && e.contains("NAME:CERT:KEY"), "{e}");
        }
    }

    #[test]
    fn files_to_watch() {
        let mut s = TlsSettings::new("/c.pem", "/k.pem");
        s.sni.push("a.test:/a.pem:/ak.pem".parse().unwrap());
        let files: Vec<String> = s.files().iter().map(|p| p.display().to_string()).collect();
        assert_eq!(files, ["/c.pem", "/k.pem", "/a.pem", "/ak.pem"]);
        assert!(no_dhe_warning("dh566").contains("`dh566` is ignored"));
    }
}
