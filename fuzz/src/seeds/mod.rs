//! The seed corpus: what each target starts from before libFuzzer mutates it.
//!
//! Three kinds of seed live in `seeds/<target>/`:
//! - `rec-*`: datagrams recorded from clients of the e2e suites, coturn's
//!   `turnutils_uclient` and `turnutils_stunclient` and two aiortc peers, talking to tern
//!   (`tools/record.sh`), committed as they came;
//! - `gen-*`: what [`generate`] writes, built with the codec's own encoder as clients and
//!   servers send them, the four RFC 5769 test vectors, PROXY headers, configuration files,
//!   and scripts for the core target, some of them wrapping the recorded datagrams;
//! - `crash-*`: inputs on which a target found a bug, kept once the bug was fixed (each
//!   also has a regression test in the crate where the bug was).
//!
//! `examples/seeds.rs` writes the `gen-*` files; the main workspace's corpus test replays
//! every seed and fails if the committed `gen-*` files differ from what [`generate`] gives.

mod conf;
mod connection;
mod core;
mod messages;

/// One seed file: `seeds/<target>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// The target's name.
    pub target: &'static str,
    /// The file name (`gen-...`).
    pub name: String,
    /// The input.
    pub data: Vec<u8>,
}

/// A recorded seed the generator builds on: its target directory, file name and bytes.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `stun_message` or `channel_data`.
    pub target: String,
    /// The file name (`rec-...`).
    pub name: String,
    /// The datagram.
    pub data: Vec<u8>,
}

/// Every generated seed, given the recorded ones (in file name order).
pub fn generate(recorded: &[Recorded]) -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut add = |target, name: &str, data: Vec<u8>| {
        seeds.push(Seed {
            target,
            name: format!("gen-{name}"),
            data,
        })
    };
    let messages = messages::stun_messages();
    for (name, data) in &messages {
        add("stun_message", name, data.clone());
    }
    for (i, data) in messages::attribute_values(&messages)
        .into_iter()
        .enumerate()
    {
        add("attribute", &format!("{i:02}"), data);
    }
    for (name, data) in messages::channel_data() {
        add("channel_data", name, data);
    }
    for (name, data) in messages::writer() {
        add("writer", name, data);
    }
    for (name, data) in connection::stream(&messages, recorded) {
        add("stream", name, data);
    }
    for (name, data) in connection::proxy() {
        add("proxy", name, data);
    }
    for (name, data) in conf::conf() {
        add("conf", name, data);
    }
    for (name, data) in core::core(recorded) {
        add("core", &name, data);
    }
    seeds
}

/// Every file under `dir` (`seeds/`), as (target, file name, bytes), sorted.
///
/// # Panics
///
/// If the directory cannot be read.
pub fn read_dir(dir: &std::path::Path) -> Vec<(String, String, Vec<u8>)> {
    let mut files = Vec::new();
    for target in std::fs::read_dir(dir).expect("the seeds directory") {
        let target = target.expect("a directory entry").path();
        let target_name = target.file_name().unwrap().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&target).expect("a target's seeds") {
            let path = file.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let data = std::fs::read(&path).expect("a seed file");
            files.push((target_name.clone(), name, data));
        }
    }
    files.sort();
    files
}

/// The recorded seeds (`rec-*`) among `files`.
pub fn recorded(files: &[(String, String, Vec<u8>)]) -> Vec<Recorded> {
    files
        .iter()
        .filter(|(_, name, _)| name.starts_with("rec-"))
        .map(|(target, name, data)| Recorded {
            target: target.clone(),
            name: name.clone(),
            data: data.clone(),
        })
        .collect()
}
