//! Over UDP: REST and long-term credentials, and the diagnoses of a wrong secret, a refused
//! peer, a silent server and no server.
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use super::harness::{addr, assert_success, coturn, probe, SECRET};

#[test]
fn rest_secret_relays_both_ways() {
    let auth = ["--use-auth-secret", "--static-auth-secret=s3cret"];
    let Some(server) = coturn(&auth, true) else {
        return;
    };
    let (code, out) = probe(&[&addr(server.port), "--secret", SECRET]);
    assert_success(code, &out);
    assert!(out.contains("lifetime 600 s, realm \"probe.test\""));
}

#[test]
fn long_term_user_relays_both_ways() {
    let auth = ["--lt-cred-mech", "--user=alice:wonderland"];
    let Some(server) = coturn(&auth, true) else {
        return;
    };
    let (code, out) = probe(&[
        &addr(server.port),
        "--user",
        "alice",
        "--password",
        "wonderland",
    ]);
    assert_success(code, &out);
}

#[test]
fn binding_only_without_credentials() {
    let Some(server) = coturn(&["--use-auth-secret", "--static-auth-secret=s3cret"], true) else {
        return;
    };
    let (code, out) = probe(&[&addr(server.port)]);
    assert_eq!(code, 0);
    assert!(out.contains("[ok] binding: reflexive address (XOR-MAPPED-ADDRESS) 127.0.0.1:"));
    assert!(out.contains("valid FINGERPRINT"));
    assert!(!out.contains("[ok] allocate"));
}

#[test]
fn wrong_secret_is_diagnosed() {
    let Some(server) = coturn(&["--use-auth-secret", "--static-auth-secret=s3cret"], true) else {
        return;
    };
    let (code, out) = probe(&[&addr(server.port), "--secret", "not-the-secret"]);
    assert_eq!(code, 1);
    assert!(out.contains("[FAIL] allocate: the server answered 401"));
    assert!(out.contains(
        "diagnosis: the server rejected the credentials: is the secret the server's \
         static-auth-secret, and are the clocks in sync?"
    ));
}

#[test]
fn refused_loopback_peer_is_diagnosed() {
    let Some(server) = coturn(&["--use-auth-secret", "--static-auth-secret=s3cret"], false) else {
        return;
    };
    let (code, out) = probe(&[&addr(server.port), "--secret", SECRET]);
    assert_eq!(code, 1);
    assert!(out.contains("[FAIL] create-permission: the server answered 403"));
    assert!(out.contains("diagnosis: the server refuses this peer address (peer filtering"));
    assert!(
        out.contains("[ok] refresh: allocation released"),
        "cleans up after a failure"
    );
}

/// A socket that never answers: the probe retransmits, then gives up at --timeout.
#[test]
fn silent_server_is_diagnosed() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = silent.local_addr().unwrap().port();
    let start = Instant::now();
    let (code, out) = probe(&[&addr(port), "--timeout", "1.6", "--secret", SECRET]);
    assert_eq!(code, 1);
    let expected = format!(
        "diagnosis: no answer from 127.0.0.1:{port} over UDP within 1.6 s: is the server \
         running, is UDP {port} open/forwarded?"
    );
    assert!(out.contains(&expected));
    assert!(start.elapsed() < Duration::from_secs(10));
    // RFC 8489 retransmissions: sent at 0, 0.5 and 1.5 s.
    silent
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut buf = [0u8; 1500];
    let received = (0..10)
        .take_while(|_| silent.recv_from(&mut buf).is_ok())
        .count();
    assert_eq!(received, 3, "requests seen by the silent server");
}

/// Nothing bound on the port: the host answers ICMP port unreachable.
#[test]
fn no_server_is_diagnosed() {
    let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, out) = probe(&[&addr(port), "--timeout", "1"]);
    assert_eq!(code, 1);
    assert!(out.contains("[FAIL] binding: "));
    assert!(out.contains(&format!(
        "diagnosis: no answer from 127.0.0.1:{port} over UDP"
    )));
}
