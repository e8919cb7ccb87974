//! Finding (and if needed building) the binaries the suites run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::prereq;

/// The `tern` binary the suites run.
///
/// 1. `TERN_BIN`, if set, is used as is (no build).
/// 2. Otherwise `<target>/<profile>/tern`, next to the running test executable (normally
///    `<workspace>/target/debug/tern`). If it is missing or older than any input of the
///    workspace crates (`crates/*/src/**`, `crates/*/Cargo.toml`, `crates/*/build.rs`, the
///    workspace `Cargo.toml` and `Cargo.lock`), `cargo build -p tern --bin tern` runs first,
///    into the same target directory, and cargo's own freshness check has the last word.
///
/// Why a nested build is safe: `cargo test` holds the build-directory lock only while it
/// compiles; it releases it before it runs the test executables, so the nested `cargo build`
/// does not deadlock (checked with cargo 1.95; the nested build merely waits, like any build,
/// while another cargo holds the lock). `cargo test --workspace` on its own does not produce
/// the `tern` executable (it compiles only tern's unit-test harness), which is why the
/// harness builds it.
///
/// Why only when stale, not always: `cargo build -p tern` resolves features for tern alone,
/// while `cargo build --workspace --all-targets` (what CI runs first) unifies them with the
/// dev-dependencies of the test crates. Running the nested build unconditionally would build
/// a second, differently-featured copy of tern's dependencies right after CI built the first.
pub fn tern_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("TERN_BIN") {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "TERN_BIN={} is not a file", path.display());
            return path;
        }
        let profile_dir = profile_dir();
        let bin = profile_dir.join("tern");
        let newest_source = newest_mtime(&workspace_root());
        let fresh = mtime(&bin).is_some_and(|built| built >= newest_source);
        if !fresh {
            // cargo decides what really needs rebuilding; it may find everything fresh
            // (e.g. only a test file was touched) and leave the binary's mtime alone.
            build_tern(&profile_dir);
            assert!(
                bin.is_file(),
                "`cargo build -p tern --bin tern` did not produce {}",
                bin.display()
            );
        }
        bin
    })
}

/// coturn's server, `turnserver` (`TURNSERVER_BIN` overrides the `PATH` lookup), or `None`
/// after the test was reported as skipped (a panic with `CI` set); see [`crate::prereq`].
pub fn coturn_bin() -> Option<PathBuf> {
    match std::env::var_os("TURNSERVER_BIN") {
        Some(path) => Some(PathBuf::from(path)),
        None => prereq::tool("turnserver", prereq::COTURN_INSTALL),
    }
}

/// One of coturn's test tools (`turnutils_uclient`, `turnutils_peer`, `turnutils_stunclient`),
/// or `None` after the test was reported as skipped (a panic with `CI` set).
pub fn turnutils_bin(name: &str) -> Option<PathBuf> {
    prereq::tool(name, prereq::COTURN_INSTALL)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf()
}

/// `<target>/<profile>`: the test executable runs from `<target>/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test executable has a directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

fn build_tern(profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let target_dir = profile_dir.parent().expect("profile dir has a parent");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "tern", "--bin", "tern", "--target-dir"])
        .arg(target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("tern-e2e: building the tern binary: {cmd:?}");
    let status = cmd.status().expect("spawn cargo");
    assert!(status.success(), "building tern failed: {status}");
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time among the inputs of the `tern` binary (a superset: all
/// workspace crates' sources, manifests and build scripts, not their tests or fixtures).
fn newest_mtime(root: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut consider = |path: &Path| {
        if let Some(t) = mtime(path) {
            newest = newest.max(t);
        }
    };
    consider(&root.join("Cargo.toml"));
    consider(&root.join("Cargo.lock"));
    let mut stack = Vec::new();
    for krate in std::fs::read_dir(root.join("crates"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = krate.path();
        consider(&dir.join("Cargo.toml"));
        consider(&dir.join("build.rs"));
        stack.push(dir.join("src"));
    }
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                consider(&path);
            }
        }
    }
    newest
}
