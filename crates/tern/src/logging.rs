//! Logging setup: `tracing` events formatted to stderr, stdout or a file (`log-file`), as
//! text or one JSON object a line (`log-format`); `verbose` means debug, `Verbose` trace;
//! `RUST_LOG` overrides both.
//!
//! What is logged never includes a secret, a password, a key or an HMAC: the server logs
//! addresses, usernames (a REST username is `<expiry>:<name>`), counts and reasons.

use std::fs::OpenOptions;
use std::io::IsTerminal as _;
use std::sync::Mutex;

use anyhow::Context as _;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogTarget, Verbosity};

/// Installs the global subscriber.
pub fn init(verbosity: Verbosity, target: &LogTarget, format: LogFormat) -> anyhow::Result<()> {
    let level = match verbosity {
        Verbosity::Normal => "info",
        Verbosity::Verbose => "debug",
        Verbosity::Extra => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let (writer, ansi) = match target {
        LogTarget::Stderr => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
        LogTarget::Stdout => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        ),
        LogTarget::File(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("log-file: cannot open {}", path.display()))?;
            (BoxMakeWriter::new(Mutex::new(file)), false)
        }
    };
    // A log destination that fails (a full disk, a closed pipe) loses log lines, nothing
    // more: tracing-subscriber would otherwise report each failed write with `eprintln!`,
    // which panics when stderr fails too, and a worker thread that logs would die with it
    // (seen in a soak when the disk filled: every relay socket closed with the workers).
    let installed = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .log_internal_errors(false)
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(ansi)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .log_internal_errors(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(writer)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
