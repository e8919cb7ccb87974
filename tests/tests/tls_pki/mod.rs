//! A test CA made at test time with rcgen and a leaf it signs for 127.0.0.1 and localhost,
//! shared by the TLS suites.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber,
};

/// A test CA and a leaf it signs for 127.0.0.1 and localhost, as PEM files in a directory
/// removed on drop.
pub struct Pki {
    dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (turnutils_uclient does not verify; the probe does).
    #[allow(dead_code)]
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A leaf's PEM files and the DER of its certificate, which a client sees.
#[allow(dead_code)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

impl Pki {
    /// A new CA and its first leaf (serial 1) in `leaf.crt` and `leaf.key`.
    pub fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tern-e2e-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "tern e2e test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, issuer.pem()).unwrap();
        let mut pki = Self {
            ca,
            cert: PathBuf::new(),
            key: PathBuf::new(),
            issuer,
            dir,
        };
        let first = pki.issue("leaf", 1);
        (pki.cert, pki.key) = (first.cert, first.key);
        pki
    }

    /// Another leaf of the same CA for 127.0.0.1 and localhost, with its own key and
    /// `serial`, in `<name>.crt` and `<name>.key` (a renewal, ready to be moved into place).
    pub fn issue(&self, name: &str, serial: u64) -> Leaf {
        let mut leaf =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &self.issuer).unwrap();
        let write = |file: String, text: String| {
            let p = self.dir.join(file);
            std::fs::write(&p, text).unwrap();
            p
        };
        Leaf {
            cert: write(format!("{name}.crt"), cert.pem()),
            key: write(format!("{name}.key"), key.serialize_pem()),
            der: cert.der().to_vec(),
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
