//! The fuzz corpus on stable: every committed seed of every fuzz target (`fuzz/seeds/`, the
//! RFC 5769 vectors, recorded turnutils traffic, the crash inputs that became regression
//! tests) runs through the target's body, which asserts the target's invariants; and the
//! generated seeds are what the generator makes today. The targets themselves run under
//! libFuzzer with `fuzz/run.sh` (nightly, cargo-fuzz).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use tern_fuzz::seeds::{generate, read_dir, recorded};
use tern_fuzz::TARGETS;

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
}

#[test]
fn every_seed_runs_clean_through_its_target() {
    let files = read_dir(&seeds_dir());
    let mut failed = Vec::new();
    for (target, name, data) in &files {
        let (_, run) = TARGETS
            .iter()
            .find(|(t, _)| t == target)
            .unwrap_or_else(|| panic!("fuzz/seeds/{target} is not a target"));
        if catch_unwind(AssertUnwindSafe(|| run(data))).is_err() {
            failed.push(format!("{target}/{name}"));
        }
    }
    assert!(
        failed.is_empty(),
        "seeds that fail their target: {failed:?}"
    );
}

#[test]
fn every_target_has_seeds() {
    let files = read_dir(&seeds_dir());
    for (target, _) in TARGETS {
        let n = files.iter().filter(|(t, _, _)| t == target).count();
        assert!(n >= 2, "{target} has {n} seeds");
    }
}

#[test]
fn generated_seeds_are_current() {
    let files = read_dir(&seeds_dir());
    let mut want: Vec<(String, String, Vec<u8>)> = generate(&recorded(&files))
        .into_iter()
        .map(|s| (s.target.to_owned(), s.name, s.data))
        .collect();
    want.sort();
    let have: Vec<_> = files
        .into_iter()
        .filter(|(_, name, _)| name.starts_with("gen-"))
        .collect();
    let names = |v: &[(String, String, Vec<u8>)]| -> Vec<String> {
        v.iter().map(|(t, n, _)| format!("{t}/{n}")).collect()
    };
    assert_eq!(
        names(&have),
        names(&want),
        "run `cargo run --manifest-path fuzz/Cargo.toml --no-default-features --example seeds`"
    );
    for (h, w) in have.iter().zip(&want) {
        assert!(
            h.2 == w.2,
            "fuzz/seeds/{}/{} is stale: run the seeds example",
            h.0,
            h.1
        );
    }
}

/// The core scripts in the corpus reach what each is for: a harness that quietly stopped
/// allocating, relaying or failing where it should would fuzz nothing deep.
#[test]
fn core_scripts_reach_their_states() {
    use tern_fuzz::core::run;
    use tern_wire::Method as M;
    let files = read_dir(&seeds_dir());
    let script = |name: &str| {
        let (_, _, data) = files
            .iter()
            .find(|(t, n, _)| t == "core" && n == &format!("gen-{name}"))
            .unwrap_or_else(|| panic!("core/gen-{name}"));
        run(data)
    };
    let t = script("session");
    assert_eq!(
        [
            M::ALLOCATE,
            M::CREATE_PERMISSION,
            M::CHANNEL_BIND,
            M::REFRESH
        ]
        .map(|m| t.successes(m)),
        [1, 1, 1, 1],
        "{t:?}"
    );
    assert_eq!((t.errors(401), t.errors(403)), (1, 1), "{t:?}");
    assert_eq!((t.relayed, t.forwarded), (2, 2), "{t:?}");
    let t = script("rest-expiry");
    assert_eq!(
        (t.successes(M::ALLOCATE), t.successes(M::REFRESH)),
        (1, 1),
        "{t:?}"
    );
    assert_eq!(t.errors(438), 2, "{t:?}");
    assert!(
        t.errors(401) >= 3,
        "expired REST usernames are refused: {t:?}"
    );
    let t = script("reservation");
    assert_eq!((t.successes(M::ALLOCATE), t.errors(400)), (3, 1), "{t:?}");
    let t = script("streams");
    assert_eq!((t.successes(M::ALLOCATE), t.forwarded), (2, 1), "{t:?}");
    let t = script("quota");
    assert_eq!((t.successes(M::ALLOCATE), t.errors(486)), (5, 1), "{t:?}");
    let t = script("exhaust");
    assert!(t.errors(508) >= 1, "the pool runs out: {t:?}");
    let t = script("drain-reload");
    assert_eq!((t.errors(300), t.successes(M::REFRESH)), (1, 2), "{t:?}");
    let t = script("refused-peers");
    assert_eq!(t.errors(403), 18, "{t:?}");
    assert_eq!(
        t.successes(M::CHANNEL_BIND),
        1,
        "own address on a relay port: {t:?}"
    );
    let t = script("ipv6-relay");
    assert_eq!((t.relayed, t.forwarded, t.errors(443)), (1, 1, 1), "{t:?}");
    let t = script("forged");
    assert_eq!(
        t.successes(M::ALLOCATE),
        2,
        "SHA-256 and its retransmission: {t:?}"
    );
    let (_, _, crash) = files
        .iter()
        .find(|(t, n, _)| t == "core" && n == "crash-retransmit-other-user")
        .expect("the input that found the retransmission bug");
    let t = run(crash);
    assert_eq!(t.errors(441), 1, "another user's retransmission: {t:?}");
    let t = script("operator");
    assert_eq!(
        (t.successes(M::ALLOCATE), t.errors(403)),
        (5, 2),
        "alice and dave refused, alice again once her period passed: {t:?}"
    );
    assert_eq!(
        (t.released, t.unbound),
        (6, 2),
        "five revoked (dave's and the victim's with their channels), one shut down: {t:?}"
    );
    assert_eq!(
        (t.relayed, t.forwarded),
        (2, 1),
        "dave relays both ways: {t:?}"
    );
    let (_, _, crash) = files
        .iter()
        .find(|(t, n, _)| t == "core" && n == "crash-refresh-0-after-reload")
        .expect("the input that found the harness's lost key");
    let t = run(crash);
    assert_eq!(
        (t.successes(M::REFRESH), t.errors(300)),
        (1, 1),
        "carol's Refresh to 0 after a reload dropped her, under her allocation's key: {t:?}"
    );
    let (_, _, crash) = files
        .iter()
        .find(|(t, n, _)| t == "core" && n == "crash-channel-bind-second-peer")
        .expect("the input whose ChannelBind named a refused peer second");
    let t = run(crash);
    assert_eq!(
        (t.successes(M::CHANNEL_BIND), t.successes(M::CREATE_PERMISSION), t.relayed),
        (1, 2, 1),
        "a ChannelBind binds its first XOR-PEER-ADDRESS and ignores the refused one after it; of \
         the two Send indications to the server's own IP, only the one to a relay port leaves: {t:?}"
    );
    let t = script("rfc5766");
    assert_eq!(
        (t.successes(M::CHANNEL_BIND), t.relayed, t.forwarded),
        (1, 1, 1),
        "{t:?}"
    );
}
