//! Over TLS: every step passes against coturn with a test CA given as `--ca`, and each
//! certificate problem gets its own diagnosis: a wrong name, an untrusted CA, an expired
//! certificate, an IP literal without an IP SAN, and a leaf sent without its intermediate.
use super::harness::{addr, assert_success, coturn_with, probe, Coturn, Listeners, SECRET};
use super::pki::{Leaf, LeafSpec, Pki, INTERMEDIATE, ROOT};

const REST: [&str; 2] = ["--use-auth-secret", "--static-auth-secret=s3cret"];

/// The leaf of a correctly configured server: a DNS and an IP name, the full chain.
const GOOD: LeafSpec<'static> = LeafSpec {
    names: &["turn.test", "127.0.0.1"],
    years: None,
    full_chain: true,
};

/// coturn serving `leaf` over TLS; `None` when coturn is not installed.
fn tls_server(leaf: &Leaf) -> Option<Coturn> {
    let listeners = Listeners::Tls {
        cert: leaf.cert.clone(),
        pkey: leaf.key.clone(),
    };
    coturn_with(&REST, true, listeners)
}

/// `turns:127.0.0.1:TLS_PORT` and the flags every TLS probe here takes.
fn turns(server: &Coturn) -> String {
    format!("turns:{}", addr(server.tls_port))
}

fn assert_diagnosis(code: i32, out: &str, fail: &str, diagnosis: &[&str]) {
    assert_eq!(code, 1);
    assert!(
        out.contains("[ok] connect: TCP connection to 127.0.0.1:"),
        "{out}"
    );
    assert!(
        out.contains(&format!("[FAIL] tls: {fail}")),
        "{fail:?} missing"
    );
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("diagnosis: "))
        .expect("a diagnosis line");
    for part in diagnosis {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    assert!(
        !out.contains("[ok] binding"),
        "no STUN after a failed handshake"
    );
}

#[test]
fn tls_with_the_test_ca_passes_every_step() {
    let pki = Pki::new("good");
    let leaf = pki.leaf("good", &GOOD);
    let Some(server) = tls_server(&leaf) else {
        return;
    };
    let ca = pki.root_pem();
    let stun_port = server.port.to_string();
    let args = [
        &turns(&server),
        "--ca",
        ca.to_str().unwrap(),
        "--stun-port",
        &stun_port,
        "--secret",
        SECRET,
    ];
    let (code, out) = probe(&args);
    assert_success(code, &out);
    for line in [
        "[ok] tls: TLS 1.",
        ", no SNI (an IP address)",
        "[ok] tls: certificate for turn.test, 127.0.0.1 (subject \"turn.test\"), issued by \
         \"tern probe test intermediate\"; 2 certificates sent; trusted through --ca ",
        " days left",
        "[ok] peer: a second socket 127.0.0.1:",
    ] {
        assert!(out.contains(line), "{line:?} missing");
    }

    // By name: SNI sent, the DNS SAN checked; HOST:PORT with --transport this time.
    let target = addr(server.tls_port);
    let (code, out) = probe(&[
        &target,
        "--transport",
        "tls",
        "--tls-name",
        "turn.test",
        "--ca",
        ca.to_str().unwrap(),
        "--stun-port",
        &stun_port,
        "--secret",
        SECRET,
    ]);
    assert_success(code, &out);
    assert!(out.contains(", SNI turn.test"), "{out}");
}

#[test]
fn tls_wrong_name_is_diagnosed() {
    let pki = Pki::new("wrong-name");
    let leaf = pki.leaf("good", &GOOD);
    let Some(server) = tls_server(&leaf) else {
        return;
    };
    let ca = pki.root_pem();
    let (code, out) = probe(&[
        &turns(&server),
        "--tls-name",
        "turn.example.org",
        "--ca",
        ca.to_str().unwrap(),
    ]);
    assert_diagnosis(
        code,
        &out,
        "the certificate is not valid for turn.example.org",
        &["the certificate covers turn.test, 127.0.0.1; you connected to turn.example.org"],
    );
}

#[test]
fn tls_untrusted_ca_is_diagnosed() {
    let pki = Pki::new("untrusted");
    let leaf = pki.leaf("good", &GOOD);
    let Some(server) = tls_server(&leaf) else {
        return;
    };
    // No --ca: Mozilla's roots, which do not hold the test root.
    let (code, out) = probe(&[&turns(&server)]);
    assert_diagnosis(
        code,
        &out,
        &format!(
            "the chain the server sent (2 certificates) ends at \"{INTERMEDIATE}\", issued by \
             \"{ROOT}\", which is not trusted"
        ),
        &[
            &format!("\"{ROOT}\" is not in Mozilla's root store (pass --ca FILE"),
            "a private CA that clients must trust",
        ],
    );
}

#[test]
fn tls_expired_certificate_is_diagnosed() {
    let pki = Pki::new("expired");
    let spec = LeafSpec {
        years: Some((2020, 2021)),
        ..GOOD
    };
    let leaf = pki.leaf("expired", &spec);
    let Some(server) = tls_server(&leaf) else {
        return;
    };
    let ca = pki.root_pem();
    let (code, out) = probe(&[&turns(&server), "--ca", ca.to_str().unwrap()]);
    assert_diagnosis(
        code,
        &out,
        "the certificate expired on 2021-01-01 00:00 UTC (",
        &["renew the certificate and have the server load the new one"],
    );
}

#[test]
fn tls_ip_literal_without_ip_san_is_diagnosed() {
    let pki = Pki::new("no-ip-san");
    let spec = LeafSpec {
        names: &["turn.test"],
        ..GOOD
    };
    let leaf = pki.leaf("dns-only", &spec);
    let Some(server) = tls_server(&leaf) else {
        return;
    };
    let ca = pki.root_pem();
    let (code, out) = probe(&[&turns(&server), "--ca", ca.to_str().unwrap()]);
    assert_diagnosis(
        code,
        &out,
        "the certificate has no IP address SAN, and 127.0.0.1 is an IP address",
        &[
            "you connected to the IP address 127.0.0.1, but the certificate covers only turn.test",
            "IP:127.0.0.1",
        ],
    );
    // The same server by the name it covers passes the TLS step.
    let (code, out) = probe(&[
        &turns(&server),
        "--tls-name",
        "turn.test",
        "--ca",
        ca.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[ok] binding: reflexive address"));
}

#[test]
fn tls_leaf_without_its_intermediate_is_diagnosed() {
    let pki = Pki::new("no-chain");
    let spec = LeafSpec {
        full_chain: false,
        ..GOOD
    };
    let leaf = pki.leaf("leaf-only", &spec);
    let Some(server) = tls_server(&leaf) else {
        return;
    };
    let ca = pki.root_pem();
    let (code, out) = probe(&[&turns(&server), "--ca", ca.to_str().unwrap()]);
    assert_diagnosis(
        code,
        &out,
        &format!(
            "the server sent only its own certificate, issued by \"{INTERMEDIATE}\", which is not \
             a trusted root"
        ),
        &[
            &format!("(which holds \"{ROOT}\")"),
            "make `cert` the full chain (fullchain.pem, not cert.pem)",
        ],
    );
}
