//! Prints a `core` input as its configuration and operations, for reading a crash.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --no-default-features --example show -- FILE
//! ```

use tern_fuzz::core::ops::{Op, MAX_OPS};
use tern_fuzz::core::Config;
use tern_fuzz::input::Reader;

fn main() {
    let path = std::env::args().nth(1).expect("usage: show FILE");
    let data = std::fs::read(&path).expect("a core input");
    let mut r = Reader::new(&data);
    println!("{:?}", Config::read(&mut r));
    for _ in 0..MAX_OPS {
        if r.is_empty() {
            break;
        }
        println!("{:?}", Op::read(&mut r));
    }
}
