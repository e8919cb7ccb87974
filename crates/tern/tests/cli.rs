//! The `tern` executable's command line: output formats and error messages.

use std::process::{Command, Output};

fn tern(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TERN_STATIC_AUTH_SECRET")
        .output()
        .expect("run tern")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn credentials_output() {
    let o = tern(&[
        "credentials",
        "--secret",
        "north",
        "--now",
        "1700000000",
        "--name",
        "alice",
        "--uri",
        "turn:turn.example.org:3478",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "username: 1700086400:alice\n\
         credential: SXua5ne/+mDhiHTp0pQJzRO4ESg=\n\
         {\"urls\":[\"turn:turn.example.org:3478?transport=udp\"],\"username\":\"1700086400:alice\",\
         \"credential\":\"SXua5ne/+mDhiHTp0pQJzRO4ESg=\"}\n"
    );
    let o = tern(&[
        "credentials",
        "--secret",
        "north",
        "--now",
        "100",
        "--ttl",
        "10",
    ]);
    assert!(
        stdout(&o).starts_with("username: 110\ncredential: "),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("\"urls\":[\"turn:127.0.0.1:3478?transport=udp\"]"));
}

#[test]
fn credentials_list_tcp_and_tls_uris() {
    let o = tern(&[
        "credentials",
        "--secret",
        "north",
        "--now",
        "1700000000",
        "--uri",
        "turn:turn.example.org:3478",
        "--uri",
        "stun:stun.example.org",
        "--transports",
        "udp,tcp,tls",
        "--tls-port",
        "443",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = stdout(&o).lines().nth(2).unwrap_or_default().to_owned();
    assert!(
        json.starts_with(
            "{\"urls\":[\"turn:turn.example.org:3478?transport=udp\",\
             \"turn:turn.example.org:3478?transport=tcp\",\
             \"turns:turn.example.org:443?transport=tcp\",\"stun:stun.example.org\"],"
        ),
        "{json}"
    );
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    // A turns: URL with an IP address: the JSON is the same shape, and stderr says that
    // Firefox needs a host name the certificate names.
    let o = tern(&[
        "credentials",
        "--secret",
        "north",
        "--uri",
        "turn:192.0.2.1:3478",
        "--transports",
        "udp,tls",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "\"urls\":[\"turn:192.0.2.1:3478?transport=udp\",\"turns:192.0.2.1:5349?transport=tcp\"]"
        ),
        "{}",
        stdout(&o)
    );
    let note = stderr(&o);
    assert!(
        note.contains("turns:192.0.2.1:5349?transport=tcp names an IP address")
            && note.contains("Firefox")
            && note.contains("host name"),
        "{note}"
    );
    assert_eq!(note.lines().count(), 1, "{note}");
    // A turns: URI and a URI with a query are kept as given.
    let o = tern(&[
        "credentials",
        "--secret",
        "north",
        "--uri",
        "turns:turn.example.org:443?transport=tcp",
        "--uri",
        "turn:turn.example.org?transport=tcp",
    ]);
    assert!(
        stdout(&o).contains(
            "\"urls\":[\"turns:turn.example.org:443?transport=tcp\",\
             \"turn:turn.example.org?transport=tcp\"]"
        ),
        "{}",
        stdout(&o)
    );
    let o = tern(&["credentials", "--secret", "s", "--transports", "udp,dtls"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("`dtls` is not a transport"),
        "{}",
        stderr(&o)
    );
    let o = tern(&[
        "credentials",
        "--secret",
        "s",
        "--uri",
        "https://turn.example.org",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--uri https://turn.example.org: not a turn:"),
        "{}",
        stderr(&o)
    );
    let o = tern(&["credentials", "--help"]);
    assert!(stdout(&o).contains("--transports <LIST>"));
    assert!(stdout(&o).contains("turns:turn.example.org:443?transport=tcp"));
}

#[test]
fn credentials_need_a_secret() {
    let o = tern(&["credentials"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--secret"), "{}", stderr(&o));
}

#[test]
fn serve_errors_name_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("tern-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("turnserver.conf");
    std::fs::write(&conf, "static-auth-secret=s\ncert=/x.pem\nmin-port=abc\n").unwrap();
    let o = tern(&["serve", "-c", conf.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("turnserver.conf:3: min-port: `abc` is not a port number"),
        "{err}"
    );
    assert!(!err.contains("static-auth-secret=s"), "{err}");
    std::fs::remove_dir_all(&dir).ok();

    let o = tern(&["serve", "--config=/nonexistent/turnserver.conf"]);
    assert!(stderr(&o).contains("cannot read configuration file /nonexistent/turnserver.conf"));
    let o = tern(&["serve", "--realm", "x"]);
    assert!(
        stderr(&o).contains("no credentials configured"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_and_version() {
    let o = tern(&["serve", "--help"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("--static-auth-secret VALUE  (repeatable)"),
        "{}",
        stdout(&o)
    );
    let o = tern(&["--version"]);
    assert_eq!(stdout(&o), format!("tern {}\n", env!("CARGO_PKG_VERSION")));
    let o = tern(&["help"]);
    assert!(stdout(&o).contains("credentials"));
}
