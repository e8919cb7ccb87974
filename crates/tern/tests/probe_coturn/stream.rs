//! Over TCP: every step passes against coturn (ChannelData padded on the stream both ways),
//! and the stream failures are diagnosed: nothing listening, a listener that never answers
//! (which gets exactly one request: no retransmission on a stream), one that closes at once,
//! and a TLS probe of something that does not speak TLS.
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::thread;
use std::time::Duration;

use tern_wire::stream::{frames, Framing};
use tern_wire::{Message, Method};

use super::harness::{addr, assert_success, coturn_with, probe, Listeners, SECRET};

#[test]
fn tcp_rest_secret_relays_both_ways() {
    let auth = ["--use-auth-secret", "--static-auth-secret=s3cret"];
    let Some(server) = coturn_with(&auth, true, Listeners::Tcp) else {
        return;
    };
    let (code, out) = probe(&[&addr(server.port), "--transport", "tcp", "--secret", SECRET]);
    assert_success(code, &out);
    let connect = format!(
        "[ok] connect: TCP connection to 127.0.0.1:{} from 127.0.0.1:",
        server.port
    );
    assert!(out.contains(&connect), "{connect:?} missing");
    // The probe's ChannelData payloads are 41 bytes: 3 bytes of padding each way.
    assert!(out.contains("[ok] channel-data: the peer got 41 bytes"));
    assert!(out.contains("[ok] channel-data: the client got 41 bytes from the peer on the channel"));
}

#[test]
fn tcp_long_term_user_by_uri_relays_both_ways() {
    let auth = ["--lt-cred-mech", "--user=alice:wonderland"];
    let Some(server) = coturn_with(&auth, true, Listeners::Tcp) else {
        return;
    };
    let uri = format!("turn:{}?transport=tcp", addr(server.port));
    let (code, out) = probe(&[&uri, "--user", "alice", "--password", "wonderland"]);
    assert_success(code, &out);
    assert!(out.contains("[ok] connect: TCP connection"));
}

#[test]
fn tcp_connection_refused_is_diagnosed() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, out) = probe(&[&addr(port), "--transport", "tcp", "--timeout", "1"]);
    assert_eq!(code, 1);
    assert!(out.contains("[FAIL] connect: connection refused"));
    assert!(out.contains(&format!(
        "diagnosis: nothing listens on TCP {port} at 127.0.0.1 (the host answered with a \
         reset): is the server running with a TCP listener (listening-port; not no-tcp)"
    )));
    let (code, out) = probe(&[&format!("turns:{}", addr(port)), "--timeout", "1"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("with a TLS listener (tls-listening-port; not no-tls)"),
        "{out}"
    );
}

/// A listener that accepts and reads but never answers: one Binding request, no resend.
#[test]
fn tcp_silent_listener_gets_one_request_and_is_diagnosed() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let reader = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        got
    });
    let (code, out) = probe(&[&addr(port), "--transport", "tcp", "--timeout", "1.2"]);
    assert_eq!(code, 1);
    assert!(out.contains("[FAIL] binding: no answer"));
    assert!(out.contains(&format!(
        "diagnosis: 127.0.0.1:{port} accepted the TCP connection but did not answer a Binding \
         request within 1.2 s: is this port a TURN server's plain TCP port, or does it expect \
         TLS (--transport tls)?"
    )));
    let got = reader.join().unwrap();
    let mut messages = frames(&got, Framing::default());
    let sent: Vec<_> = messages.by_ref().collect();
    assert_eq!(sent.len(), 1, "requests the silent listener got");
    let (_, request) = sent[0].expect("a well-framed stream");
    assert_eq!(Message::parse(request).unwrap().method(), Method::BINDING);
    assert_eq!(messages.consumed(), got.len(), "nothing but whole messages");
}

/// Something that answers a ClientHello with HTTP.
#[test]
fn tls_to_a_server_that_is_not_tls_is_diagnosed() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut hello = [0u8; 512];
        let n = conn.read(&mut hello).unwrap_or(0);
        let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        hello[..n].to_vec()
    });
    let (code, out) = probe(&[&addr(port), "--transport", "tls", "--timeout", "2"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("[FAIL] tls: the server did not answer in TLS"),
        "{out}"
    );
    assert!(out.contains(&format!(
        "diagnosis: something other than a TLS server answers on port {port}: a plain TURN port \
         (try --transport tcp)"
    )));
    let hello = server.join().unwrap();
    assert_eq!(
        hello.first(),
        Some(&0x16),
        "a TLS handshake record was sent"
    );
}

/// A listener that accepts and closes at once, as one refusing what it was sent would.
#[test]
fn tcp_closed_connection_is_diagnosed() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let closer = thread::spawn(move || drop(listener.accept().unwrap()));
    let (code, out) = probe(&[&addr(port), "--transport", "tcp", "--timeout", "2"]);
    closer.join().unwrap();
    assert_eq!(code, 1);
    assert!(
        out.contains("[FAIL] binding: the server closed the TCP connection"),
        "{out}"
    );
    assert!(out.contains(&format!(
        "diagnosis: 127.0.0.1:{port} closed the connection instead of answering: does it take \
         TURN over TCP on this port"
    )));
}
