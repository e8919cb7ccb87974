//! Live reload: on SIGHUP, and when the configuration file or a `static-auth-secret-file`
//! changes (Kubernetes replaces mounted Secrets in place), re-read everything `tern serve`
//! was started from, validate it the same way, and hand the workers the new credentials and
//! peer filter. Live allocations keep the key they authenticated with.
//!
//! A reload that fails (unreadable file, invalid value, no credentials left) changes nothing:
//! the caller logs why and the old settings stay. Keys that cannot change while running
//! (addresses, ports, lifetimes, threads, logging) are compared with the ones in force and
//! named in a warning when they differ; they apply at the next start.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tern_server::tls::{CertStore, Generation};
use tern_server::{Reload, ServerConfig};

use crate::overrides::ServeArgs;
use crate::settings::Settings;
use crate::{mapping, startup};

/// How often watched files are looked at.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// What a drain uses; may change on reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSettings {
    /// `drain-timeout`.
    pub timeout: Duration,
    /// The first `alternate-server`.
    pub alternate: Option<SocketAddr>,
}

impl DrainSettings {
    fn of(s: &Settings) -> Self {
        Self {
            timeout: Duration::from_secs(s.drain_timeout),
            alternate: s.alternate_servers.first().copied(),
        }
    }
}

/// A reload that validated. (No `Debug`: it holds the secrets.)
pub struct Reloaded {
    /// What the workers take.
    pub reload: Reload,
    /// Keys that differ from the ones in force but need a restart.
    pub restart_needed: Vec<&'static str>,
    /// The loader's warnings (ignored keys and the like).
    pub warnings: Vec<String>,
    /// The certificates new TLS connections get now, when TLS is on.
    pub tls: Option<Arc<Generation>>,
    /// The sessions API's token (`admin-token-file`), or `None` when unset.
    pub admin_token: Option<Vec<u8>>,
}

/// Re-reads and re-validates the configuration; remembers what is in force. (No `Debug`:
/// the configuration in force holds the secrets.)
pub struct Reloader {
    args: ServeArgs,
    env: Vec<(String, String)>,
    embedded: bool,
    /// The settings and server configuration started with (non-live keys stay in force).
    started: Settings,
    started_server: ServerConfig,
    drain: DrainSettings,
    /// Watched files and a hash of their content (`None`: unreadable).
    watched: Vec<(PathBuf, Option<u64>)>,
    /// The certificates the workers serve, when TLS is on.
    tls: Option<Arc<CertStore>>,
}

fn fingerprint(path: &PathBuf) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// The files to watch and a hash of their content: the hash in `seen` for a file it names
/// (taken before a reload read the files), else one taken now.
fn watch_list(
    args: &ServeArgs,
    s: &Settings,
    tls: Option<&CertStore>,
    seen: &[(PathBuf, Option<u64>)],
) -> Vec<(PathBuf, Option<u64>)> {
    let tls_files = tls.map(CertStore::watched_files).unwrap_or_default();
    args.config
        .iter()
        .chain(&s.static_auth_secret_files)
        .chain(&s.admin_token_file)
        .chain(&tls_files)
        .map(|p| {
            let print = seen
                .iter()
                .find(|(q, _)| q == p)
                .map_or_else(|| fingerprint(p), |(_, print)| *print);
            (p.clone(), print)
        })
        .collect()
}

/// Logs how many days each certificate of `generation` has left.
pub fn log_expiry(generation: &Generation) {
    let now = SystemTime::now();
    for cert in generation.certificates() {
        let days_left = cert.expiry(now).days_left;
        let file = cert.cert_path.display().to_string();
        if days_left < 14 {
            tracing::warn!(file, days_left, names = ?cert.names, "TLS certificate expires soon");
        } else {
            tracing::info!(file, days_left, names = ?cert.names, "TLS certificate");
        }
    }
}

impl Reloader {
    /// `args` and `env` as `tern serve` got them; `settings` and `server` as started;
    /// `embedded` when the embedded default (a generated secret) runs, which has nothing
    /// to reload.
    pub fn new(
        args: ServeArgs,
        env: Vec<(String, String)>,
        settings: &Settings,
        server: &ServerConfig,
        embedded: bool,
    ) -> Self {
        Self {
            watched: if embedded {
                Vec::new()
            } else {
                watch_list(&args, settings, server.tls.as_deref(), &[])
            },
            tls: server.tls.clone(),
            args,
            env,
            embedded,
            started: settings.clone(),
            started_server: server.clone(),
            drain: DrainSettings::of(settings),
        }
    }

    /// The certificates new TLS connections get, when TLS is on.
    pub fn tls(&self) -> Option<Arc<Generation>> {
        self.tls.as_ref().map(|s| s.current())
    }

    /// The files watched for changes.
    pub fn watched(&self) -> impl Iterator<Item = &PathBuf> {
        self.watched.iter().map(|(p, _)| p)
    }

    /// The drain settings in force.
    pub fn drain(&self) -> DrainSettings {
        self.drain
    }

    /// Whether a watched file changed (or appeared, or vanished) since the last look.
    pub fn files_changed(&mut self) -> bool {
        let mut changed = false;
        for (path, print) in &mut self.watched {
            let now = fingerprint(path);
            if now != *print {
                *print = now;
                changed = true;
            }
        }
        changed
    }

    /// Reads and validates everything again. On success the new drain settings apply at
    /// once and the returned [`Reload`] is for the workers; on error nothing changes.
    pub fn reload(&mut self) -> anyhow::Result<Reloaded> {
        anyhow::ensure!(
            !self.embedded,
            "nothing to reload: tern runs on the embedded default with a generated secret"
        );
        // Hash the watched files before reading them: one that changes while this reload
        // reads it then differs from what is recorded and triggers another reload, instead
        // of being taken for the content loaded.
        let seen: Vec<_> = self
            .watched
            .iter()
            .map(|(p, _)| (p.clone(), fingerprint(p)))
            .collect();
        let plan = startup::plan(&self.args, self.env.clone(), || {
            anyhow::bail!("a reload never generates a secret")
        })?;
        anyhow::ensure!(
            plan.generated_secret.is_none(),
            "the configuration no longer configures anything"
        );
        let s = plan.loaded.settings;
        let admin_token = crate::settings::load_admin_token(&s)?;
        let mapped = mapping::map(&s, mapping::detect_local_ip, false)?;
        let restart_needed = differences(&self.started, &self.started_server, &s, &mapped.server);
        // The certificates were read, parsed and checked with the rest (mapping loaded them,
        // and an error there named the key and the file); the workers' store takes that
        // generation as it is, without reading the files again.
        let tls = match (&self.tls, &mapped.server.tls) {
            (Some(store), Some(new)) => Some(store.install(new.current())),
            _ => None,
        };
        let core = mapped.server.core;
        // The files to watch may have changed too (a new secret file); take their content
        // as seen, so this reload does not trigger another.
        self.watched = watch_list(&self.args, &s, self.tls.as_deref(), &seen);
        self.drain = DrainSettings::of(&s);
        Ok(Reloaded {
            reload: Reload {
                secrets: core.auth_secrets,
                users: core.users,
                peer_filter: core.peer_filter,
            },
            restart_needed,
            warnings: plan.loaded.warnings,
            tls,
            admin_token,
        })
    }
}

/// Keys whose new value differs from the one in force but cannot change while running.
fn differences(
    old: &Settings,
    old_server: &ServerConfig,
    new: &Settings,
    new_server: &ServerConfig,
) -> Vec<&'static str> {
    let (a, b) = (old_server, new_server);
    let (ac, bc) = (&a.core, &b.core);
    let checks = [
        (
            "listening-ip/listening-port/alt-listening-port/alt-tls-listening-port/no-udp/no-tcp",
            a.listen != b.listen || a.tcp_listen != b.tcp_listen,
        ),
        (
            "tcp-proxy-port/proxy-protocol",
            a.proxy_listen != b.proxy_listen || a.proxy_protocol != b.proxy_protocol,
        ),
        (
            "tls-handshake-timeout",
            a.handshake_timeout != b.handshake_timeout,
        ),
        ("tcp-idle-timeout", a.tcp_idle_timeout != b.tcp_idle_timeout),
        (
            "max-connections/max-connections-per-ip",
            a.max_connections != b.max_connections
                || a.max_connections_per_ip != b.max_connections_per_ip,
        ),
        ("relay-ip", a.relay_bind_ips != b.relay_bind_ips),
        (
            "external-ip",
            ac.relayed_ips != bc.relayed_ips || ac.own_ips != bc.own_ips,
        ),
        (
            "allocation-default-address-family",
            ac.default_family != bc.default_family,
        ),
        (
            "min-port/max-port",
            ac.relay_port_range != bc.relay_port_range,
        ),
        ("realm", ac.realm != bc.realm),
        ("relay-threads", a.workers != b.workers),
        ("no-batched-io", a.batched_io != b.batched_io),
        ("udp-recv-buffer/udp-send-buffer", a.buffers != b.buffers),
        ("max-allocate-lifetime", ac.max_lifetime != bc.max_lifetime),
        (
            "permission-lifetime",
            ac.permission_lifetime != bc.permission_lifetime,
        ),
        (
            "channel-lifetime",
            ac.channel_lifetime != bc.channel_lifetime,
        ),
        ("stale-nonce", ac.nonce_lifetime != bc.nonce_lifetime),
        ("user-quota", ac.user_quota != bc.user_quota),
        ("total-quota", ac.total_quota != bc.total_quota),
        ("max-bps", ac.max_bps != bc.max_bps),
        (
            "unauthorized-ratelimit/unauthorized-ratelimit-rps",
            ac.guard.unauthorized_per_second != bc.guard.unauthorized_per_second,
        ),
        (
            "auth-failure-limit/auth-failure-window/auth-lockout-duration",
            ac.guard.auth_failures != bc.guard.auth_failures
                || ac.guard.auth_failure_window != bc.guard.auth_failure_window
                || ac.guard.lockout != bc.guard.lockout,
        ),
        (
            "fingerprint",
            ac.always_fingerprint != bc.always_fingerprint,
        ),
        (
            "rfc5766-channel-numbers",
            ac.rfc5766_channels != bc.rfc5766_channels,
        ),
        (
            "admin-listen/prometheus",
            old.admin_listen != new.admin_listen,
        ),
        ("log-file", old.log_file != new.log_file),
        ("usage-log", a.usage_log != b.usage_log),
        ("xdp/xdp-interface", a.xdp != b.xdp),
        (
            "ready-min-free-ports",
            a.ready_min_free_ports != b.ready_min_free_ports,
        ),
        ("log-format", old.log_format != new.log_format),
        ("verbose", old.verbosity != new.verbosity),
    ];
    checks
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overrides::parse_serve_args;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tern-reload-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn start(conf: &std::path::Path) -> Reloader {
        let args = parse_serve_args(["-c".to_string(), conf.display().to_string()]).unwrap();
        let plan = startup::plan(&args, Vec::new(), || unreachable!()).unwrap();
        let mapped = mapping::map(&plan.loaded.settings, |_| None, false).unwrap();
        Reloader::new(
            args,
            Vec::new(),
            &plan.loaded.settings,
            &mapped.server,
            false,
        )
    }

    #[test]
    fn admin_token_file_is_watched_and_reloads() {
        let d = dir("admin-token");
        let (conf, token) = (d.join("tern.conf"), d.join("token"));
        std::fs::write(
            &token,
            "# the sessions API
first-token
",
        )
        .unwrap();
        let text = format!(
            "static-auth-secret=s\nexternal-ip=203.0.113.5\nadmin-token-file={}\n",
            token.display()
        );
        std::fs::write(&conf, &text).unwrap();
        let mut r = start(&conf);
        assert_eq!(r.watched().count(), 2, "the config and the token file");
        assert_eq!(
            r.reload().unwrap().admin_token,
            Some(b"first-token".to_vec())
        );
        std::fs::write(&token, "second-token\n").unwrap();
        assert!(r.files_changed());
        assert_eq!(
            r.reload().unwrap().admin_token,
            Some(b"second-token".to_vec())
        );
        // A file without a token is refused, naming the key, never quoting the file.
        std::fs::write(&token, "# nothing\n\n").unwrap();
        let err = format!("{:#}", r.reload().err().expect("refused"));
        assert!(
            err.contains("admin-token-file") && err.contains("holds no token"),
            "{err}"
        );
        std::fs::remove_file(&token).unwrap();
        let err = format!("{:#}", r.reload().err().expect("refused"));
        assert!(err.contains("admin-token-file: cannot read"), "{err}");
    }

    #[test]
    fn secret_file_rotation_and_invalid_files() {
        let d = dir("rotation");
        let (conf, secrets) = (d.join("tern.conf"), d.join("secrets"));
        std::fs::write(&secrets, "# rotation\nfirst\n").unwrap();
        let text = format!(
            "static-auth-secret-file={}\nexternal-ip=203.0.113.5\ndrain-timeout=7\n",
            secrets.display()
        );
        std::fs::write(&conf, &text).unwrap();
        let mut r = start(&conf);
        assert_eq!(r.watched().count(), 2);
        assert!(!r.files_changed());
        assert_eq!(r.drain().timeout, Duration::from_secs(7));

        std::fs::write(&secrets, "second\nfirst\n").unwrap();
        assert!(r.files_changed());
        assert!(!r.files_changed());
        let ok = r.reload().unwrap();
        assert_eq!(
            ok.reload.secrets,
            vec![b"second".to_vec(), b"first".to_vec()]
        );
        assert!(ok.restart_needed.is_empty(), "{:?}", ok.restart_needed);

        // An empty secret file is refused without quoting anything.
        std::fs::write(&secrets, "# nothing\n").unwrap();
        let err = r.reload().err().expect("refused").to_string();
        assert!(err.contains("holds no secret"), "{err}");
        // A bad value names file, line and key.
        std::fs::write(&secrets, "third\n").unwrap();
        std::fs::write(&conf, format!("{text}min-port=abc\n")).unwrap();
        let err = r.reload().err().expect("refused").to_string();
        assert!(err.contains("tern.conf:4: min-port"), "{err}");

        // Live keys apply; the others are named.
        std::fs::write(
            &conf,
            format!("{text}listening-port=3479\ndrain-timeout=9\nalternate-server=203.0.113.6\n"),
        )
        .unwrap();
        let ok = r.reload().unwrap();
        assert_eq!(
            ok.restart_needed,
            vec!["listening-ip/listening-port/alt-listening-port/alt-tls-listening-port/no-udp/no-tcp"]
        );
        assert_eq!(ok.reload.secrets, vec![b"third".to_vec()]);
        assert_eq!(r.drain().timeout, Duration::from_secs(9));
        assert_eq!(
            r.drain().alternate,
            Some("203.0.113.6:3478".parse().unwrap())
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Writes a new self-signed certificate for 127.0.0.1 and its key to `cert` and `key`.
    fn write_cert(cert: &std::path::Path, key: &std::path::Path) {
        let pair = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        std::fs::write(cert, c.pem()).unwrap();
        std::fs::write(key, pair.serialize_pem()).unwrap();
    }

    #[test]
    fn certificates_reload_once_and_a_bad_file_keeps_the_old_ones() {
        let d = dir("tls");
        let (conf, cert, key) = (d.join("tern.conf"), d.join("c.pem"), d.join("k.pem"));
        write_cert(&cert, &key);
        std::fs::write(
            &conf,
            format!(
                "static-auth-secret=s\nexternal-ip=203.0.113.5\ncert={}\npkey={}\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let mut r = start(&conf);
        assert_eq!(r.watched().count(), 3);
        let first = r.tls().expect("TLS is on");

        // The generation the reload loaded is the one served: installed, not loaded again.
        write_cert(&cert, &key);
        assert!(r.files_changed());
        let ok = r.reload().unwrap();
        let loaded = ok.tls.expect("the new certificates");
        assert!(!Arc::ptr_eq(&loaded, &first));
        assert!(Arc::ptr_eq(&loaded, &r.tls().unwrap()));
        assert!(!r.files_changed(), "the reload took the files as seen");

        // A bad key: refused, naming the key and the file; the loaded generation stays.
        std::fs::write(&key, "not a key\n").unwrap();
        let err = format!("{:#}", r.reload().err().expect("refused"));
        assert!(
            err.starts_with("pkey: ") && err.contains(&key.display().to_string()),
            "{err}"
        );
        assert!(Arc::ptr_eq(&loaded, &r.tls().unwrap()));
        let _ = std::fs::remove_dir_all(&d);
    }
}
