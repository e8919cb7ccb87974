//! What `tern serve` runs with: file, environment and flags merged, or — when none of them
//! configures anything — the embedded default for local use (a generated shared secret).

use std::net::SocketAddr;

use crate::conf;
use crate::credentials::{self, rest_credential};
use crate::mapping::{Mapped, RelayedIpSource};
use crate::overrides::{self, ServeArgs};
use crate::settings::{self, Loaded, Secret};

/// The merged settings, and the generated secret when the embedded default applies.
#[derive(Debug)]
pub struct Plan {
    /// Settings and warnings.
    pub loaded: Loaded,
    /// `Some` for the embedded default: the generated `static-auth-secret`.
    pub generated_secret: Option<Secret>,
}

/// Merges the configuration file named in `args`, the environment `env` and the flags.
/// `random` supplies the embedded default's secret.
pub fn plan(
    args: &ServeArgs,
    env: impl IntoIterator<Item = (String, String)>,
    random: impl FnOnce() -> anyhow::Result<[u8; 32]>,
) -> anyhow::Result<Plan> {
    let mut entries = match &args.config {
        Some(path) => conf::read_file(path)?,
        None => Vec::new(),
    };
    entries.extend(overrides::env_entries(env));
    entries.extend(args.entries.iter().cloned());
    let mut loaded = settings::from_entries(&entries)?;
    settings::load_secret_files(&mut loaded.settings)?;
    let mut generated_secret = None;
    if args.config.is_none() && !loaded.configured {
        let secret = Secret(hex(&random()?));
        loaded.settings.static_auth_secrets = vec![secret.clone()];
        loaded.settings.use_auth_secret = true;
        generated_secret = Some(secret);
    } else if !loaded.settings.has_credentials() {
        anyhow::bail!(
            "no credentials configured: set static-auth-secret (TURN REST API) or lt-cred-mech \
             with user=name:password. tern does not run an open relay; a TURN server open to \
             everyone is not a safe default. (`tern serve` with no configuration at all starts \
             for local use with a generated secret.)"
        );
    }
    Ok(Plan {
        loaded,
        generated_secret,
    })
}

/// 32 random bytes from the operating system.
pub fn os_random() -> anyhow::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The embedded default's one-time banner: the secret and a ready-to-paste ICE server
/// entry valid for 24 hours from `now` (unix seconds).
pub fn banner(mapped: &Mapped, secret: &Secret, now: u64) -> String {
    let server = &mapped.server;
    let listen = server
        .listen
        .first()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 3478)));
    let host = if listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        listen.ip().to_string()
    };
    let mut uris = vec![format!("turn:{host}:{}?transport=udp", listen.port())];
    if !server.tcp_listen.is_empty() {
        uris.push(format!("turn:{host}:{}?transport=tcp", listen.port()));
    }
    let cred = rest_credential(secret.0.as_bytes(), now + 24 * 3600, Some("tern"));
    let range = &server.core.relay_port_range;
    let relayed = server
        .core
        .relayed_ips
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ");
    let relayed_note = match mapped.relayed_ip_source {
        RelayedIpSource::Loopback => {
            " (no better address known: only local clients can use it; set external-ip)"
        }
        RelayedIpSource::Detected => {
            " (this host's default-route address; set external-ip to change)"
        }
        RelayedIpSource::ExternalIp | RelayedIpSource::RelayIp | RelayedIpSource::ListeningIp => "",
    };
    let transports = if server.tcp_listen.is_empty() {
        "UDP; TLS off"
    } else {
        "UDP and TCP; TLS off"
    };
    format!(
        "tern: no configuration given; running for local use with a generated secret.\n\
         listening on {listen} ({transports}), relay ports {}-{}, relayed address {relayed}{relayed_note}\n\
         TLS (turns:) needs a certificate: set cert= and pkey= (PEM files) to serve it on tls-listening-port (5349).\n\
         static-auth-secret: {}\n\
         ICE server (credentials valid for 24 h):\n{}\n\
         Keep the secret across restarts with TERN_STATIC_AUTH_SECRET=… or --static-auth-secret …;\n\
         make more credentials with `tern credentials --secret …`.\n",
        range.start(),
        range.end(),
        secret.0,
        credentials::ice_server_json(&uris, &cred),
    )
}
