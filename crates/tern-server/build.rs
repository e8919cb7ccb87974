//! With the `xdp` feature, compiles `bpf/tern_xdp.c` with clang (`-target bpf`) into
//! OUT_DIR for `include_bytes!`. Without it, does nothing.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=bpf/tern_xdp.c");
    println!("cargo:rerun-if-env-changed=CLANG");
    if env::var_os("CARGO_FEATURE_XDP").is_none() {
        return;
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("tern_xdp.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // asm/types.h lives under the host's multiarch include directory on Debian.
    let multiarch = Command::new(&clang)
        .arg("-print-multiarch")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "x86_64-linux-gnu".into());
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg("-idirafter")
        .arg(format!("/usr/include/{multiarch}"))
        .args(["-c", "bpf/tern_xdp.c", "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("feature xdp: cannot run {clang} ({e}); install clang and libbpf-dev")
        });
    assert!(
        status.success(),
        "feature xdp: {clang} failed to compile bpf/tern_xdp.c (needs clang and libbpf-dev)"
    );
}
