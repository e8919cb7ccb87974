//! From [`Settings`] to the server's and the core's configuration, one address family at a
//! time (IPv4, then IPv6):
//!
//! - relayed IP of a family (advertised in XOR-RELAYED-ADDRESS): the public part of the
//!   first `external-ip` of that family, else its first `relay-ip`, else its first specific
//!   `listening-ip`, else — when tern listens on the family's unspecified address — the
//!   machine's own address of that family toward the internet (found without sending a
//!   packet), else for IPv4 and only for the embedded default 127.0.0.1. A family with
//!   none is not relayed in. As in coturn, once `relay-ip` or `external-ip` is set, only
//!   the families they name are relayed in.
//! - relay bind IP of a family: its first `relay-ip`, else the private part of its
//!   `external-ip`, else its specific `listening-ip`, else the family's unspecified address.
//! - own IPs: every address above.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::bail;
use tern_proto::peer_filter::{not_publicly_routable, PeerFilterConfig};
use tern_proto::{Config, DefaultFamily, Family, GuardConfig, PerFamily};
use tern_server::tls::{CertStore, TlsSettings};
use tern_server::{ServerConfig, SocketBuffers};

use crate::settings::Settings;
use crate::values::ExternalIp;

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
    /// How the relayed IP of the first family relayed in (IPv4 when there is one) was
    /// chosen.
    pub relayed_ip_source: RelayedIpSource,
    /// How each family's relayed IP was chosen, by [`Family::index`]; `None` for a family
    /// tern does not relay in.
    pub relayed_ip_sources: PerFamily<Option<RelayedIpSource>>,
    /// Things worth a warning.
    pub warnings: Vec<String>,
}

/// "IPv4" or "IPv6", for messages.
fn family_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

/// One family's addresses, chosen from the settings as the module docs say.
struct FamilyAddresses {
    relayed: Option<(IpAddr, RelayedIpSource)>,
    bind: Option<IpAddr>,
}

fn family_addresses(
    s: &Settings,
    family: Family,
    listening: &[IpAddr],
    detect: &mut impl FnMut(IpAddr) -> Option<IpAddr>,
    allow_loopback: bool,
    warnings: &mut Vec<String>,
) -> anyhow::Result<FamilyAddresses> {
    let of = |ip: &IpAddr| Family::of(*ip) == family;
    let name = family_name(family);
    let externals: Vec<&ExternalIp> = s.external_ips.iter().filter(|e| of(&e.public)).collect();
    let relay_ips: Vec<IpAddr> = s.relay_ips.iter().copied().filter(of).collect();
    let listen: Vec<IpAddr> = listening.iter().copied().filter(of).collect();
    let specific_listen = listen.iter().copied().find(|ip| !ip.is_unspecified());
    if externals.len() > 1 {
        warnings.push(format!(
            "only the first {name} external-ip is advertised; the others count as own addresses"
        ));
    }
    if relay_ips.len() > 1 {
        warnings.push(format!(
            "{name} relay sockets bind to the first {name} relay-ip only; the others count as own addresses"
        ));
    }
    let external = externals.first();
    let configured = external
        .map(|e| (e.public, RelayedIpSource::ExternalIp))
        .or_else(|| relay_ips.first().map(|&ip| (ip, RelayedIpSource::RelayIp)));
    let unspecified = match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    // As in coturn: once relay-ip or external-ip names any address, tern relays in exactly
    // the families they name, and a listening-ip of another family adds none.
    let named_elsewhere = !s.relay_ips.is_empty() || !s.external_ips.is_empty();
    let relayed = match configured {
        Some(chosen) => Some(chosen),
        None if named_elsewhere => {
            if let Some(listen) = listen.first() {
                warnings.push(format!(
                    "tern listens on {listen}, but relay-ip and external-ip name no {name} \
                     address, so it does not relay in {name} (an Allocate asking for it gets \
                     440); add relay-ip or external-ip of {name} to relay in it"
                ));
            }
            None
        }
        None => match specific_listen {
            Some(ip) => Some((ip, RelayedIpSource::ListeningIp)),
            // Listening on the family's unspecified address: this host's address toward the
            // internet in that family.
            None if !listen.is_empty() => match (detect(unspecified), family) {
                (Some(ip), _) => Some((ip, RelayedIpSource::Detected)),
                (None, Family::V4) if allow_loopback => {
                    Some((Ipv4Addr::LOCALHOST.into(), RelayedIpSource::Loopback))
                }
                (None, _) => {
                    let (any, other) = match family {
                        Family::V4 => ("0.0.0.0", "IPv6"),
                        Family::V6 => ("::", "IPv4"),
                    };
                    warnings.push(format!(
                        "tern listens on {any} but found no {name} address of this host to \
                         advertise, so it does not relay in {name} (an Allocate asking for it \
                         gets 440); set external-ip or relay-ip to an {name} address to relay \
                         in it, or it relays in {other} only"
                    ));
                    None
                }
            },
            None => None,
        },
    };
    let bind = relay_ips
        .first()
        .copied()
        .or_else(|| external.and_then(|e| e.private))
        .or(specific_listen);
    Ok(FamilyAddresses { relayed, bind })
}

/// Maps settings. `detect` returns this host's address toward the internet for the given
/// family (see [`detect_local_ip`]); `allow_loopback` permits the last-resort 127.0.0.1.
///
/// Each family (IPv4, IPv6) is relayed in when something names an address of it:
/// `external-ip`, `relay-ip` or `listening-ip` (`::` counts: the relayed IPv6 address is
/// then detected). Without any `listening-ip` tern listens on `0.0.0.0` and relays in IPv4.
pub fn map(
    s: &Settings,
    mut detect: impl FnMut(IpAddr) -> Option<IpAddr>,
    allow_loopback: bool,
) -> anyhow::Result<Mapped> {
    let mut warnings = Vec::new();
    let listening: Vec<IpAddr> = if s.listening_ips.is_empty() {
        vec![Ipv4Addr::UNSPECIFIED.into()]
    } else {
        s.listening_ips.clone()
    };
    let mut addresses = Vec::new();
    for family in Family::ALL {
        let a = family_addresses(
            s,
            family,
            &listening,
            &mut detect,
            allow_loopback,
            &mut warnings,
        )?;
        addresses.push(a);
    }
    let relayed_ip_sources: PerFamily<Option<RelayedIpSource>> =
        Family::ALL.map(|f| addresses[f.index()].relayed.map(|r| r.1));
    let Some((first_ip, relayed_ip_source)) = addresses.iter().find_map(|a| a.relayed) else {
        bail!(
            "cannot tell which address to advertise for relayed transport addresses: set \
             external-ip or relay-ip"
        );
    };
    for (family, a) in Family::ALL.into_iter().zip(&addresses) {
        // The embedded default (`allow_loopback`) says this in its banner instead.
        if let (Some((ip, source)), false) = (a.relayed, allow_loopback) {
            warnings.extend(unreachable_relayed_ip_warning(ip, source));
        }
        let default = s.allocation_default_address_family;
        let by_default = match default {
            DefaultFamily::Ipv4 => Family::V4,
            DefaultFamily::Ipv6 => Family::V6,
            DefaultFamily::Keep => continue,
        };
        if by_default == family && a.relayed.is_none() {
            let other = Family::ALL[1 - family.index()].label();
            let name = family_name(family);
            warnings.push(format!(
                "allocation-default-address-family is {} but tern has no {name} relayed \
                 address: an Allocate without REQUESTED-ADDRESS-FAMILY (every browser's) gets \
                 440; relay in {name} too, or set allocation-default-address-family={other} \
                 or keep",
                family.label(),
            ));
        }
    }
    let relay_bind_ips: PerFamily<Option<IpAddr>> = Family::ALL.map(|f| addresses[f.index()].bind);

    let mut own_ips = Vec::new();
    let candidates = s
        .external_ips
        .iter()
        .flat_map(|e| [Some(e.public), e.private])
        .flatten();
    let candidates = candidates
        .chain(s.relay_ips.iter().copied())
        .chain(listening.iter().copied())
        .chain(relay_bind_ips.iter().flatten().copied())
        .chain(addresses.iter().filter_map(|a| a.relayed.map(|r| r.0)));
    for ip in candidates {
        if !ip.is_unspecified() && !own_ips.contains(&ip) {
            own_ips.push(ip);
        }
    }

    let mut core = Config::new(s.realm.clone(), first_ip, s.min_port..=s.max_port);
    for a in &addresses {
        if let Some((ip, _)) = a.relayed {
            core.relay_in(ip);
        }
    }
    core.default_family = s.allocation_default_address_family;
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
    let mut server = ServerConfig::new(on_every_ip(udp), first_ip, core);
    server.relay_bind_ips = relay_bind_ips;
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
    server.usage_log = s.usage_log.clone();
    server.ready_min_free_ports = s.ready_min_free_ports as usize;
    server.xdp = tern_server::xdp::XdpConfig {
        mode: s.xdp,
        interface: s.xdp_interface.clone(),
    };
    server.workers = s.relay_threads as usize;
    server.batched_io = !s.no_batched_io;
    server.buffers = SocketBuffers {
        recv: s.udp_recv_buffer.map(|b| b as usize),
        send: s.udp_send_buffer.map(|b| b as usize),
    };
    Ok(Mapped {
        server,
        relayed_ip_source,
        relayed_ip_sources,
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
