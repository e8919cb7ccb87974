//! A suite whose outside programs are missing skips with a visible note, and fails with `CI`
//! set (`tern_e2e::prereq`).
//!
//! The test runs the `turnutils` suite (coturn's tools against tern and against coturn) as a
//! child process with a `PATH` from which every directory holding coturn's programs is
//! removed: first without `CI`, where every test must pass with a `SKIPPED` note naming the
//! missing program and the command that installs it; then with `CI=true`, where the suite
//! must fail. This is what a machine with only the Rust toolchain sees.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tern_e2e::{prereq, run_bounded, tern_bin, Output};

const COTURN_PROGRAMS: [&str; 4] = [
    "turnserver",
    "turnutils_uclient",
    "turnutils_peer",
    "turnutils_stunclient",
];

/// The tests of the `turnutils` suite, as the harness names them.
const SUITE_TESTS: [&str; 12] = [
    "tern::stunclient_gets_reflexive_address",
    "tern::uclient_channels_lose_nothing",
    "tern::uclient_send_indications_lose_nothing",
    "tern::uclient_tcp_channels_lose_nothing",
    "tern::uclient_tcp_send_indications_lose_nothing",
    "coturn::stunclient_gets_reflexive_address",
    "coturn::uclient_channels_lose_nothing",
    "coturn::uclient_send_indications_lose_nothing",
    "coturn::uclient_tcp_channels_lose_nothing",
    "coturn::uclient_tcp_send_indications_lose_nothing",
    "tern_tls::uclient_tls_channels_lose_nothing",
    "tern_tls::uclient_tls_send_indications_lose_nothing",
];

#[test]
fn suite_without_coturn_skips_outside_ci_and_fails_in_ci() {
    let suite = suite_executable("turnutils");
    let path = path_without_coturn();

    let out = run_suite(&suite, &path, None);
    assert!(
        out.success(),
        "without coturn and without CI the suite must pass by skipping; it did not:\n{}",
        out.text
    );
    for test in SUITE_TESTS {
        let note = out
            .text
            .lines()
            .find(|l| l.contains(&format!("SKIPPED {test}: ")))
            .unwrap_or_else(|| panic!("no SKIPPED note for {test}:\n{}", out.text));
        assert!(
            note.contains("not found on PATH") && note.contains(prereq::COTURN_INSTALL),
            "the note must name what is missing and how to install it: {note}"
        );
    }
    assert!(
        out.text.contains("`turnutils_uclient` not found on PATH")
            && out.text.contains("`turnserver` not found on PATH"),
        "the notes name the missing programs:\n{}",
        out.text
    );
    assert!(
        out.text.contains(&format!("{} passed", SUITE_TESTS.len())),
        "all {} tests pass (skipped):\n{}",
        SUITE_TESTS.len(),
        out.text
    );

    let out = run_suite(&suite, &path, Some("true"));
    assert!(
        out.status.is_some() && !out.success(),
        "with CI set a missing program must fail the suite; it did not:\n{}",
        out.text
    );
    assert!(
        out.text.contains("prerequisite missing with CI set")
            && out.text.contains(&format!("{} failed", SUITE_TESTS.len())),
        "every test fails, naming the missing program:\n{}",
        out.text
    );
}

/// Runs the suite executable with `PATH` set to `path` and `CI` set to `ci` (or unset).
fn run_suite(suite: &Path, path: &str, ci: Option<&str>) -> Output {
    let mut cmd = Command::new(suite);
    cmd.env("PATH", path)
        .env("TERN_BIN", tern_bin())
        .env_remove("TURNSERVER_BIN")
        .env_remove("CI")
        .arg("--test-threads=1");
    if let Some(ci) = ci {
        cmd.env("CI", ci);
    }
    run_bounded(&mut cmd, Duration::from_secs(120))
}

/// The current `PATH` without the directories that hold any of coturn's programs.
fn path_without_coturn() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|dir| !COTURN_PROGRAMS.iter().any(|p| dir.join(p).is_file()))
        .collect();
    let joined = std::env::join_paths(kept).expect("PATH entries are joinable");
    let joined = joined.into_string().expect("PATH is UTF-8");
    for program in COTURN_PROGRAMS {
        let hit = std::env::split_paths(&joined).any(|dir| dir.join(program).is_file());
        assert!(!hit, "{program} still reachable through PATH={joined}");
    }
    joined
}

/// The test executable of `suite` in this package, built (if needed) by cargo, which names
/// its path in its JSON messages.
fn suite_executable(suite: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = run_bounded(
        Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            // --workspace: the features the workspace build unified, so nothing is rebuilt.
            .args(["test", "--workspace", "--test", suite, "--no-run"])
            .args(["--message-format=json-render-diagnostics"]),
        Duration::from_secs(600),
    );
    assert!(
        out.success(),
        "building the {suite} suite failed:\n{}",
        out.text
    );
    let marker = "\"executable\":\"";
    out.text
        .lines()
        .filter(|l| l.contains(&format!("\"name\":\"{suite}\"")))
        .find_map(|l| {
            let start = l.find(marker)? + marker.len();
            let end = start + l[start..].find('"')?;
            Some(PathBuf::from(&l[start..end]))
        })
        .unwrap_or_else(|| {
            panic!(
                "cargo named no executable for the {suite} suite:\n{}",
                out.text
            )
        })
}
