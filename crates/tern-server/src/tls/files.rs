//! Reading certificate chains and private keys from PEM files with rustls-pki-types.

use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Every `CERTIFICATE` section of the file, in order (leaf first). Other sections are
/// skipped, so a file holding the key too is fine.
pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::CertUnreadable {
        path: path.into(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::CertPem {
            path: path.into(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(chain)
}

/// The first private key of the file. An encrypted key, or `pkey_pwd` (coturn's
/// `pkey-pwd` was given), is refused with [`TlsError::EncryptedKey`].
pub(crate) fn read_key(path: &Path, pkey_pwd: bool) -> Result<PrivateKeyDer<'static>, TlsError> {
    if pkey_pwd {
        return Err(TlsError::EncryptedKey {
            path: path.into(),
            pkey_pwd: true,
        });
    }
    let mut bytes = std::fs::read(path).map_err(|source| TlsError::KeyUnreadable {
        path: path.into(),
        source,
    })?;
    let key = if is_encrypted(&bytes) {
        Err(TlsError::EncryptedKey {
            path: path.into(),
            pkey_pwd: false,
        })
    } else {
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
            pem::Error::NoItemsFound => TlsError::NoKey { path: path.into() },
            e => TlsError::KeyPem {
                path: path.into(),
                reason: e.to_string(),
            },
        })
    };
    // The PEM text is the key too: do not leave it in freed memory. (The parsed key clears
    // itself when dropped.)
    bytes.fill(0);
    std::hint::black_box(&bytes);
    key
}

/// Whether PEM text holds an encrypted key: a PKCS#8 `ENCRYPTED PRIVATE KEY` section, or a
/// legacy OpenSSL one whose headers say `Proc-Type: 4,ENCRYPTED`.
fn is_encrypted(pem: &[u8]) -> bool {
    let has = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_forms() {
        assert!(is_encrypted(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"
        ));
        assert!(is_encrypted(
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n"
        ));
        assert!(!is_encrypted(
            b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
        ));
    }
}
