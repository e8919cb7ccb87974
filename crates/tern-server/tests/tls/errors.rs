//! Every way loading fails, each naming its file.

use std::path::Path;

use tern_server::tls::{Generation, SniCert, TlsError, TlsSettings};

use crate::pki::{Pki, KEYS};

fn fails(settings: TlsSettings) -> TlsError {
    Generation::load(settings).expect_err("loading should fail")
}

/// The error names `path` in its message and as its file.
fn names(e: &TlsError, path: &Path) {
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert_eq!(e.path(), Some(path), "{text}");
}

#[test]
fn certificate_file_errors() {
    let pki = Pki::new("cert-errors");
    let leaf = pki.leaf("turn", &["turn.test"]);
    let with_cert = |cert: &Path| TlsSettings::new(cert, &leaf.key);

    let missing = pki.dir.join("missing.crt");
    let e = fails(with_cert(&missing));
    assert!(matches!(e, TlsError::CertUnreadable { .. }), "{e:?}");
    names(&e, &missing);
    assert!(e.to_string().contains("cannot read the certificate file"));

    // A directory cannot be read as a file (root reads any file, so permissions would not do).
    let e = fails(with_cert(&pki.dir));
    assert!(matches!(e, TlsError::CertUnreadable { .. }), "{e:?}");
    names(&e, &pki.dir);

    // The key file holds no certificate.
    let e = fails(with_cert(&leaf.key));
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
    names(&e, &leaf.key);

    let text = std::fs::read_to_string(&leaf.cert).unwrap();
    let truncated = pki.write("truncated.crt", &text[..text.len() / 3]);
    let e = fails(with_cert(&truncated));
    assert!(matches!(e, TlsError::CertPem { .. }), "{e:?}");
    names(&e, &truncated);

    let garbage = pki.write(
        "garbage.crt",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let e = fails(with_cert(&garbage));
    assert!(matches!(e, TlsError::CertInvalid { .. }), "{e:?}");
    names(&e, &garbage);
}

#[test]
fn key_file_errors() {
    let pki = Pki::new("key-errors");
    let leaf = pki.leaf("turn", &["turn.test"]);
    let with_key = |key: &Path| TlsSettings::new(&leaf.cert, key);

    let missing = pki.dir.join("missing.key");
    let e = fails(with_key(&missing));
    assert!(matches!(e, TlsError::KeyUnreadable { .. }), "{e:?}");
    names(&e, &missing);
    assert!(e.to_string().contains("cannot read the private key file"));

    // The certificate file holds no key.
    let e = fails(with_key(&leaf.cert));
    assert!(matches!(e, TlsError::NoKey { .. }), "{e:?}");
    names(&e, &leaf.cert);

    let broken = pki.write(
        "broken.key",
        "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n",
    );
    let e = fails(with_key(&broken));
    assert!(matches!(e, TlsError::KeyPem { .. }), "{e:?}");
    names(&e, &broken);

    let junk = pki.write(
        "junk.key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let e = fails(with_key(&junk));
    assert!(matches!(e, TlsError::KeyUnsupported { .. }), "{e:?}");
    names(&e, &junk);
}

#[test]
fn encrypted_keys_and_pkey_pwd_are_refused() {
    let pki = Pki::new("encrypted");
    let leaf = pki.leaf("turn", &["turn.test"]);
    for file in ["p256.encrypted.pem", "rsa2048.legacy-encrypted.pem"] {
        let key = Path::new(KEYS).join(file);
        let e = fails(TlsSettings::new(&leaf.cert, &key));
        assert!(
            matches!(
                e,
                TlsError::EncryptedKey {
                    pkey_pwd: false,
                    ..
                }
            ),
            "{e:?}"
        );
        names(&e, &key);
        let text = e.to_string();
        assert!(
            text.contains("encrypted") && text.contains("openssl pkey"),
            "{text}"
        );
    }
    let mut settings = TlsSettings::new(&leaf.cert, &leaf.key);
    settings.pkey_pwd = true;
    let e = fails(settings);
    assert!(
        matches!(e, TlsError::EncryptedKey { pkey_pwd: true, .. }),
        "{e:?}"
    );
    names(&e, &leaf.key);
    assert!(e.to_string().contains("pkey-pwd"), "{e}");
}

#[test]
fn key_of_another_certificate_is_refused() {
    let pki = Pki::new("mismatch");
    let leaf = pki.leaf("turn", &["turn.test"]);
    let other = pki.leaf("other", &["other.test"]);
    let e = fails(TlsSettings::new(&leaf.cert, &other.key));
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    names(&e, &leaf.cert);
    let text = e.to_string();
    assert!(text.contains(&other.key.display().to_string()), "{text}");
    assert!(
        text.contains("does not belong to the certificate"),
        "{text}"
    );
}

#[test]
fn sni_certificate_errors_name_their_files() {
    let pki = Pki::new("sni-errors");
    let leaf = pki.leaf("turn", &["turn.test"]);
    let other = pki.leaf("other", &["other.test"]);
    let sni = |cert: &Path, key: &Path| {
        let mut s = TlsSettings::new(&leaf.cert, &leaf.key);
        let value = format!("other.test:{}:{}", cert.display(), key.display());
        s.sni.push(value.parse::<SniCert>().unwrap());
        s
    };
    let missing = pki.dir.join("gone.crt");
    let e = fails(sni(&missing, &other.key));
    assert!(matches!(e, TlsError::CertUnreadable { .. }), "{e:?}");
    names(&e, &missing);
    let e = fails(sni(&other.cert, &leaf.key));
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    names(&e, &other.cert);

    let mut twice = sni(&other.cert, &other.key);
    twice.sni.push(twice.sni[0].clone());
    let e = fails(twice);
    assert!(matches!(e, TlsError::DuplicateSniName { ref name } if name == "other.test"));
}

#[test]
fn cipher_list_with_no_usable_suite() {
    let pki = Pki::new("no-suite");
    let leaf = pki.leaf("turn", &["turn.test"]);
    let mut settings = TlsSettings::new(&leaf.cert, &leaf.key);
    settings.tls13_only = true;
    settings.cipher_list = Some("TLS_AES_128_CCM_SHA256".into());
    let e = fails(settings.clone());
    assert!(matches!(e, TlsError::NoUsableCipherSuite { .. }), "{e:?}");
    assert!(e.to_string().contains("TLS_AES_128_CCM_SHA256"), "{e}");
    assert_eq!(e.path(), None);
    settings.tls13_only = false;
    settings.cipher_list = Some("RC4-SHA:!ALL:TLS_AES_128_CCM_8_SHA256".into());
    let e = fails(settings);
    assert!(matches!(e, TlsError::NoUsableCipherSuite { .. }), "{e:?}");
}
