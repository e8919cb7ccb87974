//! Writes the generated seeds (`gen-*`, see `tern_fuzz::seeds`) into `seeds/<target>/` and
//! removes generated files it no longer makes. The recorded ones (`rec-*`) are left alone.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --no-default-features --example seeds
//! ```

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let files = tern_fuzz::seeds::read_dir(&dir);
    let seeds = tern_fuzz::seeds::generate(&tern_fuzz::seeds::recorded(&files));
    for (target, name, _) in &files {
        let current = seeds.iter().any(|s| s.target == target && &s.name == name);
        if name.starts_with("gen-") && !current {
            std::fs::remove_file(dir.join(target).join(name)).expect("remove a stale seed");
        }
    }
    for seed in &seeds {
        let target = dir.join(seed.target);
        std::fs::create_dir_all(&target).expect("a target's seed directory");
        std::fs::write(target.join(&seed.name), &seed.data).expect("write a seed");
    }
    println!("{} generated seeds in {}", seeds.len(), dir.display());
}
