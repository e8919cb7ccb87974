//! The certificate store: reload swaps for new connections only, a failed reload keeps the
//! old certificates, a Kubernetes Secret's symlink swap is seen, expiry facts.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::HandshakeKind;
use tern_server::tls::{Accepting, Generation, TlsError, TlsSettings};

use crate::pki::{Pki, TestKey};
use crate::pump::{connect, connect_accepting, echo, peer_leaf};
use crate::{store, BOTH, ONLY_12, ONLY_13};

#[test]
fn reload_serves_new_connections_only() {
    let pki = Pki::new("reload-swap");
    let old = pki.leaf("turn", &["turn.test"]);
    let store = store(TlsSettings::new(&old.cert, &old.key));
    let before = store.current();
    let clients = [pki.client(ONLY_13, &[]), pki.client(ONLY_12, &[])];
    let mut open: Vec<_> = clients
        .iter()
        .map(|client| connect(store.current(), client, "turn.test").unwrap())
        .collect();
    // A connection whose ClientHello is still on its way when the reload happens.
    let pending = Accepting::new(store.current());

    let new = pki.leaf("turn", &["turn.test"]); // the same files, a new key and certificate
    let after = store.reload().unwrap();
    assert!(!Arc::ptr_eq(&before, &after));
    assert!(Arc::ptr_eq(&after, &store.current()));

    for client in &clients {
        let (c, _) = connect(store.current(), client, "turn.test").unwrap();
        assert_eq!(peer_leaf(&c), new.der.to_vec());
        // The old generation's tickets do not resume: the client sees the new certificate.
        assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
    }
    let (c, _) = connect_accepting(pending, &pki.client(BOTH, &[]), "turn.test").unwrap();
    assert_eq!(peer_leaf(&c), old.der.to_vec());
    for (c, s) in &mut open {
        assert_eq!(peer_leaf(c), old.der.to_vec());
        echo(c, s, b"still open after the reload");
    }
}

#[test]
fn failed_reload_keeps_the_old_certificates() {
    let pki = Pki::new("reload-fail");
    let old = pki.leaf("turn", &["turn.test"]);
    let store = store(TlsSettings::new(&old.cert, &old.key));
    let before = store.current();
    let client = pki.client(BOTH, &[]);

    std::fs::write(&old.key, "not a key\n").unwrap();
    let e = store.reload().unwrap_err();
    assert!(matches!(e, TlsError::NoKey { .. }), "{e:?}");
    assert_eq!(e.path(), Some(old.key.as_path()));
    assert!(Arc::ptr_eq(&before, &store.current()));
    let (c, _) = connect(store.current(), &client, "turn.test").unwrap();
    assert_eq!(peer_leaf(&c), old.der.to_vec());

    // A certificate renewed before its key is written: the key does not match yet.
    let renewed = pki.leaf("renewed", &["turn.test"]);
    std::fs::copy(&renewed.cert, &old.cert).unwrap();
    std::fs::write(&old.key, TestKey::generate().file_pem).unwrap();
    let e = store.reload().unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&old.cert.display().to_string()),
        "{e}"
    );
    assert!(Arc::ptr_eq(&before, &store.current()));

    std::fs::copy(&renewed.key, &old.key).unwrap();
    store.reload().unwrap();
    let (c, _) = connect(store.current(), &client, "turn.test").unwrap();
    assert_eq!(peer_leaf(&c), renewed.der.to_vec());
}

fn fingerprint(path: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    std::fs::read(path).unwrap().hash(&mut h);
    h.finish()
}

#[test]
fn kubernetes_secret_symlink_swap() {
    // A mounted Secret: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/. An update
    // writes a new timestamped directory and renames a new ..data link over the old one.
    let pki = Pki::new("kubernetes");
    let mount = pki.dir.join("mount");
    let publish = |version: &str, leaf: &crate::pki::Leaf| {
        let dir = mount.join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::rename(&leaf.cert, dir.join("tls.crt")).unwrap();
        std::fs::rename(&leaf.key, dir.join("tls.key")).unwrap();
        let tmp = mount.join("..data_tmp");
        std::os::unix::fs::symlink(version, &tmp).unwrap();
        std::fs::rename(&tmp, mount.join("..data")).unwrap();
    };
    let first = pki.leaf("first", &["turn.test"]);
    publish("..2026_01_01_00_00_00.1", &first);
    for file in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), mount.join(file)).unwrap();
    }
    let settings = TlsSettings::new(mount.join("tls.crt"), mount.join("tls.key"));
    let store = store(settings.clone());
    assert_eq!(store.watched_files(), settings.files());
    let prints: Vec<u64> = settings.files().iter().map(|f| fingerprint(f)).collect();

    let second = pki.leaf("second", &["turn.test"]);
    publish("..2026_02_01_00_00_00.2", &second);
    // A watch hashing the content of the configured paths sees the swap.
    let now: Vec<u64> = settings.files().iter().map(|f| fingerprint(f)).collect();
    assert!(prints.iter().zip(&now).all(|(a, b)| a != b));
    store.reload().unwrap();
    let (c, _) = connect(store.current(), &pki.client(BOTH, &[]), "turn.test").unwrap();
    assert_eq!(peer_leaf(&c), second.der.to_vec());
}

#[test]
fn install_a_generation_with_new_settings() {
    let pki = Pki::new("reload-with");
    let leaf = pki.leaf("turn", &["turn.test"]);
    let other = pki.leaf("other", &["other.test"]);
    let store = store(TlsSettings::new(&leaf.cert, &leaf.key));
    let mut settings = TlsSettings::new(&leaf.cert, &leaf.key);
    let value = format!(
        "other.test:{}:{}",
        other.cert.display(),
        other.key.display()
    );
    settings.sni.push(value.parse().unwrap());
    settings.tls13_only = true;
    let loaded = Arc::new(Generation::load(settings.clone()).unwrap());
    let generation = store.install(loaded.clone());
    assert!(Arc::ptr_eq(&generation, &loaded));
    assert!(Arc::ptr_eq(&store.current(), &loaded));
    assert_eq!(generation.settings(), &settings);
    assert_eq!(store.watched_files().len(), 4);
    let (c, _) = connect(store.current(), &pki.client(BOTH, &[]), "other.test").unwrap();
    assert_eq!(peer_leaf(&c), other.der.to_vec());
    // Bad new settings fail to load, so there is nothing to install: the ones in force stay.
    let mut bad = settings.clone();
    bad.cert = pki.dir.join("missing.crt");
    assert!(Generation::load(bad).is_err());
    assert_eq!(store.current().settings(), &settings);
}

#[test]
fn expiry_facts() {
    let pki = Pki::new("expiry");
    let day = Duration::from_secs(86_400);
    let valid = pki.leaf_with(
        "valid",
        &["turn.test"],
        TestKey::generate(),
        |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2040, 1, 1);
        },
        true,
    );
    let expired = pki.leaf_with(
        "expired",
        &["old.test"],
        TestKey::generate(),
        |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        },
        true,
    );
    let mut settings = TlsSettings::new(&valid.cert, &valid.key);
    let value = format!(
        "old.test:{}:{}",
        expired.cert.display(),
        expired.key.display()
    );
    settings.sni.push(value.parse().unwrap());
    // An expired certificate still loads (coturn's behaviour); its days left are negative.
    let store = store(settings);
    let generation = store.current();
    let [valid_facts, expired_facts] = generation.certificates() else {
        panic!("two certificates");
    };
    let y2040 = 2_208_988_800; // 2040-01-01T00:00:00Z
    let y2001 = 978_307_200; // 2001-01-01T00:00:00Z
    assert_eq!(valid_facts.not_after, y2040);
    assert_eq!(expired_facts.not_after, y2001);
    assert_eq!(generation.earliest_expiry(), y2001);
    let now = UNIX_EPOCH + Duration::from_secs(y2040 as u64) - 30 * day - Duration::from_secs(1);
    assert_eq!(valid_facts.expiry(now).days_left, 30);
    assert!(valid_facts.is_valid_at(now));
    assert!(expired_facts.expiry(SystemTime::now()).days_left < -365 * 20);
    assert!(!expired_facts.is_valid_at(SystemTime::now()));
    // A client refuses the expired one, of course.
    let failed = connect(store.current(), &pki.client(BOTH, &[]), "old.test").unwrap_err();
    assert!(failed.client.is_some(), "{failed:?}");
}
