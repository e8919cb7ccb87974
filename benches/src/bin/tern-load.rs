//! `tern-load`: a TURN load generator for loopback benchmarks of tern and coturn.
//! See `tern_bench::load` and `benches/compare.sh`.

use clap::Parser;
use tern_bench::load::{self, Args, Shape};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The send shape is `--shape`; NO_GSO (which turns the bare forwarder's own GSO off) only
    // ever means "no UDP GSO in this process", so it refuses the bursty shape rather than
    // quietly sending something other than what the label says.
    anyhow::ensure!(
        args.shape == Shape::Browser || std::env::var_os("NO_GSO").is_none(),
        "--shape bursty sends UDP GSO bursts, but NO_GSO is set"
    );
    let report = load::run(&args)?;
    println!("{}", report.human());
    if args.json {
        println!("{}", report.json());
    }
    Ok(())
}
