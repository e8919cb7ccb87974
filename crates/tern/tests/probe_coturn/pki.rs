//! A test CA made at test time with rcgen: a root, an intermediate it signs, and leaves the
//! intermediate signs, written as PEM files for coturn (`--cert`, `--pkey`) and the probe
//! (`--ca`).
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// The root's common name.
pub const ROOT: &str = "tern probe test root";
/// The intermediate's common name.
pub const INTERMEDIATE: &str = "tern probe test intermediate";

/// A root and an intermediate, and a directory for their files, removed on drop.
pub struct Pki {
    pub dir: PathBuf,
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// How a leaf is made and served.
pub struct LeafSpec<'a> {
    /// Its subjectAltNames: DNS names, or IP addresses.
    pub names: &'a [&'a str],
    /// notBefore and notAfter as years (1 January), or rcgen's default validity.
    pub years: Option<(i32, i32)>,
    /// The certificate file holds the intermediate after the leaf (a full chain).
    pub full_chain: bool,
}

/// A leaf's files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

impl Pki {
    /// A new root and intermediate; files go to a directory named after `test`.
    pub fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("tern-probe-pki-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root =
            CertifiedIssuer::self_signed(ca_params(ROOT), KeyPair::generate().unwrap()).unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params(INTERMEDIATE),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        Self {
            dir,
            root,
            intermediate,
        }
    }

    /// The root's certificate, as `--ca` takes it.
    pub fn root_pem(&self) -> PathBuf {
        self.write("root.pem", self.root.pem())
    }

    /// A leaf signed by the intermediate, in `<stem>.crt` and `<stem>.key`.
    pub fn leaf(&self, stem: &str, spec: &LeafSpec<'_>) -> Leaf {
        let names: Vec<String> = spec.names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.names[0]);
        if let Some((from, to)) = spec.years {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.intermediate).unwrap();
        let mut pem = cert.pem();
        if spec.full_chain {
            pem.push_str(&self.intermediate.pem());
        }
        Leaf {
            cert: self.write(&format!("{stem}.crt"), pem),
            key: self.write(&format!("{stem}.key"), key.serialize_pem()),
        }
    }

    fn write(&self, name: &str, contents: String) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
