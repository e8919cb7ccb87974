//! `tern-load`: a TURN load generator for loopback benchmarks of tern and coturn.
//! See `tern_bench::load` and `benches/compare.sh`.

use clap::Parser;
use tern_bench::load::{self, Args};

fn main() -> anyhow::Result<()> {
    // UDP GSO on by default (the best batched I/O there is); NO_GSO=1 compares without it.
    tern_bench::load::sys::set_gso(std::env::var_os("NO_GSO").is_none());
    let args = Args::parse();
    let report = load::run(&args)?;
    println!("{}", report.human());
    if args.json {
        println!("{}", report.json());
    }
    Ok(())
}
