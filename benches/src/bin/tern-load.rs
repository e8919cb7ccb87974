//! `tern-load`: a TURN load generator for loopback benchmarks of tern and coturn.
//! See `tern_bench::load` and `benches/compare.sh`.

use clap::Parser;
use tern_bench::load::{self, Args};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let report = load::run(&args)?;
    println!("{}", report.human());
    if args.json {
        println!("{}", report.json());
    }
    Ok(())
}
