//! A test CA made at test time with rcgen and a leaf it signs for 127.0.0.1 and localhost,
//! shared by the TLS suites.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A test CA and a leaf it signs for 127.0.0.1 and localhost, as PEM files in a directory
/// removed on drop.
pub struct Pki {
    dir: PathBuf,
    /// The CA certificate (turnutils_uclient does not verify; the probe does).
    #[allow(dead_code)]
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tern-e2e-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "tern e2e test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let mut leaf =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &ca).unwrap();
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Self {
            ca: write("ca.pem", ca.pem()),
            cert: write("leaf.crt", cert.pem()),
            key: write("leaf.key", key.serialize_pem()),
            dir,
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
