#!/usr/bin/env bash
# Instructions per ChannelData packet in the sans-IO core, counted by callgrind (stable on a
# noisy machine, unlike wall time). Runs channel-data-instructions with N packets each way and
# with 0 (the set-up baseline) and prints (total - baseline) / (2 N) per size.
# Usage: benches/callgrind.sh [PACKETS]   (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
cargo build --release -p tern-bench --bin channel-data-instructions >&2
BIN=target/release/channel-data-instructions
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
count() { # packets size -> total instructions (Ir)
    valgrind --tool=callgrind --callgrind-out-file="$TMP/out" "$BIN" "$1" "$2" >/dev/null 2>"$TMP/log"
    grep -oE 'Collected : [0-9]+' "$TMP/log" | grep -oE '[0-9]+'
}
for size in 100 1200; do
    base=$(count 0 "$size")
    total=$(count "$N" "$size")
    echo "ChannelData ${size} B: $(( (total - base) / (2 * N) )) instructions per packet (callgrind; $N packets each way, total $total, baseline $base)"
done
