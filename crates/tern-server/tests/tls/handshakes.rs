//! Handshakes: versions, the chain, SNI, ALPN, resumption, key formats, cipher-list and
//! ec-curve-name.

use rustls::{CipherSuite, Error, HandshakeKind, NamedGroup, ProtocolVersion};
use tern_server::tls::{SniCert, TlsSettings, ALPN_STUN_TURN};

use crate::pki::{Pki, TestKey};
use crate::pump::{connect, connect_plain, echo, peer_leaf};
use crate::{load, BOTH, ONLY_12, ONLY_13};

#[test]
fn tls13_and_tls12_with_the_full_chain() {
    let pki = Pki::new("versions");
    let leaf = pki.leaf("turn", &["turn.test", "127.0.0.1"]);
    let generation = load(TlsSettings::new(&leaf.cert, &leaf.key));
    for (versions, want) in [
        (BOTH, ProtocolVersion::TLSv1_3),
        (ONLY_13, ProtocolVersion::TLSv1_3),
        (ONLY_12, ProtocolVersion::TLSv1_2),
    ] {
        for name in ["turn.test", "127.0.0.1"] {
            let client = pki.client(versions, &[]);
            let (mut c, mut s) = connect(generation.clone(), &client, name).unwrap();
            assert_eq!(c.protocol_version(), Some(want), "{name}");
            assert_eq!(s.protocol_version(), Some(want), "{name}");
            // The client trusts the root only: the intermediate came from the file.
            assert_eq!(c.peer_certificates().unwrap().len(), 2);
            assert_eq!(peer_leaf(&c), leaf.der.to_vec());
            echo(&mut c, &mut s, b"\x00\x01\x00\x00\x21\x12\xa4\x42");
        }
    }
    let facts = &generation.certificates()[0];
    assert_eq!(facts.names, ["turn.test", "127.0.0.1"]);
    assert_eq!(facts.chain_len, 2);
    assert_eq!(facts.sni, None);
}

#[test]
fn tls13_only_refuses_tls12() {
    let pki = Pki::new("tls13-only");
    let leaf = pki.leaf("turn", &["turn.test"]);
    let mut settings = TlsSettings::new(&leaf.cert, &leaf.key);
    settings.tls13_only = true;
    let generation = load(settings);
    let failed = connect(generation.clone(), &pki.client(ONLY_12, &[]), "turn.test").unwrap_err();
    assert!(
        matches!(failed.server, Some(Error::PeerIncompatible(_))),
        "{failed:?}"
    );
    let (c, _) = connect(generation, &pki.client(BOTH, &[]), "turn.test").unwrap();
    assert_eq!(c.protocol_version(), Some(ProtocolVersion::TLSv1_3));
}

#[test]
fn the_chain_is_served_as_the_file_gives_it() {
    let pki = Pki::new("leaf-only");
    let leaf = pki.leaf_with("turn", &["turn.test"], TestKey::generate(), |_| {}, false);
    let generation = load(TlsSettings::new(&leaf.cert, &leaf.key));
    assert_eq!(generation.certificates()[0].chain_len, 1);
    let failed = connect(generation, &pki.client(BOTH, &[]), "turn.test").unwrap_err();
    assert!(
        matches!(failed.client, Some(Error::InvalidCertificate(_))),
        "{failed:?}"
    );
}

#[test]
fn sni_picks_the_certificate_else_the_default() {
    let pki = Pki::new("sni");
    let default = pki.leaf("turn", &["turn.test", "127.0.0.1"]);
    let other = pki.leaf("other", &["other.test"]);
    let wild = pki.leaf("wild", &["*.wild.test"]);
    let mut settings = TlsSettings::new(&default.cert, &default.key);
    for (name, leaf) in [("other.test", &other), ("*.wild.test", &wild)] {
        let value = format!("{name}:{}:{}", leaf.cert.display(), leaf.key.display());
        settings.sni.push(value.parse::<SniCert>().unwrap());
    }
    let generation = load(settings);
    assert!(
        generation.warnings().is_empty(),
        "{:?}",
        generation.warnings()
    );
    let client = pki.client(BOTH, &[]);
    for (name, want) in [
        ("other.test", &other),
        ("OTHER.test", &other),
        ("eu.wild.test", &wild),
        ("turn.test", &default),
        ("127.0.0.1", &default), // no SNI
    ] {
        let (c, _) = connect(generation.clone(), &client, name).unwrap();
        assert_eq!(peer_leaf(&c), want.der.to_vec(), "{name}");
    }
    // A name nobody covers gets the default certificate, which the client then refuses.
    let failed = connect(generation.clone(), &client, "a.eu.wild.test").unwrap_err();
    assert!(
        matches!(failed.client, Some(Error::InvalidCertificate(_))),
        "{failed:?}"
    );
    let snis: Vec<_> = generation
        .certificates()
        .iter()
        .map(|c| c.sni.clone())
        .collect();
    assert_eq!(
        snis,
        [None, Some("other.test".into()), Some("*.wild.test".into())]
    );
}

#[test]
fn sni_certificate_that_does_not_cover_its_name_is_warned_about() {
    let pki = Pki::new("sni-cover");
    let default = pki.leaf("turn", &["turn.test"]);
    let other = pki.leaf("other", &["other.test"]);
    let mut settings = TlsSettings::new(&default.cert, &default.key);
    settings.sni.push(
        format!("else.test:{}:{}", other.cert.display(), other.key.display())
            .parse()
            .unwrap(),
    );
    let generation = load(settings);
    let w = generation.warnings().join("\n");
    assert!(
        w.contains("else.test") && w.contains(&other.cert.display().to_string()),
        "{w}"
    );
}

#[test]
fn alpn_stun_turn_is_accepted_not_required() {
    let pki = Pki::new("alpn");
    let leaf = pki.leaf("turn", &["turn.test"]);
    let generation = load(TlsSettings::new(&leaf.cert, &leaf.key));
    for versions in [ONLY_13, ONLY_12] {
        for (offered, want) in [
            (&[][..], None), // browsers send none
            (&[ALPN_STUN_TURN][..], Some(ALPN_STUN_TURN)),
            (
                &[b"h2".as_slice(), ALPN_STUN_TURN][..],
                Some(ALPN_STUN_TURN),
            ),
            (&[b"h2".as_slice(), b"http/1.1"][..], None), // served without ALPN
        ] {
            let client = pki.client(versions, offered);
            let (c, s) = connect(generation.clone(), &client, "turn.test").unwrap();
            assert_eq!(c.alpn_protocol(), want, "{offered:?}");
            assert_eq!(s.alpn_protocol(), want, "{offered:?}");
        }
    }
    // rustls alone refuses a client whose ALPN list lacks the server's protocol; that is
    // why a worker accepts with `Accepting`, which picks the configuration for the hello.
    let client = pki.client(BOTH, &[b"h2"]);
    let failed =
        connect_plain(generation.server_config().clone(), &client, "turn.test").unwrap_err();
    assert!(
        matches!(failed.server, Some(Error::NoApplicationProtocol)),
        "{failed:?}"
    );
    let (c, _) = connect_plain(
        generation.server_config().clone(),
        &pki.client(BOTH, &[]),
        "turn.test",
    )
    .unwrap();
    assert_eq!(c.alpn_protocol(), None);
}

#[test]
fn sessions_resume_on_another_worker() {
    let pki = Pki::new("resume");
    let leaf = pki.leaf("turn", &["turn.test"]);
    let generation = load(TlsSettings::new(&leaf.cert, &leaf.key));
    for versions in [ONLY_13, ONLY_12] {
        for alpn in [&[][..], &[ALPN_STUN_TURN][..], &[b"h2".as_slice()][..]] {
            // One client config keeps the session; each connection is a new `Accepting`, as
            // two workers would make from the same generation.
            let client = pki.client(versions, alpn);
            let (first, _) = connect(generation.clone(), &client, "turn.test").unwrap();
            assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
            let (mut second, mut s) = connect(generation.clone(), &client, "turn.test").unwrap();
            assert_eq!(
                second.handshake_kind(),
                Some(HandshakeKind::Resumed),
                "{versions:?} {alpn:?}"
            );
            echo(&mut second, &mut s, b"resumed");
        }
    }
}

#[test]
fn rsa_pkcs1_and_ec_sec1_keys() {
    let pki = Pki::new("key-formats");
    let rsa = pki.leaf_with(
        "rsa",
        &["turn.test"],
        TestKey::committed("rsa2048.pkcs1.pem", "rsa2048.pkcs8.pem"),
        |_| {},
        true,
    );
    let ec = pki.leaf_with(
        "ec",
        &["turn.test"],
        TestKey::committed("p256.sec1.pem", "p256.pkcs8.pem"),
        |_| {},
        true,
    );
    for (leaf, suite) in [
        (&rsa, CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        (&ec, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ] {
        let generation = load(TlsSettings::new(&leaf.cert, &leaf.key));
        let (mut c, mut s) =
            connect(generation.clone(), &pki.client(ONLY_12, &[]), "turn.test").unwrap();
        assert_eq!(c.negotiated_cipher_suite().unwrap().suite(), suite);
        echo(&mut c, &mut s, b"hello");
        let (c, _) = connect(generation, &pki.client(ONLY_13, &[]), "turn.test").unwrap();
        assert_eq!(peer_leaf(&c), leaf.der.to_vec());
    }
}

#[test]
fn cipher_list_chooses_the_suites() {
    let pki = Pki::new("cipher-list");
    let leaf = pki.leaf("turn", &["turn.test"]);
    let mut settings = TlsSettings::new(&leaf.cert, &leaf.key);
    settings.cipher_list = Some(
        "ECDHE-ECDSA-CHACHA20-POLY1305:DHE-RSA-AES256-GCM-SHA384:TLS_AES_128_GCM_SHA256".into(),
    );
    let generation = load(settings);
    let w = generation.warnings().join("\n");
    assert!(w.contains("DHE-RSA-AES256-GCM-SHA384"), "{w}");
    assert_eq!(generation.warnings().len(), 1, "{w}");
    for (versions, want) in [
        (
            ONLY_12,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (ONLY_13, CipherSuite::TLS13_AES_128_GCM_SHA256),
    ] {
        let (c, _) = connect(generation.clone(), &pki.client(versions, &[]), "turn.test").unwrap();
        assert_eq!(c.negotiated_cipher_suite().unwrap().suite(), want);
    }
    // A client with none of the server's suites is refused.
    let mut provider: rustls::crypto::CryptoProvider =
        (**pki.client(ONLY_13, &[]).crypto_provider()).clone();
    provider
        .cipher_suites
        .retain(|s| s.suite() == CipherSuite::TLS13_AES_256_GCM_SHA384);
    let only_aes256 = rustls::ClientConfig::builder_with_provider(provider.into())
        .with_protocol_versions(ONLY_13)
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let failed = connect(generation, &only_aes256.into(), "turn.test").unwrap_err();
    assert!(
        matches!(failed.server, Some(Error::PeerIncompatible(_))),
        "{failed:?}"
    );
}

#[test]
fn ec_curve_name_is_the_only_group() {
    let pki = Pki::new("ec-curve");
    let leaf = pki.leaf("turn", &["turn.test"]);
    for (name, want) in [
        ("secp384r1", NamedGroup::secp384r1),
        ("prime256v1", NamedGroup::secp256r1),
        ("X25519", NamedGroup::X25519),
    ] {
        let mut settings = TlsSettings::new(&leaf.cert, &leaf.key);
        settings.ec_curve_name = Some(name.into());
        let generation = load(settings);
        assert!(generation.warnings().is_empty());
        for versions in [ONLY_13, ONLY_12] {
            let (c, _) =
                connect(generation.clone(), &pki.client(versions, &[]), "turn.test").unwrap();
            let group = c.negotiated_key_exchange_group().unwrap().name();
            assert_eq!(group, want, "{name} {versions:?}");
        }
    }
}
