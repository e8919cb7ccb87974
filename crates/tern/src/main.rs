//! `tern`: a TURN/STUN relay server for WebRTC that reads coturn's turnserver.conf.

mod probe;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tern::credentials::{
    ice_urls, render, rest_credential, turns_ip_literal_note, turns_ip_literals, Transport,
};
use tern::reload::Reloader;
use tern::sessions_cli::{self, render_table, AdminClient};
use tern::{lifecycle, logging, mapping, overrides, startup};

#[derive(Parser)]
#[command(name = "tern", version, about = "A TURN/STUN relay server for WebRTC")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (`tern serve --help` lists every key; `-c FILE` reads a turnserver.conf).
    #[command(disable_help_flag = true)]
    Serve {
        /// `-c FILE`, `--<key>[=value]` flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Print TURN REST API credentials (coturn's use-auth-secret) for a shared secret.
    #[command(after_help = CREDENTIALS_EXAMPLES)]
    Credentials(CredentialsArgs),
    /// Check a STUN/TURN server from the outside: Binding, and with credentials, relaying.
    Probe(probe::ProbeArgs),
    /// List the live allocations (the admin port's GET /allocations).
    Sessions(SessionsArgs),
    /// End allocations at once, optionally refusing the user for a while
    /// (POST /allocations/revoke; needs admin-token-file on the server).
    Revoke(RevokeArgs),
}

#[derive(Args)]
struct AdminArgs {
    /// The admin port (admin-listen).
    #[arg(long, value_name = "HOST:PORT", default_value_t = tern::settings::DEFAULT_ADMIN_LISTEN.to_string())]
    admin: String,
    /// A file holding the bearer token (the server's admin-token-file).
    #[arg(long, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct SessionsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Only this user (full username, or the REST `<name>`).
    #[arg(long)]
    user: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("selector").required(true).args(["user", "id", "client_ip"])))]
struct RevokeArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Every allocation of this user (full username, or the REST `<name>`).
    #[arg(long)]
    user: Option<String>,
    /// One allocation, by the id `tern sessions` shows.
    #[arg(long)]
    id: Option<String>,
    /// Every allocation of this client IP.
    #[arg(long)]
    client_ip: Option<String>,
    /// Also refuse the user's new allocations (403) this long: 90s, 10m, 1h, 2d.
    #[arg(long = "for", value_name = "DURATION")]
    refuse_for: Option<String>,
}

#[derive(Args)]
struct CredentialsArgs {
    /// The shared secret (static-auth-secret). Default: the first of TERN_STATIC_AUTH_SECRET.
    #[arg(long)]
    secret: Option<String>,
    /// Validity in seconds.
    #[arg(long, default_value_t = 86400)]
    ttl: u64,
    /// Name appended to the username (`<expiry>:<name>`).
    #[arg(long)]
    name: Option<String>,
    /// A TURN or STUN URI for the JSON line's `urls` (repeatable). A `turn:HOST[:PORT]` URI
    /// without a query is listed once per --transports entry; a URI with a query, `turns:`,
    /// `stun:` and `stuns:` URIs are listed as given.
    #[arg(long, value_name = "URI", default_value = "turn:127.0.0.1:3478")]
    uri: Vec<String>,
    /// Transports to list each `turn:HOST[:PORT]` URI for, comma-separated: udp
    /// (`?transport=udp`), tcp (`?transport=tcp`), tls (`turns:HOST:TLS_PORT?transport=tcp`).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "udp"
    )]
    transports: Vec<Transport>,
    /// The port of the `turns:` URIs that --transports tls lists (the server's
    /// tls-listening-port).
    #[arg(long, value_name = "PORT", default_value_t = 5349)]
    tls_port: u16,
    /// The current time as unix seconds (default: the clock).
    #[arg(long)]
    now: Option<u64>,
}

const CREDENTIALS_EXAMPLES: &str = "\
Examples:
  tern credentials --secret S --uri turn:turn.example.org:3478 --transports udp,tcp,tls --tls-port 443
      urls: turn:turn.example.org:3478?transport=udp, turn:turn.example.org:3478?transport=tcp,
            turns:turn.example.org:443?transport=tcp
  tern credentials --secret S --uri turn:turn.example.org --uri turns:turn.example.org:443?transport=tcp
      urls: turn:turn.example.org?transport=udp, turns:turn.example.org:443?transport=tcp";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { args } => serve(args),
        Command::Credentials(args) => credentials(&args),
        Command::Probe(args) => probe::run(&args),
        Command::Sessions(args) => sessions(&args),
        Command::Revoke(args) => revoke(&args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("tern: {e:#}");
        ExitCode::FAILURE
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn credentials(args: &CredentialsArgs) -> anyhow::Result<ExitCode> {
    let secret = match &args.secret {
        Some(s) => s.clone(),
        None => std::env::var("TERN_STATIC_AUTH_SECRET")
            .ok()
            .and_then(|v| {
                v.split(',')
                    .map(str::trim)
                    .find(|s| !s.is_empty())
                    .map(String::from)
            })
            .context("give --secret or set TERN_STATIC_AUTH_SECRET")?,
    };
    anyhow::ensure!(!secret.is_empty(), "--secret is empty");
    let expiry = args.now.unwrap_or_else(unix_now).saturating_add(args.ttl);
    let cred = rest_credential(secret.as_bytes(), expiry, args.name.as_deref());
    let urls = ice_urls(&args.uri, &args.transports, args.tls_port)?;
    print!("{}", render(&cred, &urls));
    for url in turns_ip_literals(&urls) {
        eprintln!("{}", turns_ip_literal_note(url));
    }
    Ok(ExitCode::SUCCESS)
}

fn sessions(args: &SessionsArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(&args.admin.admin, args.admin.token_file.as_deref())?;
    let list = client.sessions(args.user.as_deref())?;
    if args.json {
        let json = serde_json::json!({ "allocations": list, "next_cursor": null });
        println!("{json}");
    } else {
        print!("{}", render_table(&list, sessions_cli::unix_now()));
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(args: &RevokeArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(&args.admin.admin, args.admin.token_file.as_deref())?;
    let selector = match (&args.user, &args.id, &args.client_ip) {
        (Some(u), _, _) => ("user", u.as_str()),
        (_, Some(i), _) => ("id", i.as_str()),
        (_, _, Some(ip)) => ("client_ip", ip.as_str()),
        _ => anyhow::bail!("give --user, --id or --client-ip"),
    };
    let answer = client.revoke(selector, args.refuse_for.as_deref())?;
    let ids: Vec<&str> = answer["revoked"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    println!(
        "revoked {} allocation(s){}",
        ids.len(),
        if ids.is_empty() { "" } else { ":" }
    );
    for id in &ids {
        println!("  {id}");
    }
    if let Some(until) = answer["refused_until"].as_i64() {
        let left = until - sessions_cli::unix_now();
        println!(
            "new allocations by the revoked user(s) are refused (403) until {until} (unix; {left}s from now)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let args = overrides::parse_serve_args(args)?;
    if args.help {
        print!("{}", overrides::serve_help());
        return Ok(ExitCode::SUCCESS);
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let plan = startup::plan(&args, env.clone(), startup::os_random)?;
    let settings = &plan.loaded.settings;
    logging::init(settings.verbosity, &settings.log_file, settings.log_format)?;
    for warning in &plan.loaded.warnings {
        tracing::warn!("{warning}");
    }
    let embedded = plan.generated_secret.is_some();
    let mapped = mapping::map(settings, mapping::detect_local_ip, embedded)?;
    for warning in &mapped.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(secret) = &plan.generated_secret {
        // The only place a secret is ever printed: the embedded default's own, on stdout.
        let mut out = std::io::stdout().lock();
        out.write_all(startup::banner(&mapped, secret, unix_now()).as_bytes())?;
        out.flush()?;
    }
    let server = mapped.server;
    // Secrets live in `server.core`; log only what is safe.
    tracing::info!(
        listen = ?server.listen,
        tcp_listen = ?server.tcp_listen,
        proxy_listen = ?server.proxy_listen,
        proxy_protocol = server.proxy_protocol,
        relayed_ips = ?server.core.relayed_ips.iter().flatten().collect::<Vec<_>>(),
        relay_bind_ips = ?server
            .core
            .relay_families()
            .map(|f| server.relay_bind_ip(f))
            .collect::<Vec<_>>(),
        default_family = ?server.core.default_family,
        relay_ports = ?server.core.relay_port_range,
        realm = %server.core.realm,
        secrets = server.core.auth_secrets.len(),
        users = server.core.users.len(),
        admin = %settings
            .admin_listen
            .map_or_else(|| "off".to_owned(), |a| a.to_string()),
        drain_timeout_s = settings.drain_timeout,
        allocator = tern::memory::ALLOCATOR_NAME,
        "tern {} starting",
        env!("CARGO_PKG_VERSION"),
    );
    let reloader = Reloader::new(args, env, settings, &server, embedded);
    // Workers are threads of their own; the runtime only serves the admin port and signals.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let admin_token = tern::settings::load_admin_token(settings)?;
    runtime.block_on(lifecycle::run(
        server,
        settings.admin_listen,
        admin_token,
        reloader,
    ))?;
    tracing::info!("tern stopped");
    Ok(ExitCode::SUCCESS)
}
