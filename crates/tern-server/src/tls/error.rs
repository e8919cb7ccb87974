//! Why a TLS configuration could not be built: one variant per mistake, each naming the file
//! (or the value) at fault.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A TLS configuration that could not be loaded. At start it stops the server; on reload
/// the previous certificates stay in force.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file is missing or cannot be read.
    CertUnreadable {
        /// The `cert` (or SNI certificate) file.
        path: PathBuf,
        /// What reading it said.
        source: io::Error,
    },
    /// The certificate file is not valid PEM (a section without its end, bad base64).
    CertPem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The certificate file holds no `CERTIFICATE` section.
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the file is not a valid X.509 certificate.
    CertInvalid {
        /// The file.
        path: PathBuf,
        /// Which certificate of the chain (0 is the leaf) and what is wrong with it.
        reason: String,
    },
    /// The key file is missing or cannot be read.
    KeyUnreadable {
        /// The `pkey` (or SNI key) file.
        path: PathBuf,
        /// What reading it said.
        source: io::Error,
    },
    /// The key file is not valid PEM.
    KeyPem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The key file holds no `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` section.
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is encrypted (an `ENCRYPTED PRIVATE KEY` section, a legacy `Proc-Type:
    /// 4,ENCRYPTED` header) or `pkey-pwd` is set. tern reads only unencrypted keys.
    EncryptedKey {
        /// The file.
        path: PathBuf,
        /// Whether `pkey-pwd` was given.
        pkey_pwd: bool,
    },
    /// The key parsed but rustls cannot sign with it (an unsupported algorithm or size).
    KeyUnsupported {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The key is not the one the certificate was issued for.
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// `cipher-list` leaves no cipher suite for any enabled TLS version.
    NoUsableCipherSuite {
        /// The list as given.
        list: String,
    },
    /// Two SNI certificates are for the same name.
    DuplicateSniName {
        /// The name.
        name: String,
    },
    /// rustls refused the assembled configuration.
    Config(rustls::Error),
}

impl TlsError {
    /// The file at fault, if the error is about one (the certificate file for a key that
    /// does not match it).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::CertUnreadable { path, .. }
            | Self::CertPem { path, .. }
            | Self::NoCertificate { path }
            | Self::CertInvalid { path, .. }
            | Self::KeyUnreadable { path, .. }
            | Self::KeyPem { path, .. }
            | Self::NoKey { path }
            | Self::EncryptedKey { path, .. }
            | Self::KeyUnsupported { path, .. } => Some(path),
            Self::KeyMismatch { cert, .. } => Some(cert),
            Self::NoUsableCipherSuite { .. } | Self::DuplicateSniName { .. } | Self::Config(_) => {
                None
            }
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CertUnreadable { path, source } => {
                write!(
                    f,
                    "cannot read the certificate file {}: {source}",
                    path.display()
                )
            }
            Self::CertPem { path, reason } => write!(
                f,
                "the certificate file {} is not valid PEM: {reason}",
                path.display()
            ),
            Self::NoCertificate { path } => write!(
                f,
                "the certificate file {} holds no certificate (no -----BEGIN CERTIFICATE----- \
                 section)",
                path.display()
            ),
            Self::CertInvalid { path, reason } => write!(
                f,
                "the certificate file {} holds an invalid certificate: {reason}",
                path.display()
            ),
            Self::KeyUnreadable { path, source } => {
                write!(
                    f,
                    "cannot read the private key file {}: {source}",
                    path.display()
                )
            }
            Self::KeyPem { path, reason } => write!(
                f,
                "the private key file {} is not valid PEM: {reason}",
                path.display()
            ),
            Self::NoKey { path } => write!(
                f,
                "the private key file {} holds no private key (PRIVATE KEY, RSA PRIVATE KEY \
                 or EC PRIVATE KEY section)",
                path.display()
            ),
            Self::EncryptedKey { path, pkey_pwd } => {
                let p = path.display();
                let why = if *pkey_pwd {
                    "pkey-pwd is set, but tern does not read encrypted private keys"
                } else {
                    "the private key is encrypted, and tern does not read encrypted private keys"
                };
                write!(
                    f,
                    "{p}: {why}; decrypt it once (openssl pkey -in {p} -out {p}.plain), point \
                     pkey at the result and remove pkey-pwd"
                )
            }
            Self::KeyUnsupported { path, reason } => write!(
                f,
                "the private key in {} cannot be used: {reason}",
                path.display()
            ),
            Self::KeyMismatch { cert, key } => write!(
                f,
                "the private key in {} does not belong to the certificate in {}",
                key.display(),
                cert.display()
            ),
            Self::NoUsableCipherSuite { list } => write!(
                f,
                "cipher-list `{list}` leaves no cipher suite that rustls offers for the enabled \
                 TLS versions"
            ),
            Self::DuplicateSniName { name } => {
                write!(f, "two certificates are given for the server name {name}")
            }
            Self::Config(e) => write!(f, "rustls refused the TLS configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::CertUnreadable { source, .. } | Self::KeyUnreadable { source, .. } => {
                Some(source)
            }
            Self::Config(e) => Some(e),
            _ => None,
        }
    }
}
