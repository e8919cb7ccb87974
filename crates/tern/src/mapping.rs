//! From [`Settings`] to the server's and the core's configuration.
//!
//! - relayed IP (advertised in XOR-RELAYED-ADDRESS): the public part of the first
//!   `external-ip`, else the first `relay-ip`, else the first specific `listening-ip`, else
//!   the machine's own address toward the internet (found without sending a packet), else —
//!   only for the embedded default — 127.0.0.1.
//! - relay bind IP: the first `relay-ip`, else the private part of `external-ip`, else a
//!   specific `listening-ip`, else the unspecified address.
//! - own IPs: every address above.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::bail;
use tern_proto::peer_filter::{not_publicly_routable, PeerFilterConfig};
use tern_proto::{Config, GuardConfig};
use tern_server::tls::{CertStore, TlsSettings};
use tern_server::{ServerConfig, SocketBuffers};

use crate::settings::Settings;

/// How the relayed IP was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayedIpSource {
    /// The public part of `external-ip`.
    ExternalIp,
    /// `relay-ip`, with no `external-ip`.
    RelayIp,
    /// A specific `listening-ip`, with neither `external-ip` nor `relay-ip`.
    ListeningIp,
    /// The local address of the default route.
    Detected,
    /// Nothing better known: loopback (embedded default only).
    Loopback,
}

impl RelayedIpSource {
    /// Where the address came from, for a person reading the log.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ExternalIp => "the external-ip key",
            Self::RelayIp => "the relay-ip key (no external-ip is set)",
            Self::ListeningIp => "the listening-ip key (neither external-ip nor relay-ip is set)",
            Self::Detected => {
                "this host's address on its default route, found because no external-ip, \
                 relay-ip or specific listening-ip is set (in a container: the container's \
                 bridge address)"
            }
            Self::Loopback => "the embedded default's last resort",
        }
    }
}

/// The start-up warning for a relayed address that clients outside this network cannot
/// reach: `None` when `external-ip` set it (the operator said so) or when it is publicly
/// routable.
pub fn unreachable_relayed_ip_warning(ip: IpAddr, source: RelayedIpSource) -> Option<String> {
    if source == RelayedIpSource::ExternalIp {
        return None;
    }
    let kind = not_publicly_routable(ip)?;
    Some(format!(
        "the relayed address tern will advertise, {ip}, is not publicly routable ({kind}); \
         it comes from {}. Clients outside this network will get a relay candidate they \
         cannot reach. Fix: set external-ip=PUBLIC[/PRIVATE] to the address clients reach \
         this server on (TERN_EXTERNAL_IP=PUBLIC in a container, --external-ip PUBLIC)",
        source.describe()
    ))
}

/// The mapped configuration and remarks for the log.
#[derive(Debug)]
pub struct Mapped {
    /// What `tern_server::run` takes.
    pub server: ServerConfig,
    /// How `server.core.relayed_ip` was chosen.
    pub relayed_ip_source: RelayedIpSource,
    /// Things worth a warning.
    pub warnings: Vec<String>,
}

/// Maps settings. `detect` returns this host's address toward the internet for the given
/// family (see [`detect_local_ip`]); `allow_loopback` permits the last-resort 127.0.0.1.
pub fn map(
    s: &Settings,
    detect: impl FnOnce(IpAddr) -> Option<IpAddr>,
    allow_loopback: bool,
) -> anyhow::Result<Mapped> {
    let mut warnings = Vec::new();
    let listening: Vec<IpAddr> = if s.listening_ips.is_empty() {
        vec![Ipv4Addr::UNSPECIFIED.into()]
    } else {
        s.listening_ips.clone()
    };
    let specific_listen = listening.iter().copied().find(|ip| !ip.is_unspecified());
    if s.external_ips.len() > 1 {
        warnings.push(
            "only the first external-ip is advertised; the others count as own addresses".into(),
        );
    }
    if s.relay_ips.len() > 1 {
        warnings.push(
            "relay sockets bind to the first relay-ip only; the others count as own addresses"
                .into(),
        );
    }
    let external = s.external_ips.first();
    let configured = external
        .map(|e| (e.public, RelayedIpSource::ExternalIp))
        .or_else(|| {
            s.relay_ips
                .first()
                .map(|&ip| (ip, RelayedIpSource::RelayIp))
        })
        .or(specific_listen.map(|ip| (ip, RelayedIpSource::ListeningIp)));
    let (relayed_ip, relayed_ip_source) = match configured {
        Some(chosen) => chosen,
        None => match detect(listening[0]) {
            Some(ip) => (ip, RelayedIpSource::Detected),
            None if allow_loopback => (Ipv4Addr::LOCALHOST.into(), RelayedIpSource::Loopback),
            None => bail!(
                "cannot tell which address to advertise for relayed transport addresses: \
                 set external-ip or relay-ip"
            ),
        },
    };
    // The embedded default (`allow_loopback`) says this in its banner instead.
    if !allow_loopback {
        warnings.extend(unreachable_relayed_ip_warning(
            relayed_ip,
            relayed_ip_source,
        ));
    }
    let unspecified = match relayed_ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let relay_bind_ip = s
        .relay_ips
        .first()
        .copied()
        .or_else(|| external.and_then(|e| e.private))
        .or(specific_listen)
        .unwrap_or(unspecified);

    let mut own_ips = Vec::new();
    let candidates = s
        .external_ips
        .iter()
        .flat_map(|e| [Some(e.public), e.private])
        .flatten();
    let candidates = candidates
        .chain(s.relay_ips.iter().copied())
        .chain(listening.iter().copied())
        .chain([relay_bind_ip, relayed_ip]);
    for ip in candidates {
        if !ip.is_unspecified() && !own_ips.contains(&ip) {
            own_ips.push(ip);
        }
    }

    let mut core = Config::new(s.realm.clone(), relayed_ip, s.min_port..=s.max_port);
    if s.use_auth_secret {
        core.auth_secrets = s
            .static_auth_secrets
            .iter()
            .map(|k| k.0.as_bytes().to_vec())
            .collect();
    }
    core.users = s.users.clone();
    core.max_lifetime = Duration::from_secs(s.max_allocate_lifetime);
    core.default_lifetime = core.default_lifetime.min(core.max_lifetime);
    core.permission_lifetime = Duration::from_secs(s.permission_lifetime);
    core.channel_lifetime = Duration::from_secs(s.channel_lifetime);
    core.nonce_lifetime = Duration::from_secs(s.stale_nonce);
    core.own_ips = own_ips;
    core.peer_filter = PeerFilterConfig {
        allow_loopback: s.allow_loopback_peers,
        no_multicast: s.no_multicast_peers,
        allowed: s.allowed_peer_ips.clone(),
        denied: s.denied_peer_ips.clone(),
    };
    core.user_quota = s.user_quota;
    core.total_quota = s.total_quota;
    core.max_bps = s.max_bps;
    core.guard = GuardConfig {
        unauthorized_per_second: if s.unauthorized_ratelimit {
            s.unauthorized_ratelimit_rps
        } else {
            0
        },
        auth_failures: s.auth_failure_limit,
        auth_failure_window: Duration::from_secs(s.auth_failure_window),
        lockout: Duration::from_secs(s.auth_lockout_duration),
    };
    core.always_fingerprint = s.fingerprint;
    core.rfc5766_channels = s.rfc5766_channel_numbers;
    core.software = None;

    let tls = tls_store(s)?;
    if let Some(store) = &tls {
        warnings.extend(store.current().warnings().iter().cloned());
    }
    if s.no_udp && s.no_tcp && tls.is_none() && s.tcp_proxy_port.is_none() {
        anyhow::bail!(
            "no-udp and no-tcp together leave no listener (and TLS is off: it needs cert and \
             pkey); drop one of them"
        );
    }
    let on_every_ip = |ports: &[Option<u16>]| -> Vec<SocketAddr> {
        let mut addrs = Vec::new();
        for port in ports.iter().flatten() {
            for ip in &listening {
                let addr = SocketAddr::new(*ip, *port);
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
        }
        addrs
    };
    let plain_ports = [Some(s.listening_port), s.alt_listening_port];
    let udp = if s.no_udp { &[][..] } else { &plain_ports[..] };
    let mut server = ServerConfig::new(on_every_ip(udp), relay_bind_ip, core);
    let mut tcp_ports = if s.no_tcp {
        Vec::new()
    } else {
        plain_ports.to_vec()
    };
    if tls.is_some() {
        // Every TCP port tells TLS from plain TURN by the first byte; the TLS ports are more.
        tcp_ports.extend([Some(s.tls_listening_port), s.alt_tls_listening_port]);
    } else if let Some(port) = s.alt_tls_listening_port {
        warnings.push(format!(
            "alt-tls-listening-port {port} is not listened on: TLS is off (it needs cert and pkey)"
        ));
    }
    server.tcp_listen = on_every_ip(&tcp_ports);
    server.proxy_listen = on_every_ip(&[s.tcp_proxy_port]);
    // With proxy-protocol every port requires the header: one listener per address is enough.
    server
        .proxy_listen
        .retain(|a| !server.tcp_listen.contains(a));
    server.proxy_protocol = s.proxy_protocol;
    server.handshake_timeout = Duration::from_secs(s.tls_handshake_timeout);
    server.tcp_idle_timeout = Duration::from_secs(s.tcp_idle_timeout);
    server.max_connections = s.max_connections.map(|n| n as usize);
    server.max_connections_per_ip = s.max_connections_per_ip;
    server.tls = tls;
    server.workers = s.relay_threads as usize;
    server.batched_io = !s.no_batched_io;
    server.buffers = SocketBuffers {
        recv: s.udp_recv_buffer.map(|b| b as usize),
        send: s.udp_send_buffer.map(|b| b as usize),
    };
    Ok(Mapped {
        server,
        relayed_ip_source,
        warnings,
    })
}

/// This host's address toward the internet for `family`'s address family, learnt by
/// "connecting" a UDP socket to a documentation address: connect only picks a route and
/// sends nothing. Loopback and unspecified results count as unknown.
pub fn detect_local_ip(family: IpAddr) -> Option<IpAddr> {
    let (bind, target): (SocketAddr, SocketAddr) = match family {
        IpAddr::V4(_) => (
            (Ipv4Addr::UNSPECIFIED, 0).into(),
            (Ipv4Addr::new(192, 0, 2, 1), 9).into(),
        ),
        IpAddr::V6(_) => {
            let doc = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
            ((Ipv6Addr::UNSPECIFIED, 0).into(), (doc, 9).into())
        }
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The certificates when TLS is on (`cert` and `pkey` both set, no `no-tls`); an error names
/// the key and the file.
fn tls_store(s: &Settings) -> anyhow::Result<Option<std::sync::Arc<CertStore>>> {
    let (Some(cert), Some(key)) = (&s.cert, &s.pkey) else {
        return Ok(None);
    };
    if s.no_tls {
        return Ok(None);
    }
    let mut settings = TlsSettings::new(cert, key);
    settings.sni = s.tls_sni_certs.clone();
    settings.cipher_list = s.cipher_list.clone().filter(|c| !c.trim().is_empty());
    settings.tls13_only = s.no_tlsv1_2;
    settings.ec_curve_name = s.ec_curve_name.clone();
    settings.pkey_pwd = s.pkey_pwd;
    let store = CertStore::load(settings).map_err(|e| {
        let key = match e.path() {
            Some(p) if p == cert.as_path() => "cert",
            Some(p) if p == key.as_path() => "pkey",
            Some(_) => "tls-sni-cert",
            None => "cipher-list/ec-curve-name/no-tlsv1_2",
        };
        anyhow::anyhow!("{key}: {e}")
    })?;
    Ok(Some(std::sync::Arc::new(store)))
}
