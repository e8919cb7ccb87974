//! The running server's life: the admin port, signals, graceful drain and live reload.
//!
//! | signal | effect |
//! |---|---|
//! | SIGTERM, SIGUSR1 | graceful drain: new allocations get 508 (or 300 Try Alternate with `alternate-server`), existing ones keep relaying, `/readyz` fails; exit when the last allocation ends or after `drain-timeout` |
//! | second SIGTERM, SIGINT | stop at once (allocations end, ports are released) |
//! | SIGHUP, SIGUSR2 | live reload, certificates included (also when a watched file changes); the `usage-log` file is reopened |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tern_server::admin::{self, AdminState};
use tern_server::{Command, ServerConfig};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{interval, Instant, MissedTickBehavior};
use tracing::{error, info, warn};

use crate::reload::{DrainSettings, Reloader, WATCH_EVERY};

/// How often a drain looks at the number of allocations left.
const DRAIN_CHECK: Duration = Duration::from_millis(100);

/// Binds the admin port, starts the workers, and runs until a signal says to stop (and a
/// drain, if one began, is over). Allocations end and ports are released before it returns.
pub async fn run(
    config: ServerConfig,
    admin_listen: Option<SocketAddr>,
    admin_token: Option<Vec<u8>>,
    mut reloader: Reloader,
) -> anyhow::Result<()> {
    let admin_listener = admin_listen.map(admin::bind).transpose()?;
    let min_free_ports = config.ready_min_free_ports;
    let server = tern_server::start(config)?;
    let state =
        Arc::new(AdminState::new(server.workers().clone()).with_min_free_ports(min_free_ports));
    if admin_token.is_some() {
        info!("admin-token-file set: the sessions API needs its bearer token; revocation is on");
    }
    state.set_admin_token(admin_token);
    if let Some(listener) = admin_listener {
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = admin::serve(listener, state).await {
                error!(error = %e, "the admin port stopped");
            }
        });
    }
    if let Some(generation) = reloader.tls() {
        crate::reload::log_expiry(&generation);
        state.set_tls_certificate_expiry(generation.earliest_expiry());
    }
    for path in reloader.watched() {
        info!(file = %path.display(), "watching for changes (live reload)");
    }
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    // coturn re-reads its certificates on SIGUSR2; here it is a whole reload, as SIGHUP.
    let mut usr2 = signal(SignalKind::user_defined2()).context("SIGUSR2 handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut watch = interval(WATCH_EVERY);
    watch.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut check = interval(DRAIN_CHECK);
    let mut trim = interval(crate::memory::TRIM_EVERY);
    trim.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut deadline: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = term.recv() => {
                if deadline.is_some() {
                    info!("second SIGTERM received; stopping now");
                    break;
                }
                deadline = Some(begin_drain("SIGTERM", &state, reloader.drain()));
            }
            _ = usr1.recv() => {
                if deadline.is_some() {
                    info!("SIGUSR1 received; already draining");
                } else {
                    deadline = Some(begin_drain("SIGUSR1", &state, reloader.drain()));
                }
            }
            _ = int.recv() => {
                info!("SIGINT received; stopping now");
                break;
            }
            _ = hup.recv() => {
                server.reopen_usage_log();
                reload(&mut reloader, &state, "SIGHUP");
            }
            _ = usr2.recv() => {
                server.reopen_usage_log();
                reload(&mut reloader, &state, "SIGUSR2");
            }
            _ = watch.tick() => {
                if reloader.files_changed() {
                    reload(&mut reloader, &state, "file change");
                }
            }
            _ = trim.tick() => crate::memory::trim(),
            _ = check.tick(), if deadline.is_some() => {
                let left = state.workers().allocations();
                if left == 0 {
                    info!("drain complete: no allocation left; stopping");
                    break;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    warn!(allocations = left, "drain-timeout reached; ending the remaining allocations");
                    break;
                }
            }
        }
    }
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .context("stopping the workers")?;
    Ok(())
}

/// Refuses new allocations from now on; returns when the drain gives up waiting.
fn begin_drain(signal: &str, state: &AdminState, drain: DrainSettings) -> Instant {
    state.set_draining();
    state.workers().send(Command::Drain(drain.alternate));
    info!(
        signal,
        allocations = state.workers().allocations(),
        drain_timeout_s = drain.timeout.as_secs(),
        alternate = ?drain.alternate,
        "draining: new allocations are refused, existing ones keep relaying, /readyz fails; \
         a second SIGTERM stops at once"
    );
    Instant::now() + drain.timeout
}

/// Re-reads the configuration and hands the workers the new credentials and peer filter;
/// on error keeps the old ones and says why.
fn reload(reloader: &mut Reloader, state: &AdminState, trigger: &str) {
    match reloader.reload() {
        Ok(r) => {
            for w in &r.warnings {
                warn!("{w}");
            }
            if !r.restart_needed.is_empty() {
                warn!(
                    keys = ?r.restart_needed,
                    "these keys changed but only apply at the next start; their old values stay in force"
                );
            }
            let (secrets, users) = (r.reload.secrets.len(), r.reload.users.len());
            let (allowed, denied) = (
                r.reload.peer_filter.allowed.len(),
                r.reload.peer_filter.denied.len(),
            );
            if let Some(generation) = &r.tls {
                crate::reload::log_expiry(generation);
                state.set_tls_certificate_expiry(generation.earliest_expiry());
            }
            state.workers().send(Command::Reload(r.reload));
            state.set_admin_token(r.admin_token);
            state.record_reload(true);
            info!(
                trigger,
                secrets,
                users,
                allowed_peer_ranges = allowed,
                denied_peer_ranges = denied,
                "configuration reloaded; live allocations keep their credentials"
            );
        }
        Err(e) => {
            state.record_reload(false);
            error!(trigger, error = %format!("{e:#}"), "reload refused; the old settings stay in force");
        }
    }
}
