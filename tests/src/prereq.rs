//! Outside programs the suites need (coturn's tools, Chromium, a Python venv), and what a
//! test does when one is missing.
//!
//! `cargo test --workspace` must pass on a machine that has only the Rust toolchain, so a
//! test whose outside program is missing skips: it returns early and says so on stderr. The
//! note is written straight to file descriptor 2, not through `eprintln!`, which the test
//! harness captures: a person running plain `cargo test` sees it without `--nocapture`. With
//! `CI` set (`.ci/run` sets it and installs everything), a missing program fails the test
//! instead, so CI cannot pass by skipping.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

/// The one command that installs coturn's `turnserver` and `turnutils_*` tools.
pub const COTURN_INSTALL: &str = "apt-get install -y coturn";

/// Whether `CI` is set: a missing prerequisite then fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Reports a missing prerequisite of the running test.
///
/// Panics when `CI` is set. Otherwise writes one line, `SKIPPED <test>: <what>; install with:
/// <install>`, straight to stderr, and returns so the test can return.
pub fn missing(what: &str, install: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    if in_ci() {
        panic!("prerequisite missing with CI set: {what}; install with: {install}");
    }
    let line = format!("SKIPPED {test}: {what}; install with: {install}\n");
    // One write_all on the raw stderr handle bypasses the harness's output capture.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Reports a skip that is not a missing prerequisite (the suite runs elsewhere, e.g. on a
/// build with a cargo feature): the same note as [`missing`], but never a panic.
pub fn note_skip(what: &str, how: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    let line = format!("SKIPPED {test}: {what}; run it with: {how}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `name` found on `PATH`, or `None` after [`missing`] reported it (a panic under CI).
pub fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let found = on_path(name);
    if found.is_none() {
        missing(&format!("`{name}` not found on PATH"), install);
    }
    found
}

/// `name` in a directory of `PATH`, without reporting anything.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
