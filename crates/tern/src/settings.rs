//! Typed, validated settings from the merged configuration entries.
//!
//! Layers merge per key: the highest layer that mentions a key (file < environment <
//! command line) supplies all of that key's values; within one layer, repeats of a
//! multi-valued key accumulate and repeats of any other key let the last one win.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use tern_proto::peer_filter::IpRange;
use tern_proto::{DefaultFamily, StaticUser};

use crate::conf::{Entry, Origin};
use crate::keys::{self, Arity, Known};
use crate::values::{self, ExternalIp};

/// A shared secret; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    /// `info` and above.
    #[default]
    Normal,
    /// `verbose`: `debug`.
    Verbose,
    /// `Verbose`: `trace`.
    Extra,
}

/// Where logs go (`log-file`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LogTarget {
    /// Standard error (the default; also used for `syslog`, with a warning).
    #[default]
    Stderr,
    /// Standard output.
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

/// How log lines are written (`log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The admin port's default address (coturn's exporter port, loopback only).
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PROMETHEUS_PORT);
/// coturn's `prometheus-port` default.
pub const DEFAULT_PROMETHEUS_PORT: u16 = 9641;
/// `drain-timeout`'s default, seconds.
pub const DEFAULT_DRAIN_TIMEOUT: u64 = 30;
/// `tls-handshake-timeout`'s default, seconds.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: u64 = 10;
/// `tcp-idle-timeout`'s default, seconds.
pub const DEFAULT_TCP_IDLE_TIMEOUT: u64 = 30;
/// `max-connections-per-ip`'s default.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 64;
/// `unauthorized-ratelimit-rps`'s default (coturn's).
pub const DEFAULT_UNAUTHORIZED_RATELIMIT_RPS: u32 = 10;
/// `auth-failure-limit`'s default.
pub const DEFAULT_AUTH_FAILURE_LIMIT: u32 = 10;
/// `auth-failure-window`'s default, seconds.
pub const DEFAULT_AUTH_FAILURE_WINDOW: u64 = 60;
/// `auth-lockout-duration`'s default, seconds.
pub const DEFAULT_AUTH_LOCKOUT_DURATION: u64 = 60;
/// The port of an `alternate-server` given without one.
const DEFAULT_ALTERNATE_PORT: u16 = 3478;

/// Every setting tern implements, with coturn's defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `listening-ip`; empty means 0.0.0.0.
    pub listening_ips: Vec<IpAddr>,
    /// `listening-port` (3478).
    pub listening_port: u16,
    /// `relay-ip`.
    pub relay_ips: Vec<IpAddr>,
    /// `external-ip`.
    pub external_ips: Vec<ExternalIp>,
    /// `min-port` (49152).
    pub min_port: u16,
    /// `max-port` (49252).
    pub max_port: u16,
    /// `realm` ("tern").
    pub realm: String,
    /// `use-auth-secret` (also implied by `static-auth-secret`, as in coturn).
    pub use_auth_secret: bool,
    /// `static-auth-secret`; several rotate (any one matches).
    pub static_auth_secrets: Vec<Secret>,
    /// `lt-cred-mech`.
    pub lt_cred_mech: bool,
    /// `user`.
    pub users: Vec<StaticUser>,
    /// `fingerprint`.
    pub fingerprint: bool,
    /// `stale-nonce` seconds (600).
    pub stale_nonce: u64,
    /// `max-allocate-lifetime` seconds (3600).
    pub max_allocate_lifetime: u64,
    /// `channel-lifetime` seconds (600).
    pub channel_lifetime: u64,
    /// `permission-lifetime` seconds (300).
    pub permission_lifetime: u64,
    /// `user-quota` (0: none).
    pub user_quota: u32,
    /// `total-quota` (0: none).
    pub total_quota: u32,
    /// `max-bps`: payload bytes per second per allocation and direction (0: no limit).
    pub max_bps: u64,
    /// `allowed-peer-ip`.
    pub allowed_peer_ips: Vec<IpRange>,
    /// `denied-peer-ip`.
    pub denied_peer_ips: Vec<IpRange>,
    /// `allow-loopback-peers`.
    pub allow_loopback_peers: bool,
    /// `no-multicast-peers`.
    pub no_multicast_peers: bool,
    /// `rfc5766-channel-numbers` (tern's own key): accept channels 0x5000..=0x7FFF.
    pub rfc5766_channel_numbers: bool,
    /// `allocation-default-address-family` (`ipv4`): the relayed family of an Allocate that
    /// names none; `keep-address-family` is coturn's older spelling of `keep`.
    pub allocation_default_address_family: DefaultFamily,
    /// `no-udp`: no UDP listening sockets.
    pub no_udp: bool,
    /// `no-tcp`: no TCP listening sockets (`listening-port` is otherwise UDP and TCP).
    pub no_tcp: bool,
    /// `relay-threads`: worker threads; 0 means one per CPU.
    pub relay_threads: u32,
    /// `udp-recv-buffer` (tern's own key): SO_RCVBUF of the listening sockets, bytes.
    pub udp_recv_buffer: Option<u32>,
    /// `udp-send-buffer` (tern's own key): SO_SNDBUF of the listening sockets, bytes.
    pub udp_send_buffer: Option<u32>,
    /// `no-batched-io` (tern's own key): plain recvfrom/sendto instead of recvmmsg/sendmmsg.
    pub no_batched_io: bool,
    /// `verbose` / `Verbose`.
    pub verbosity: Verbosity,
    /// `log-file`.
    pub log_file: LogTarget,
    /// `log-format` (tern's own key): `text` or `json`.
    pub log_format: LogFormat,
    /// `static-auth-secret-file` (tern's own key): files of shared secrets, one a line
    /// (`#` comments); re-read on reload. Their secrets are added to `static_auth_secrets`
    /// by [`load_secret_files`].
    pub static_auth_secret_files: Vec<PathBuf>,
    /// `admin-token-file` (tern's own key): the sessions API's bearer token, first line of
    /// the file; re-read on reload ([`load_admin_token`]). Unset: `GET /allocations` is open
    /// and `POST /allocations/revoke` does not exist.
    pub admin_token_file: Option<PathBuf>,
    /// The admin HTTP port (`/metrics`, `/healthz`, `/readyz`); `None` turns it off.
    /// From `admin-listen` (tern's own key), else coturn's `prometheus` flag (all addresses,
    /// port `prometheus-port`), else 127.0.0.1:9641.
    pub admin_listen: Option<SocketAddr>,
    /// `drain-timeout` (tern's own key): seconds a graceful drain waits for the last
    /// allocation before exiting anyway (30).
    pub drain_timeout: u64,
    /// `usage-log` (tern's own key): a file to append one JSON usage record to per ended
    /// allocation (besides the log line); reopened on SIGHUP and when moved.
    pub usage_log: Option<PathBuf>,
    /// `ready-min-free-ports` (tern's own key): `/readyz` fails while fewer relay ports are
    /// free; 0: off (0).
    pub ready_min_free_ports: u32,
    /// `xdp` (tern's own key): the XDP fast path for ChannelData, off|auto|native|generic.
    pub xdp: tern_server::xdp::Mode,
    /// `xdp-interface` (tern's own key): the device the fast path attaches to.
    pub xdp_interface: Option<String>,
    /// `alternate-server`: the first one is named in 300 Try Alternate while draining.
    pub alternate_servers: Vec<SocketAddr>,
    /// `cert`: the TLS certificate chain (TLS is on when `cert` and `pkey` are both set).
    pub cert: Option<PathBuf>,
    /// `pkey`: the TLS private key.
    pub pkey: Option<PathBuf>,
    /// Whether `pkey-pwd` was given (tern reads no encrypted key: an error at start).
    pub pkey_pwd: bool,
    /// `tls-listening-port` (5349): TLS (and plain TURN) on every listening IP.
    pub tls_listening_port: u16,
    /// `no-tls`: no TLS even with `cert` and `pkey`.
    pub no_tls: bool,
    /// `cipher-list`: an OpenSSL cipher string.
    pub cipher_list: Option<String>,
    /// `ec-curve-name`: the one ECDHE group.
    pub ec_curve_name: Option<String>,
    /// `no-tlsv1_2`: TLS 1.3 only.
    pub no_tlsv1_2: bool,
    /// `tls-sni-cert` (tern's own key, repeatable): `NAME:CERT:KEY`.
    pub tls_sni_certs: Vec<tern_server::tls::SniCert>,
    /// `alt-listening-port`: UDP and TCP on every listening IP too (only when set).
    pub alt_listening_port: Option<u16>,
    /// `alt-tls-listening-port`: TLS (and plain TURN) on every listening IP too, when TLS is
    /// on (only when set).
    pub alt_tls_listening_port: Option<u16>,
    /// `tcp-proxy-port`: a TCP port on every listening IP whose connections must start with
    /// a PROXY protocol header (v1 or v2).
    pub tcp_proxy_port: Option<u16>,
    /// `proxy-protocol` (tern's own key): every TCP/TLS port requires the PROXY header.
    pub proxy_protocol: bool,
    /// `tls-handshake-timeout` (tern's own key): seconds for a TLS handshake or a PROXY
    /// header (10).
    pub tls_handshake_timeout: u64,
    /// `tcp-idle-timeout` (tern's own key): seconds a TCP connection without an allocation
    /// may stay silent (30).
    pub tcp_idle_timeout: u64,
    /// `max-connections` (tern's own key): TCP/TLS connections in all (20,000).
    pub max_connections: Option<u32>,
    /// `max-connections-per-ip` (tern's own key): TCP/TLS connections from one client IP;
    /// 0: no limit (64).
    pub max_connections_per_ip: u32,
    /// `unauthorized-ratelimit` (coturn's key, on by default in tern): limit error responses
    /// to unauthenticated UDP requests per source.
    pub unauthorized_ratelimit: bool,
    /// `unauthorized-ratelimit-rps` (coturn's key): that limit per second (10).
    pub unauthorized_ratelimit_rps: u32,
    /// `auth-failure-limit` (tern's own key): failed integrity checks within the window that
    /// lock a source out; 0: never (10).
    pub auth_failure_limit: u32,
    /// `auth-failure-window` (tern's own key): seconds the failures are counted over (60).
    pub auth_failure_window: u64,
    /// `auth-lockout-duration` (tern's own key): seconds a lockout lasts (60).
    pub auth_lockout_duration: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listening_ips: Vec::new(),
            listening_port: 3478,
            relay_ips: Vec::new(),
            external_ips: Vec::new(),
            allocation_default_address_family: DefaultFamily::Ipv4,
            min_port: 49152,
            max_port: 49252,
            realm: "tern".into(),
            use_auth_secret: false,
            static_auth_secrets: Vec::new(),
            lt_cred_mech: false,
            users: Vec::new(),
            fingerprint: false,
            stale_nonce: 600,
            max_allocate_lifetime: 3600,
            channel_lifetime: 600,
            permission_lifetime: 300,
            user_quota: 0,
            total_quota: 0,
            max_bps: 0,
            allowed_peer_ips: Vec::new(),
            denied_peer_ips: Vec::new(),
            allow_loopback_peers: false,
            no_multicast_peers: false,
            rfc5766_channel_numbers: false,
            no_udp: false,
            no_tcp: false,
            relay_threads: 0,
            udp_recv_buffer: None,
            udp_send_buffer: None,
            no_batched_io: false,
            verbosity: Verbosity::Normal,
            log_file: LogTarget::Stderr,
            log_format: LogFormat::Text,
            static_auth_secret_files: Vec::new(),
            admin_token_file: None,
            admin_listen: Some(DEFAULT_ADMIN_LISTEN),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            usage_log: None,
            ready_min_free_ports: 0,
            xdp: tern_server::xdp::Mode::Off,
            xdp_interface: None,
            alternate_servers: Vec::new(),
            cert: None,
            pkey: None,
            pkey_pwd: false,
            tls_listening_port: 5349,
            no_tls: false,
            cipher_list: None,
            ec_curve_name: None,
            no_tlsv1_2: false,
            tls_sni_certs: Vec::new(),
            alt_listening_port: None,
            alt_tls_listening_port: None,
            tcp_proxy_port: None,
            proxy_protocol: false,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            max_connections: None,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            unauthorized_ratelimit: true,
            unauthorized_ratelimit_rps: DEFAULT_UNAUTHORIZED_RATELIMIT_RPS,
            auth_failure_limit: DEFAULT_AUTH_FAILURE_LIMIT,
            auth_failure_window: DEFAULT_AUTH_FAILURE_WINDOW,
            auth_lockout_duration: DEFAULT_AUTH_LOCKOUT_DURATION,
        }
    }
}

impl Settings {
    /// Whether any credential (shared secret or static user) is configured.
    pub fn has_credentials(&self) -> bool {
        !self.static_auth_secrets.is_empty() || !self.users.is_empty()
    }
}

/// Settings plus what the loader noticed on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The validated settings.
    pub settings: Settings,
    /// Warnings (ignored keys, repeats); already prefixed with their origin.
    pub warnings: Vec<String>,
    /// Whether any key beyond the logging ones was given (else the embedded default applies).
    pub configured: bool,
}

/// Builds settings from entries of all layers, in any order.
pub fn from_entries(entries: &[Entry]) -> anyhow::Result<Loaded> {
    let mut warnings = Vec::new();
    let mut top: HashMap<&str, u8> = HashMap::new();
    for e in entries {
        match keys::lookup(&e.key) {
            Known::Implemented(k) => {
                let layer = top.entry(k.name).or_insert(0);
                *layer = (*layer).max(e.origin.layer());
            }
            Known::Unimplemented(_) => warnings.push(format!(
                "{}: `{}` is not implemented by tern; ignored",
                e.origin, e.key
            )),
            Known::Unknown => warnings.push(format!(
                "{}: `{}` is not a coturn key tern knows; ignored",
                e.origin, e.key
            )),
        }
    }
    let configured = top.keys().any(|k| !keys::LOGGING_ONLY.contains(k));
    let mut b = Builder {
        s: Settings::default(),
        seen: HashMap::new(),
        warnings,
        admin_listen: None,
        prometheus: false,
        prometheus_port: None,
    };
    for e in entries {
        let Known::Implemented(k) = keys::lookup(&e.key) else {
            continue;
        };
        if top.get(k.name) != Some(&e.origin.layer()) {
            continue; // overridden by a higher layer
        }
        b.apply(k, e)
            .map_err(|msg| anyhow::anyhow!("{}: {}: {msg}", e.origin, k.name))?;
    }
    b.finish()?;
    Ok(Loaded {
        settings: b.s,
        warnings: b.warnings,
        configured,
    })
}

struct Builder {
    s: Settings,
    seen: HashMap<&'static str, Origin>,
    warnings: Vec<String>,
    /// `admin-listen` as given (`Some(None)`: `none`).
    admin_listen: Option<Option<SocketAddr>>,
    prometheus: bool,
    prometheus_port: Option<u16>,
}

impl Builder {
    fn apply(&mut self, k: &'static keys::Key, e: &Entry) -> Result<(), String> {
        if let Some(prev) = self.seen.insert(k.name, e.origin.clone()) {
            if !k.multi {
                self.warnings.push(format!(
                    "{}: `{}` is set again (also at {prev}); the last one wins",
                    e.origin, k.name
                ));
            }
        }
        let raw = e.value.as_deref().map(str::trim);
        let value = || match (k.arity, raw) {
            (Arity::Value, None) => Err("needs a value".to_string()),
            (_, v) => Ok(v.unwrap_or_default()),
        };
        let s = &mut self.s;
        match k.name {
            "listening-ip" => s.listening_ips.push(values::ip(value()?)?),
            "listening-port" => s.listening_port = values::port(value()?)?,
            "relay-ip" => s.relay_ips.push(values::ip(value()?)?),
            "external-ip" => s.external_ips.push(values::external_ip(value()?)?),
            "allocation-default-address-family" => {
                s.allocation_default_address_family = values::default_family(value()?)?
            }
            "keep-address-family" => {
                if values::flag(raw)? {
                    s.allocation_default_address_family = DefaultFamily::Keep;
                }
            }
            "min-port" => s.min_port = values::port(value()?)?,
            "max-port" => s.max_port = values::port(value()?)?,
            "realm" => s.realm = non_empty(value()?)?.to_owned(),
            "use-auth-secret" => s.use_auth_secret = values::flag(raw)?,
            "static-auth-secret" => {
                let secret = non_empty(value()?).map_err(|_| "is empty".to_string())?;
                s.static_auth_secrets.push(Secret(secret.to_owned()));
                s.use_auth_secret = true;
            }
            "lt-cred-mech" => s.lt_cred_mech = values::flag(raw)?,
            "user" => s.users.push(values::user(value()?)?),
            "fingerprint" => s.fingerprint = values::flag(raw)?,
            "stale-nonce" => s.stale_nonce = raw.map_or(Ok(600), values::seconds)?,
            "max-allocate-lifetime" => s.max_allocate_lifetime = values::seconds(value()?)?,
            "channel-lifetime" => s.channel_lifetime = values::seconds(value()?)?,
            "permission-lifetime" => s.permission_lifetime = values::seconds(value()?)?,
            "user-quota" => s.user_quota = values::count(value()?)?,
            "total-quota" => s.total_quota = values::count(value()?)?,
            "max-bps" => s.max_bps = values::bytes_per_second(value()?)?,
            "allowed-peer-ip" => s.allowed_peer_ips.push(values::ip_range(value()?)?),
            "denied-peer-ip" => s.denied_peer_ips.push(values::ip_range(value()?)?),
            "allow-loopback-peers" => s.allow_loopback_peers = values::flag(raw)?,
            "no-multicast-peers" => s.no_multicast_peers = values::flag(raw)?,
            "rfc5766-channel-numbers" => s.rfc5766_channel_numbers = values::flag(raw)?,
            "no-udp" => s.no_udp = values::flag(raw)?,
            "no-tcp" => s.no_tcp = values::flag(raw)?,
            "relay-threads" => s.relay_threads = values::count(value()?)?,
            "udp-recv-buffer" => s.udp_recv_buffer = Some(values::count(value()?)?),
            "udp-send-buffer" => s.udp_send_buffer = Some(values::count(value()?)?),
            "no-batched-io" => s.no_batched_io = values::flag(raw)?,
            "static-auth-secret-file" => {
                s.static_auth_secret_files.push(non_empty(value()?)?.into());
                s.use_auth_secret = true;
            }
            "admin-token-file" => s.admin_token_file = Some(non_empty(value()?)?.into()),
            "log-format" => {
                s.log_format = match value()? {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    other => return Err(format!("`{other}` is not a log format (text or json)")),
                }
            }
            "admin-listen" => {
                self.admin_listen = Some(match value()? {
                    "none" | "off" => None,
                    v => Some(values::socket_addr(v)?),
                })
            }
            "prometheus" => self.prometheus = values::flag(raw)?,
            "prometheus-port" => self.prometheus_port = Some(values::port(value()?)?),
            "drain-timeout" => s.drain_timeout = values::seconds(value()?)?,
            "usage-log" => s.usage_log = Some(non_empty(value()?)?.into()),
            "ready-min-free-ports" => s.ready_min_free_ports = values::count(value()?)?,
            "xdp" => {
                let v = value()?;
                s.xdp = tern_server::xdp::Mode::parse(v)
                    .ok_or_else(|| format!("`{v}` is not off, auto, native or generic"))?;
            }
            "xdp-interface" => s.xdp_interface = Some(non_empty(value()?)?.to_string()),
            "alternate-server" => s
                .alternate_servers
                .push(values::socket_addr_or_ip(value()?, DEFAULT_ALTERNATE_PORT)?),
            "no-cli" => {
                values::flag(raw)?; // tern has no telnet CLI; nothing to turn off
            }
            "cert" => s.cert = Some(non_empty(value()?)?.into()),
            "pkey" => s.pkey = Some(non_empty(value()?)?.into()),
            "pkey-pwd" => s.pkey_pwd = true,
            "tls-listening-port" => s.tls_listening_port = values::port(value()?)?,
            "no-tls" => s.no_tls = values::flag(raw)?,
            "cipher-list" => s.cipher_list = Some(value()?.to_owned()),
            "ec-curve-name" => s.ec_curve_name = Some(non_empty(value()?)?.to_owned()),
            "no-tlsv1_2" => s.no_tlsv1_2 = values::flag(raw)?,
            "no-tlsv1" | "no-tlsv1_1" => {
                values::flag(raw)?; // rustls has neither TLS 1.0 nor 1.1
            }
            "dh566" | "dh1066" | "dh-file" => {
                let warning = tern_server::tls::no_dhe_warning(k.name);
                self.warnings.push(format!("{}: {warning}", e.origin));
            }
            "tls-sni-cert" => s
                .tls_sni_certs
                .push(value()?.parse().map_err(|e| format!("{e}"))?),
            "alt-listening-port" => s.alt_listening_port = Some(values::port(value()?)?),
            "alt-tls-listening-port" => s.alt_tls_listening_port = Some(values::port(value()?)?),
            "tcp-proxy-port" => s.tcp_proxy_port = Some(values::port(value()?)?),
            "proxy-protocol" => s.proxy_protocol = values::flag(raw)?,
            "tls-handshake-timeout" => s.tls_handshake_timeout = values::seconds(value()?)?,
            "tcp-idle-timeout" => s.tcp_idle_timeout = values::seconds(value()?)?,
            "max-connections" => s.max_connections = Some(values::positive_count(value()?)?),
            "max-connections-per-ip" => s.max_connections_per_ip = values::count(value()?)?,
            "unauthorized-ratelimit" => s.unauthorized_ratelimit = values::flag(raw)?,
            "unauthorized-ratelimit-rps" => {
                s.unauthorized_ratelimit_rps = values::positive_count(value()?)?
            }
            "auth-failure-limit" => s.auth_failure_limit = values::count(value()?)?,
            "auth-failure-window" => s.auth_failure_window = values::seconds(value()?)?,
            "auth-lockout-duration" => s.auth_lockout_duration = values::seconds(value()?)?,
            "verbose" | "Verbose" => {
                let level = if k.name == "verbose" {
                    Verbosity::Verbose
                } else {
                    Verbosity::Extra
                };
                if values::flag(raw)? {
                    s.verbosity = s.verbosity.max(level);
                }
            }
            "log-file" => {
                s.log_file = match non_empty(value()?)? {
                    "stdout" | "-" => LogTarget::Stdout,
                    "stderr" => LogTarget::Stderr,
                    "syslog" => {
                        self.warnings.push(format!(
                            "{}: log-file=syslog is not implemented by tern; logging to stderr",
                            e.origin
                        ));
                        LogTarget::Stderr
                    }
                    path => LogTarget::File(path.into()),
                }
            }
            other => unreachable!("implemented key `{other}` has no handler"),
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.s.admin_listen = match (self.admin_listen, self.prometheus) {
            (Some(given), _) => given,
            // coturn's exporter listens on every address.
            (None, true) => Some(SocketAddr::new(
                Ipv4Addr::UNSPECIFIED.into(),
                self.prometheus_port.unwrap_or(DEFAULT_PROMETHEUS_PORT),
            )),
            (None, false) => Some(SocketAddr::new(
                Ipv4Addr::LOCALHOST.into(),
                self.prometheus_port.unwrap_or(DEFAULT_PROMETHEUS_PORT),
            )),
        };
        if self.s.alternate_servers.len() > 1 {
            self.warnings.push(
                "only the first alternate-server is used (in 300 Try Alternate while draining)"
                    .into(),
            );
        }
        let s = &self.s;
        if s.min_port > s.max_port {
            let at = |k| {
                self.seen
                    .get(k)
                    .map_or("default".to_string(), Origin::to_string)
            };
            anyhow::bail!(
                "max-port {} ({}) is below min-port {} ({})",
                s.max_port,
                at("max-port"),
                s.min_port,
                at("min-port")
            );
        }
        if let Some(conflict) = self.proxy_port_conflict() {
            anyhow::bail!("{conflict}");
        }
        if s.use_auth_secret
            && s.static_auth_secrets.is_empty()
            && s.static_auth_secret_files.is_empty()
        {
            let at = self
                .seen
                .get("use-auth-secret")
                .map_or(String::new(), |o| format!("{o}: "));
            anyhow::bail!(
                "{at}use-auth-secret needs at least one static-auth-secret or \
                 static-auth-secret-file (tern has no user database)"
            );
        }
        Ok(())
    }
}

impl Builder {
    /// The key whose port `tcp-proxy-port` repeats, unless `proxy-protocol` makes every port
    /// take the header anyway: one port cannot both require the header and go without.
    fn proxy_port_conflict(&self) -> Option<String> {
        let s = &self.s;
        let proxy = s.tcp_proxy_port.filter(|_| !s.proxy_protocol)?;
        let tls = s.cert.is_some() && s.pkey.is_some() && !s.no_tls;
        let plain = [
            ("listening-port", Some(s.listening_port), !s.no_tcp),
            ("alt-listening-port", s.alt_listening_port, !s.no_tcp),
            ("tls-listening-port", Some(s.tls_listening_port), tls),
            ("alt-tls-listening-port", s.alt_tls_listening_port, tls),
        ];
        let (key, _, _) = plain
            .into_iter()
            .find(|&(_, port, used)| used && port == Some(proxy))?;
        let at = |k| {
            self.seen
                .get(k)
                .map_or("default".to_string(), Origin::to_string)
        };
        Some(format!(
            "{}: tcp-proxy-port {proxy} is also {key} ({}), a port without the PROXY protocol; \
             pick another port, or set proxy-protocol to require the header on every port",
            at("tcp-proxy-port"),
            at(key)
        ))
    }
}

/// Reads every `static-auth-secret-file` and adds its secrets to `static_auth_secrets`.
/// A file holds one secret a line; blank lines and lines starting with `#` are skipped. A
/// file that cannot be read or holds no secret is an error naming the file (never its
/// content).
pub fn load_secret_files(s: &mut Settings) -> anyhow::Result<()> {
    for path in &s.static_auth_secret_files {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "static-auth-secret-file: cannot read {}: {e}",
                path.display()
            )
        })?;
        let before = s.static_auth_secrets.len();
        s.static_auth_secrets.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| Secret(l.to_owned())),
        );
        if s.static_auth_secrets.len() == before {
            anyhow::bail!(
                "static-auth-secret-file: {} holds no secret (one a line, `#` comments)",
                path.display()
            );
        }
    }
    Ok(())
}

/// The token in `admin-token-file`, if set: its first line that is neither blank nor a
/// `#` comment, trimmed. An unreadable file, or one without a token, is an error naming the
/// key and the file (never the content).
pub fn load_admin_token(s: &Settings) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(path) = &s.admin_token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("admin-token-file: cannot read {}: {e}", path.display()))?;
    let token = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "admin-token-file: {} holds no token (its first non-blank line)",
                path.display()
            )
        })?;
    Ok(Some(token.as_bytes().to_vec()))
}

fn non_empty(value: &str) -> Result<&str, String> {
    if value.is_empty() {
        Err("needs a non-empty value".into())
    } else {
        Ok(value)
    }
}
