//! The configuration contract end to end (without starting a server): file, environment
//! and flags merged into settings and mapped onto `tern_server::ServerConfig`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tern::conf::{self, Entry};
use tern::mapping::{self, RelayedIpSource};
use tern::overrides::{env_entries, parse_serve_args};
use tern::settings::{from_entries, Loaded, LogTarget, Verbosity};
use tern::startup;
use tern_proto::Family::{V4, V6};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn load(conf_text: &str, env: &[(&str, &str)], flags: &[&str]) -> anyhow::Result<Loaded> {
    let mut entries: Vec<Entry> = conf::parse_str(conf_text, "turnserver.conf")?;
    entries.extend(env_entries(
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    ));
    entries.extend(parse_serve_args(flags.iter().map(|s| s.to_string()))?.entries);
    from_entries(&entries)
}

fn no_detect(_: IpAddr) -> Option<IpAddr> {
    None
}

#[test]
fn k8s_fixture_loads_with_only_warnings() {
    let args = parse_serve_args([
        "-c".to_string(),
        fixture("coturn-k8s.conf").display().to_string(),
    ])
    .unwrap();
    let plan = startup::plan(&args, Vec::new(), || panic!("no secret is generated")).unwrap();
    assert!(plan.generated_secret.is_none());
    let s = &plan.loaded.settings;
    assert_eq!(s.listening_port, 3478);
    assert_eq!((s.min_port, s.max_port), (49152, 49252));
    assert!(s.fingerprint && s.use_auth_secret && s.no_multicast_peers);
    assert_eq!(s.static_auth_secrets.len(), 2);
    assert_eq!(
        s.static_auth_secrets[1].0,
        "a-previous-secret-still-accepted"
    );
    assert_eq!(s.realm, "turn.example.org");
    assert_eq!((s.total_quota, s.user_quota, s.stale_nonce), (100, 12, 600));
    assert_eq!(s.denied_peer_ips.len(), 9);
    assert_eq!(s.allowed_peer_ips.len(), 1);
    assert_eq!(s.verbosity, Verbosity::Verbose);
    assert_eq!(s.log_file, LogTarget::Stdout);
    // coturn's `prometheus` flag: the admin port on every address, coturn's port.
    assert_eq!(s.admin_listen, Some("0.0.0.0:9641".parse().unwrap()));

    let ignored = [
        "server-name",
        "no-tcp-relay",
        "mobility",
        "secure-stun",
        "no-stdout-log",
        "simple-log",
        "pidfile",
    ];
    let warnings = &plan.loaded.warnings;
    assert_eq!(warnings.len(), ignored.len() + 1, "{warnings:#?}");
    let dh = warnings.iter().find(|w| w.contains("`dh-file`")).unwrap();
    assert!(
        dh.ends_with("coturn-k8s.conf:39: `dh-file` is ignored: tern's TLS has no finite-field DHE suites, only ECDHE (ec-curve-name chooses its group)"),
        "{dh}"
    );
    for key in ignored {
        let hits: Vec<_> = warnings
            .iter()
            .filter(|w| w.contains(&format!("`{key}` ")))
            .collect();
        assert_eq!(hits.len(), 1, "{key}: {warnings:#?}");
        assert!(
            hits[0].ends_with("is not implemented by tern; ignored"),
            "{}",
            hits[0]
        );
    }
    assert_eq!(s.cert, Some("/etc/coturn/tls/tls.crt".into()));
    assert_eq!(s.tls_listening_port, 5349);
    // The certificate is not on this machine: the error names the key and the file.
    let e = mapping::map(s, no_detect, false).unwrap_err().to_string();
    assert!(
        e.starts_with("cert: ") && e.contains("/etc/coturn/tls/tls.crt"),
        "{e}"
    );
    let mut s = s.clone();
    s.no_tls = true;
    let m = mapping::map(&s, no_detect, false).unwrap();
    assert_eq!(
        m.server.listen,
        vec!["10.42.0.17:3478".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(m.server.core.relayed_ip(V4).unwrap(), ip("203.0.113.10"));
    assert_eq!(m.server.relay_bind_ip(V4), ip("10.42.0.17"));
    assert_eq!(
        m.server.core.own_ips,
        vec![ip("203.0.113.10"), ip("10.42.0.17")]
    );
    assert_eq!(m.server.core.auth_secrets.len(), 2);
    assert_eq!(m.server.core.nonce_lifetime, Duration::from_secs(600));
    assert!(m.server.core.always_fingerprint);
    assert_eq!(m.server.core.software, None);
    assert_eq!(m.server.core.relay_port_range, 49152..=49252);
    assert_eq!(m.server.core.total_quota, 100);
    assert!(m.server.core.peer_filter.no_multicast);
}

#[test]
fn one_warning_per_unimplemented_or_unknown_key_with_its_line() {
    let text = "static-auth-secret=s\n\n# c\nsecure-stun\nno-tlsv1\nfrobnicate=3\n";
    let l = load(text, &[], &[]).unwrap();
    assert_eq!(
        l.warnings,
        [
            "turnserver.conf:4: `secure-stun` is not implemented by tern; ignored",
            "turnserver.conf:6: `frobnicate` is not a coturn key tern knows; ignored",
        ]
    );
}

#[test]
fn invalid_values_name_file_line_and_key() {
    let err = |text: &str| load(text, &[], &[]).unwrap_err().to_string();
    assert_eq!(
        err("realm=x\n# c\n\n\nstatic-auth-secret=s\n\nmin-port=abc\n"),
        "turnserver.conf:7: min-port: `abc` is not a port number"
    );
    assert_eq!(
        err("listening-ip=1.2.3\n"),
        "turnserver.conf:1: listening-ip: `1.2.3` is not an IP address"
    );
    assert_eq!(
        err("fingerprint=maybe\n")
            .split(':')
            .take(3)
            .collect::<Vec<_>>(),
        ["turnserver.conf", "1", " fingerprint"]
    );
    assert!(err("stale-nonce=0\n").starts_with("turnserver.conf:1: stale-nonce: "));
    assert!(err("denied-peer-ip=10.0.0.9-10.0.0.1\n")
        .starts_with("turnserver.conf:1: denied-peer-ip: "));
    assert!(err("external-ip=example.org\n").starts_with("turnserver.conf:1: external-ip: "));
    assert_eq!(
        err("max-port\n"),
        "turnserver.conf:1: max-port: needs a value"
    );
    let user = err("user=alice-with-no-password\n");
    assert!(
        user.starts_with("turnserver.conf:1: user: ") && !user.contains("alice"),
        "{user}"
    );
    assert!(err("min-port=50000\nmax-port=40000\n").contains("(turnserver.conf:2)"));
    assert!(err("use-auth-secret\n").starts_with("turnserver.conf:1: use-auth-secret needs"));
    assert_eq!(
        err("static-auth-secret=s\nmax-bps=3M\n"),
        "turnserver.conf:2: max-bps: `3M` is not a number of bytes per second"
    );
}

#[test]
fn max_bps_reaches_the_core() {
    let l = load(
        "static-auth-secret=s\nrelay-ip=192.0.2.1\nmax-bps=375000\n",
        &[],
        &[],
    )
    .unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let m = mapping::map(&l.settings, no_detect, false).unwrap();
    assert_eq!(m.server.core.max_bps, 375_000);
    // The flag and the environment spell it as every other key; 0 turns it off.
    let l = load(
        "static-auth-secret=s\nmax-bps=375000\n",
        &[("TERN_MAX_BPS", "1000")],
        &["--max-bps", "0"],
    )
    .unwrap();
    assert_eq!(l.settings.max_bps, 0);
    let l = load("static-auth-secret=s\n", &[("TERN_MAX_BPS", "1000")], &[]).unwrap();
    assert_eq!(l.settings.max_bps, 1000);
    // Not given: no limit, as in coturn.
    let l = load("static-auth-secret=s\n", &[], &[]).unwrap();
    assert_eq!(l.settings.max_bps, 0);
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let text = "static-auth-secret=from-file\nmin-port=40000\nmax-port=60000\nfingerprint\n\
                denied-peer-ip=10.0.0.0/8\ndenied-peer-ip=192.168.0.0/16\nrealm=file\n";
    let env = [
        ("TERN_MIN_PORT", "41000"),
        ("TERN_FINGERPRINT", "no"),
        ("TERN_DENIED_PEER_IP", "172.16.0.0/12"),
        ("TERN_STATIC_AUTH_SECRET", "env-a, env-b"),
        ("TERN_REALM", "env"),
    ];
    let s = load(text, &env, &["--min-port", "42000", "--realm=flag"])
        .unwrap()
        .settings;
    assert_eq!(s.min_port, 42000);
    assert_eq!(s.max_port, 60000);
    assert!(!s.fingerprint);
    assert_eq!(s.denied_peer_ips.len(), 1);
    assert_eq!(s.denied_peer_ips[0].start, ip("172.16.0.0"));
    let secrets: Vec<_> = s.static_auth_secrets.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(secrets, ["env-a", "env-b"]);
    assert_eq!(s.realm, "flag");

    let s = load(
        text,
        &[],
        &["--fingerprint=0", "--denied-peer-ip", "1.2.3.4"],
    )
    .unwrap()
    .settings;
    assert!(!s.fingerprint);
    assert_eq!(s.denied_peer_ips.len(), 1);
}

#[test]
fn env_and_flag_errors_name_their_source() {
    let e = load("", &[("TERN_MAX_PORT", "lots")], &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "environment variable TERN_MAX_PORT: max-port: `lots` is not a port number"
    );
    let e = load("", &[], &["--listening-port=0"])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "flag --listening-port: listening-port: `0` is not a port number"
    );
    let e = load("", &[], &["-p", "x"]).unwrap_err().to_string();
    assert!(e.starts_with("flag -p: listening-port: "), "{e}");
    let w = load("", &[("TERN_CERT", "/c.pem")], &["--dh566"])
        .unwrap()
        .warnings;
    assert_eq!(
        w,
        [format!(
            "flag --dh566: {}",
            tern_server::tls::no_dhe_warning("dh566")
        )]
    );
}

#[test]
fn embedded_default_without_any_configuration() {
    let args = parse_serve_args(["-v".to_string()]).unwrap();
    let env = [("PATH".to_string(), "/bin".to_string())];
    let plan = startup::plan(&args, env, || Ok([0xab; 32])).unwrap();
    let secret = plan.generated_secret.clone().expect("embedded default");
    assert_eq!(secret.0, "ab".repeat(32));
    let s = &plan.loaded.settings;
    assert!(s.use_auth_secret);
    assert_eq!(
        (s.listening_port, s.min_port, s.max_port),
        (3478, 49152, 49252)
    );

    let m = mapping::map(s, no_detect, true).unwrap();
    assert_eq!(m.relayed_ip_source, RelayedIpSource::Loopback);
    assert_eq!(m.server.core.relayed_ip(V4).unwrap(), ip("127.0.0.1"));
    assert_eq!(
        m.server.listen,
        vec!["0.0.0.0:3478".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(m.server.relay_bind_ip(V4), ip("0.0.0.0"));
    let banner = startup::banner(&m, &secret, 1_700_000_000);
    assert!(banner.contains(&format!("static-auth-secret: {}", secret.0)));
    assert!(
        banner.contains(
            "\"urls\":[\"turn:127.0.0.1:3478?transport=udp\",\"turn:127.0.0.1:3478?transport=tcp\"]"
        ),
        "{banner}"
    );
    assert!(banner.contains("(UDP and TCP; TLS off)"), "{banner}");
    assert!(banner.contains("set cert= and pkey="), "{banner}");
    assert!(
        banner.contains("\"username\":\"1700086400:tern\""),
        "{banner}"
    );
    assert!(banner.contains("only local clients"), "{banner}");

    let detected = mapping::map(s, |_| Some(ip("192.0.2.44")), true).unwrap();
    assert_eq!(detected.relayed_ip_source, RelayedIpSource::Detected);
    assert_eq!(
        detected.server.core.relayed_ip(V4).unwrap(),
        ip("192.0.2.44")
    );
}

#[test]
fn keys_without_credentials_refuse_to_start() {
    let args = parse_serve_args(["--listening-port=3479".to_string()]).unwrap();
    let err = startup::plan(&args, Vec::new(), || panic!())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no credentials configured"), "{err}");
    let env = vec![("TERN_LT_CRED_MECH".to_string(), "1".to_string())];
    assert!(startup::plan(&parse_serve_args(Vec::new()).unwrap(), env, || panic!()).is_err());
    // A configuration file, even an empty one, is never replaced by the embedded default.
    let args = parse_serve_args(["-c".to_string(), "/dev/null".to_string()]).unwrap();
    assert!(startup::plan(&args, Vec::new(), || panic!()).is_err());
}

#[test]
fn static_users_mode() {
    let l = load(
        "lt-cred-mech\nuser=alice:secret\nuser=bob:0x00112233445566778899aabbccddeeff\n",
        &[],
        &[],
    )
    .unwrap();
    let m = mapping::map(&l.settings, |_| Some(ip("192.0.2.1")), false).unwrap();
    assert!(m.server.core.auth_secrets.is_empty());
    let names: Vec<_> = m
        .server
        .core
        .users
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(
        matches!(m.server.core.users[1].secret, tern_proto::UserSecret::Key(k) if k[15] == 0xff)
    );
}

#[test]
fn mapping_of_addresses() {
    let map = |text: &str| {
        let l = load(&format!("static-auth-secret=s\n{text}"), &[], &[]).unwrap();
        mapping::map(&l.settings, no_detect, false)
    };
    // PUBLIC only: advertise it, bind relays on the listening IP.
    let m = map("external-ip=198.51.100.1\nlistening-ip=10.0.0.2\n").unwrap();
    assert_eq!(
        (
            m.server.core.relayed_ip(V4).unwrap(),
            m.server.relay_bind_ip(V4)
        ),
        (ip("198.51.100.1"), ip("10.0.0.2"))
    );
    // PUBLIC/PRIVATE: advertise public, bind private.
    let m = map("external-ip=198.51.100.1/10.0.0.3\n").unwrap();
    assert_eq!(
        (
            m.server.core.relayed_ip(V4).unwrap(),
            m.server.relay_bind_ip(V4)
        ),
        (ip("198.51.100.1"), ip("10.0.0.3"))
    );
    assert_eq!(
        m.server.core.own_ips,
        vec![ip("198.51.100.1"), ip("10.0.0.3")]
    );
    // relay-ip only.
    let m = map("relay-ip=10.0.0.4\n").unwrap();
    assert_eq!(
        (
            m.server.core.relayed_ip(V4).unwrap(),
            m.server.relay_bind_ip(V4)
        ),
        (ip("10.0.0.4"), ip("10.0.0.4"))
    );
    // A specific listening-ip only.
    let m = map("listening-ip=10.0.0.5\nlistening-ip=::1\n").unwrap();
    assert_eq!(m.server.core.relayed_ip(V4).unwrap(), ip("10.0.0.5"));
    assert_eq!(m.server.listen.len(), 2);
    // Nothing known and no loopback fallback: a clear error.
    let e = map("").unwrap_err().to_string();
    assert!(e.contains("set external-ip or relay-ip"), "{e}");
    // Lifetimes and quotas.
    let l = load("static-auth-secret=s\nrelay-ip=10.0.0.4\nmax-allocate-lifetime=300\nchannel-lifetime=60\nuser-quota=2\n", &[], &[]).unwrap();
    let c = mapping::map(&l.settings, no_detect, false)
        .unwrap()
        .server
        .core;
    assert_eq!(
        (c.max_lifetime, c.default_lifetime),
        (Duration::from_secs(300), Duration::from_secs(300))
    );
    assert_eq!(c.channel_lifetime, Duration::from_secs(60));
    assert_eq!(c.user_quota, 2);
}

#[test]
fn unreachable_relayed_address_is_named_at_start() {
    let map = |text: &str, detect: Option<&str>, embedded: bool| {
        let l = load(&format!("static-auth-secret=s\n{text}"), &[], &[]).unwrap();
        mapping::map(&l.settings, |_| detect.map(ip), embedded).unwrap()
    };
    let unreachable = |m: &mapping::Mapped| -> Vec<String> {
        m.warnings
            .iter()
            .filter(|w| w.contains("not publicly routable"))
            .cloned()
            .collect()
    };
    // `docker run -p … tern` without TERN_EXTERNAL_IP: the container's bridge address.
    let m = map("", Some("172.17.0.2"), false);
    assert_eq!(m.relayed_ip_source, RelayedIpSource::Detected);
    let w = unreachable(&m);
    assert_eq!(w.len(), 1, "one warning: {:#?}", m.warnings);
    for part in [
        "172.17.0.2",
        "private-use",
        "default route",
        "bridge address",
        "relay candidate they cannot reach",
        "external-ip=PUBLIC[/PRIVATE]",
        "TERN_EXTERNAL_IP",
    ] {
        assert!(w[0].contains(part), "{part:?} missing from: {}", w[0]);
    }
    // Named by the key it came from; CGNAT, loopback, link-local and ULA count too.
    for (text, addr, key) in [
        ("relay-ip=100.64.0.9\n", "100.64.0.9", "relay-ip"),
        ("listening-ip=127.0.0.1\n", "127.0.0.1", "listening-ip"),
        ("relay-ip=169.254.3.3\n", "169.254.3.3", "relay-ip"),
        ("relay-ip=fd00::5\n", "fd00::5", "relay-ip"),
    ] {
        let w = unreachable(&map(text, None, false));
        assert_eq!(w.len(), 1, "{text}");
        assert!(w[0].contains(addr) && w[0].contains(key), "{}", w[0]);
    }
    // No warning: a public address, anything external-ip says, the embedded default.
    assert_eq!(
        unreachable(&map("relay-ip=198.18.0.1\n", None, false)).len(),
        1
    );
    assert!(unreachable(&map("relay-ip=8.8.4.4\n", None, false)).is_empty());
    assert!(unreachable(&map("", Some("93.184.216.34"), false)).is_empty());
    assert!(unreachable(&map("external-ip=10.1.2.3\n", None, false)).is_empty());
    assert!(unreachable(&map("external-ip=192.0.2.9/10.0.0.9\n", None, false)).is_empty());
    assert!(unreachable(&map("", Some("172.17.0.2"), true)).is_empty());
    assert!(unreachable(&map("", None, true)).is_empty());
}

#[test]
fn operations_keys() {
    use tern::settings::LogFormat;
    let s = load("static-auth-secret=x\n", &[], &[]).unwrap().settings;
    assert_eq!(s.admin_listen, Some("127.0.0.1:9641".parse().unwrap()));
    assert_eq!((s.drain_timeout, s.log_format), (30, LogFormat::Text));
    assert!(s.alternate_servers.is_empty());

    let s = load("static-auth-secret=x\nprometheus-port=9700\n", &[], &[])
        .unwrap()
        .settings;
    assert_eq!(s.admin_listen, Some("127.0.0.1:9700".parse().unwrap()));
    let s = load(
        "static-auth-secret=x\nprometheus\nprometheus-port=9700\n",
        &[],
        &[],
    )
    .unwrap()
    .settings;
    assert_eq!(s.admin_listen, Some("0.0.0.0:9700".parse().unwrap()));
    let flags = [
        "--admin-listen=[::1]:9000",
        "--log-format",
        "json",
        "--drain-timeout=600",
        "--alternate-server=203.0.113.2",
    ];
    let s = load("static-auth-secret=x\nprometheus\n", &[], &flags)
        .unwrap()
        .settings;
    assert_eq!(s.admin_listen, Some("[::1]:9000".parse().unwrap()));
    assert_eq!((s.drain_timeout, s.log_format), (600, LogFormat::Json));
    assert_eq!(
        s.alternate_servers,
        ["203.0.113.2:3478".parse::<SocketAddr>().unwrap()]
    );
    let s = load(
        "static-auth-secret=x\n",
        &[("TERN_ADMIN_LISTEN", "none")],
        &[],
    )
    .unwrap()
    .settings;
    assert_eq!(s.admin_listen, None);

    let err = |text: &str| load(text, &[], &[]).unwrap_err().to_string();
    assert!(err("log-format=xml\n").starts_with("turnserver.conf:1: log-format: "));
    assert!(err("admin-listen=9641\n").starts_with("turnserver.conf:1: admin-listen: "));
    assert!(err("drain-timeout=0\n").starts_with("turnserver.conf:1: drain-timeout: "));

    // Operational keys alone still start the embedded default.
    let args = parse_serve_args(["--log-format=json".into(), "--drain-timeout=5".into()]).unwrap();
    let plan = startup::plan(&args, Vec::new(), || Ok([1; 32])).unwrap();
    assert!(plan.generated_secret.is_some());
}

#[test]
fn secret_file_supplies_the_secrets() {
    let dir = std::env::temp_dir().join(format!("tern-config-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secrets");
    std::fs::write(&file, "# rotated 2025-01-01\nnew-one\n\n  old-one  \n").unwrap();
    let args = parse_serve_args([format!("--static-auth-secret-file={}", file.display())]).unwrap();
    let plan = startup::plan(&args, Vec::new(), || unreachable!()).unwrap();
    let s = &plan.loaded.settings;
    assert!(plan.generated_secret.is_none());
    assert!(s.use_auth_secret);
    let secrets: Vec<_> = s.static_auth_secrets.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(secrets, ["new-one", "old-one"]);

    std::fs::write(&file, "only-a-secret-like-value-no-newline").unwrap();
    let plan = startup::plan(&args, Vec::new(), || unreachable!()).unwrap();
    assert_eq!(plan.loaded.settings.static_auth_secrets.len(), 1);

    std::fs::write(&file, "# empty\n").unwrap();
    let e = startup::plan(&args, Vec::new(), || unreachable!())
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no secret") && !e.contains("empty"), "{e}");
    let missing = dir.join("missing");
    let args =
        parse_serve_args([format!("--static-auth-secret-file={}", missing.display())]).unwrap();
    let e = startup::plan(&args, Vec::new(), || unreachable!())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("static-auth-secret-file: cannot read"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listening_port_is_udp_and_tcp_unless_turned_off() {
    let map = |text: &str, flags: &[&str]| {
        let l = load(
            &format!("static-auth-secret=s\nrelay-ip=10.0.0.4\nlistening-ip=10.0.0.5\nlistening-ip=::1\nlistening-port=3479\n{text}"),
            &[],
            flags,
        )
        .unwrap();
        assert!(
            l.warnings.is_empty(),
            "implemented keys draw no warning: {:?}",
            l.warnings
        );
        mapping::map(&l.settings, no_detect, false)
    };
    let both: Vec<std::net::SocketAddr> = vec![
        "10.0.0.5:3479".parse().unwrap(),
        "[::1]:3479".parse().unwrap(),
    ];
    let m = map("", &[]).unwrap();
    assert_eq!((&m.server.listen, &m.server.tcp_listen), (&both, &both));
    let m = map("no-tcp\n", &[]).unwrap();
    assert_eq!((&m.server.listen, m.server.tcp_listen.len()), (&both, 0));
    let m = map("", &["--no-udp"]).unwrap();
    assert_eq!((m.server.listen.len(), &m.server.tcp_listen), (0, &both));
    let e = map("no-udp\n", &["--no-tcp"]).unwrap_err().to_string();
    assert!(e.contains("no-udp") && e.contains("no-tcp"), "{e}");
}

/// A self-signed certificate and its key for 127.0.0.1, in a directory named after `test`.
fn tls_files(test: &str) -> (std::path::PathBuf, String, String) {
    let dir = std::env::temp_dir().join(format!("tern-config-tls-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (dir, c.display().to_string(), k.display().to_string())
}

#[test]
fn tls_keys_turn_tls_on_and_their_errors_name_key_and_file() {
    let (dir, cert, key) = tls_files("keys");
    let conf = format!(
        "static-auth-secret=s\nlistening-ip=127.0.0.1\nlistening-port=3478\ncert={cert}\npkey={key}\ntls-listening-port=5350\nno-tlsv1\nno-tlsv1_1\n"
    );
    let l = load(&conf, &[], &[]).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let m = mapping::map(&l.settings, no_detect, false).unwrap();
    assert!(m.server.tls.is_some());
    assert_eq!(
        m.server.tcp_listen,
        vec![
            "127.0.0.1:3478".parse::<SocketAddr>().unwrap(),
            "127.0.0.1:5350".parse().unwrap()
        ]
    );
    // no-tls turns it off; the TLS port is then not listened on.
    let l = load(&format!("{conf}no-tls\n"), &[], &[]).unwrap();
    let m = mapping::map(&l.settings, no_detect, false).unwrap();
    assert!(m.server.tls.is_none());
    assert_eq!(m.server.tcp_listen.len(), 1);
    // pkey-pwd: tern reads no encrypted key.
    let l = load(&format!("{conf}pkey-pwd=secret\n"), &[], &[]).unwrap();
    let e = mapping::map(&l.settings, no_detect, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("pkey: ") && e.contains(&key) && e.contains("pkey-pwd"),
        "{e}"
    );
    assert!(!e.contains("secret"), "the password is not quoted: {e}");
    // A missing certificate file: the key and the file.
    let conf_missing = conf.replace(&cert, "/nonexistent/tern-cert.pem");
    let l = load(&conf_missing, &[], &[]).unwrap();
    let e = mapping::map(&l.settings, no_detect, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("cert: ") && e.contains("/nonexistent/tern-cert.pem"),
        "{e}"
    );
    // A bad tls-sni-cert value names its key at load.
    let e = load(&format!("{conf}tls-sni-cert=nofiles\n"), &[], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tls-sni-cert") && e.contains("NAME:CERT:KEY"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn connection_keys_reach_the_server_and_bad_values_name_key_and_line() {
    let base = "static-auth-secret=s\nlistening-ip=127.0.0.1\n";
    let l = load(base, &[], &[]).unwrap();
    let m = mapping::map(&l.settings, no_detect, false).unwrap();
    // The defaults.
    assert_eq!(m.server.handshake_timeout, Duration::from_secs(10));
    assert_eq!(m.server.tcp_idle_timeout, Duration::from_secs(30));
    assert_eq!(
        m.server.max_connections, None,
        "the server's default, 20,000"
    );
    assert_eq!(m.server.max_connections_per_ip, 64);
    assert!(!m.server.proxy_protocol && m.server.proxy_listen.is_empty());

    let text = format!(
        "{base}tls-handshake-timeout=3\ntcp-idle-timeout=7\nmax-connections=12000\nmax-connections-per-ip=0\n"
    );
    let l = load(&text, &[], &[]).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let m = mapping::map(&l.settings, no_detect, false).unwrap();
    assert_eq!(m.server.handshake_timeout, Duration::from_secs(3));
    assert_eq!(m.server.tcp_idle_timeout, Duration::from_secs(7));
    assert_eq!(m.server.max_connections, Some(12_000));
    assert_eq!(m.server.max_connections_per_ip, 0, "0: no per-IP limit");
    // The environment and flags spell them as every other key.
    let l = load(
        base,
        &[
            ("TERN_MAX_CONNECTIONS_PER_IP", "5"),
            ("TERN_TCP_IDLE_TIMEOUT", "9"),
        ],
        &["--tls-handshake-timeout=2", "--max-connections", "300"],
    )
    .unwrap();
    let m = mapping::map(&l.settings, no_detect, false).unwrap();
    assert_eq!(m.server.max_connections_per_ip, 5);
    assert_eq!(m.server.tcp_idle_timeout, Duration::from_secs(9));
    assert_eq!(m.server.handshake_timeout, Duration::from_secs(2));
    assert_eq!(m.server.max_connections, Some(300));

    let err = |text: &str| {
        load(&format!("{base}{text}"), &[], &[])
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("tls-handshake-timeout=0\n"),
        "turnserver.conf:3: tls-handshake-timeout: `0` is not a positive number of seconds"
    );
    assert_eq!(
        err("\ntcp-idle-timeout=soon\n"),
        "turnserver.conf:4: tcp-idle-timeout: `soon` is not a positive number of seconds"
    );
    assert_eq!(
        err("max-connections=0\n"),
        "turnserver.conf:3: max-connections: `0` is not a positive number"
    );
    assert_eq!(
        err("max-connections-per-ip=-1\n"),
        "turnserver.conf:3: max-connections-per-ip: `-1` is not a non-negative number"
    );
    let e = load(base, &[("TERN_MAX_CONNECTIONS", "many")], &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "environment variable TERN_MAX_CONNECTIONS: max-connections: `many` is not a positive number"
    );
}

#[test]
fn proxy_and_alt_ports_add_listeners() {
    let base = "static-auth-secret=s\nlistening-ip=127.0.0.1\nlistening-port=3478\n";
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    let map = |text: &str| {
        let l = load(&format!("{base}{text}"), &[], &[]).unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        mapping::map(&l.settings, no_detect, false).unwrap()
    };
    // Not listened on unless set (coturn uses them for RFC 5780 with a second address).
    let m = map("");
    assert_eq!(m.server.listen, vec![addr("127.0.0.1:3478")]);
    assert_eq!(m.server.tcp_listen, vec![addr("127.0.0.1:3478")]);
    // coturn's tcp-proxy-port: one more TCP port that requires the header.
    let m = map("tcp-proxy-port=3480\nalt-listening-port=3479\n");
    assert_eq!(
        m.server.listen,
        vec![addr("127.0.0.1:3478"), addr("127.0.0.1:3479")]
    );
    assert_eq!(
        m.server.tcp_listen,
        vec![addr("127.0.0.1:3478"), addr("127.0.0.1:3479")]
    );
    assert_eq!(m.server.proxy_listen, vec![addr("127.0.0.1:3480")]);
    assert!(!m.server.proxy_protocol);
    // proxy-protocol: every TCP port requires it, so tcp-proxy-port may repeat one.
    let m = map("proxy-protocol\ntcp-proxy-port=3478\n");
    assert!(m.server.proxy_protocol);
    assert_eq!(m.server.tcp_listen, vec![addr("127.0.0.1:3478")]);
    assert!(m.server.proxy_listen.is_empty());
    // Without it, one port cannot both require the header and go without.
    let e = load(&format!("{base}\ntcp-proxy-port=3478\n"), &[], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "turnserver.conf:5: tcp-proxy-port 3478 is also listening-port (turnserver.conf:3)"
        ),
        "{e}"
    );
    assert!(e.contains("proxy-protocol"), "{e}");
    // With no-tcp there is no plain listening port to clash with.
    let m = map("no-tcp\ntcp-proxy-port=3478\n");
    assert!(m.server.tcp_listen.is_empty());
    assert_eq!(m.server.proxy_listen, vec![addr("127.0.0.1:3478")]);
    let e = load(&format!("{base}tcp-proxy-port=0\n"), &[], &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "turnserver.conf:4: tcp-proxy-port: `0` is not a port number"
    );
    let e = load(&format!("{base}alt-listening-port=x\n"), &[], &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "turnserver.conf:4: alt-listening-port: `x` is not a port number"
    );
    let e = load(&format!("{base}proxy-protocol=maybe\n"), &[], &[])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("turnserver.conf:4: proxy-protocol: "), "{e}");
}

#[test]
fn alt_tls_listening_port_needs_tls() {
    let (dir, cert, key) = tls_files("alt");
    let base = "static-auth-secret=s\nlistening-ip=127.0.0.1\nalt-tls-listening-port=5350\n";
    let l = load(base, &[], &[]).unwrap();
    let m = mapping::map(&l.settings, no_detect, false).unwrap();
    assert_eq!(m.server.tcp_listen.len(), 1);
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("alt-tls-listening-port 5350") && w.contains("TLS is off")),
        "{:?}",
        m.warnings
    );
    let l = load(&format!("{base}cert={cert}\npkey={key}\n"), &[], &[]).unwrap();
    let m = mapping::map(&l.settings, no_detect, false).unwrap();
    assert_eq!(
        m.server.tcp_listen,
        vec![
            "127.0.0.1:3478".parse::<SocketAddr>().unwrap(),
            "127.0.0.1:5349".parse().unwrap(),
            "127.0.0.1:5350".parse().unwrap(),
        ]
    );
    // tcp-proxy-port may not repeat a TLS port either.
    let e = load(
        &format!("{base}cert={cert}\npkey={key}\ntcp-proxy-port=5350\n"),
        &[],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tcp-proxy-port 5350 is also alt-tls-listening-port (turnserver.conf:3)"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn flood_and_brute_force_keys_reach_the_core_and_bad_values_name_key_and_line() {
    let base = "static-auth-secret=s\nlistening-ip=127.0.0.1\n";
    let guard = |text: &str, flags: &[&str]| {
        let l = load(&format!("{base}{text}"), &[], flags).unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        mapping::map(&l.settings, no_detect, false)
            .unwrap()
            .server
            .core
            .guard
    };
    // The defaults: on, coturn's 10 a second; 10 failures in 60 s lock a source out for 60 s.
    let g = guard("", &[]);
    assert_eq!(g.unauthorized_per_second, 10);
    assert_eq!(g.auth_failures, 10);
    assert_eq!(g.auth_failure_window, Duration::from_secs(60));
    assert_eq!(g.lockout, Duration::from_secs(60));
    // coturn's keys: a bare `unauthorized-ratelimit` (coturn's way to turn it on) changes
    // nothing here; `unauthorized-ratelimit-rps` sets the rate; `=false` turns it off.
    let g = guard(
        "unauthorized-ratelimit\nunauthorized-ratelimit-rps=25\n",
        &[],
    );
    assert_eq!(g.unauthorized_per_second, 25);
    assert_eq!(
        guard("unauthorized-ratelimit=false\n", &[]).unauthorized_per_second,
        0
    );
    assert_eq!(
        guard("", &["--unauthorized-ratelimit=0"]).unauthorized_per_second,
        0
    );
    // tern's keys.
    let g = guard(
        "auth-failure-limit=3\nauth-failure-window=30\nauth-lockout-duration=900\n",
        &[],
    );
    assert_eq!(g.auth_failures, 3);
    assert_eq!(g.auth_failure_window, Duration::from_secs(30));
    assert_eq!(g.lockout, Duration::from_secs(900));
    assert_eq!(
        guard("auth-failure-limit=0\n", &[]).auth_failures,
        0,
        "0: no lockouts"
    );

    let err = |text: &str| {
        load(&format!("{base}{text}"), &[], &[])
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("unauthorized-ratelimit-rps=0\n"),
        "turnserver.conf:3: unauthorized-ratelimit-rps: `0` is not a positive number"
    );
    assert_eq!(
        err("unauthorized-ratelimit=maybe\n"),
        "turnserver.conf:3: unauthorized-ratelimit: `maybe` is not a flag value (use 1/true/yes or 0/false/no)"
    );
    assert_eq!(
        err("\nauth-failure-limit=many\n"),
        "turnserver.conf:4: auth-failure-limit: `many` is not a non-negative number"
    );
    assert_eq!(
        err("auth-failure-window=0\n"),
        "turnserver.conf:3: auth-failure-window: `0` is not a positive number of seconds"
    );
    assert_eq!(
        err("auth-lockout-duration=forever\n"),
        "turnserver.conf:3: auth-lockout-duration: `forever` is not a positive number of seconds"
    );
}

#[test]
fn mapping_of_addresses_per_family() {
    let map = |text: &str, detect: &[&str]| {
        let l = load(&format!("static-auth-secret=s\n{text}"), &[], &[]).unwrap();
        let detected: Vec<IpAddr> = detect.iter().map(|a| ip(a)).collect();
        mapping::map(
            &l.settings,
            |family| {
                detected
                    .iter()
                    .copied()
                    .find(|d| d.is_ipv4() == family.is_ipv4())
            },
            false,
        )
    };
    // Both families, one external-ip each, listening on both unspecified addresses.
    let m = map(
        "listening-ip=0.0.0.0\nlistening-ip=::\nexternal-ip=203.0.113.10\nexternal-ip=2001:db8::10/fd00::10\n",
        &[],
    )
    .unwrap();
    let core = &m.server.core;
    assert_eq!(core.relayed_ip(V4), Some(ip("203.0.113.10")));
    assert_eq!(core.relayed_ip(V6), Some(ip("2001:db8::10")));
    assert_eq!(m.server.relay_bind_ip(V4), ip("0.0.0.0"));
    assert_eq!(m.server.relay_bind_ip(V6), ip("fd00::10"));
    assert_eq!(
        m.relayed_ip_sources,
        [
            Some(RelayedIpSource::ExternalIp),
            Some(RelayedIpSource::ExternalIp)
        ]
    );
    assert_eq!(m.server.listen.len(), 2);
    assert!(m.server.core.own_ips.contains(&ip("fd00::10")));
    // relay-ip per family; a specific IPv6 listening-ip otherwise.
    let m = map("relay-ip=10.0.0.4\nrelay-ip=2001:db8::4\n", &[]).unwrap();
    assert_eq!(m.server.core.relayed_ip(V6), Some(ip("2001:db8::4")));
    assert_eq!(m.server.relay_bind_ip(V6), ip("2001:db8::4"));
    let m = map("listening-ip=10.0.0.5\nlistening-ip=2001:db8::5\n", &[]).unwrap();
    assert_eq!(m.server.core.relayed_ip(V6), Some(ip("2001:db8::5")));
    assert_eq!(
        m.relayed_ip_sources[V6.index()],
        Some(RelayedIpSource::ListeningIp)
    );
    // As in coturn, relay-ip (or external-ip) names the families relayed in: an IPv6
    // listener beside an IPv4 relay-ip adds no IPv6 relay, and a warning says so.
    let m = map(
        "listening-ip=127.0.0.1\nlistening-ip=::1\nrelay-ip=127.0.0.1\n",
        &[],
    )
    .unwrap();
    assert_eq!(m.server.core.relayed_ip(V6), None);
    assert_eq!(m.server.listen.len(), 2);
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("tern listens on ::1") && w.contains("no IPv6 address")),
        "{:#?}",
        m.warnings
    );
    // Without anything IPv6, tern relays in IPv4 only.
    let m = map("external-ip=203.0.113.10\n", &["2001:db8::99"]).unwrap();
    assert_eq!(m.server.core.relayed_ip(V6), None);
    assert_eq!(m.relayed_ip_sources[V6.index()], None);
    // `::` alone: the host's IPv6 address, detected; IPv4 is not relayed in, and the
    // default family (IPv4) would answer every browser 440, which a warning says.
    let m = map("listening-ip=::\n", &["2001:db8::99", "192.0.2.7"]).unwrap();
    assert_eq!(m.server.core.relayed_ip(V6), Some(ip("2001:db8::99")));
    assert_eq!(m.server.core.relayed_ip(V4), None);
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("allocation-default-address-family is ipv4") && w.contains("440")),
        "{:#?}",
        m.warnings
    );
    let m = map(
        "listening-ip=::\nallocation-default-address-family=keep\n",
        &["2001:db8::99"],
    )
    .unwrap();
    assert_eq!(
        m.server.core.default_family,
        tern_proto::DefaultFamily::Keep
    );
    assert!(!m
        .warnings
        .iter()
        .any(|w| w.contains("allocation-default-address-family")));
    // `::` beside 0.0.0.0 with no IPv6 address found: IPv4 only, and a warning says why.
    let m = map("listening-ip=0.0.0.0\nlistening-ip=::\n", &["192.0.2.7"]).unwrap();
    assert_eq!(m.server.core.relayed_ip(V6), None);
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("found no IPv6 address")),
        "{:#?}",
        m.warnings
    );
    // Only `::` and nothing found: no family to relay in.
    let e = map("listening-ip=::\n", &[]).unwrap_err().to_string();
    assert!(e.contains("set external-ip or relay-ip"), "{e}");
    // Two external-ips of one family: the first is advertised, with a warning.
    let m = map(
        "external-ip=2001:db8::1\nexternal-ip=2001:db8::2\nexternal-ip=203.0.113.1\n",
        &[],
    )
    .unwrap();
    assert_eq!(m.server.core.relayed_ip(V6), Some(ip("2001:db8::1")));
    assert!(m
        .warnings
        .iter()
        .any(|w| w.contains("only the first IPv6 external-ip")));
}

#[test]
fn address_family_keys() {
    let family = |text: &str| {
        load(text, &[], &[])
            .map(|l| l.settings.allocation_default_address_family)
            .map_err(|e| e.to_string())
    };
    use tern_proto::DefaultFamily;
    assert_eq!(family(""), Ok(DefaultFamily::Ipv4));
    assert_eq!(
        family("allocation-default-address-family=ipv6\n"),
        Ok(DefaultFamily::Ipv6)
    );
    assert_eq!(
        family("allocation-default-address-family=KEEP\n"),
        Ok(DefaultFamily::Keep)
    );
    assert_eq!(family("keep-address-family\n"), Ok(DefaultFamily::Keep));
    let e = family("\nallocation-default-address-family=ipv5\n").unwrap_err();
    assert!(
        e.contains("turnserver.conf:2")
            && e.contains("allocation-default-address-family")
            && e.contains("ipv5"),
        "{e}"
    );
    // PUBLIC/PRIVATE of two families is refused at start, naming the key and the line.
    let e = load("external-ip=203.0.113.1/fd00::1\n", &[], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("turnserver.conf:1")
            && e.contains("external-ip")
            && e.contains("other address family"),
        "{e}"
    );
    // Neither key draws the "not implemented" warning any more.
    let l = load("allocation-default-address-family=ipv4\n", &[], &[]).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}
