#!/usr/bin/env bash
# Runs tern's fuzz targets under libFuzzer for a bounded time each.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Every target (or those named) runs SECONDS seconds, one after the other, from the committed
# seeds (fuzz/seeds/<target>, read only) and the corpus it grew before (fuzz/corpus/<target>,
# not committed). Each run's log is fuzz/logs/<target>.log; a crash leaves its input in
# fuzz/artifacts/<target>/ and the script goes on with the next target, then exits 1.
# At the end it prints one line per target: executions, seconds, corpus size, result.
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`); the
# sanitizer build (AddressSanitizer, debug assertions on) happens on the first run.
# FUZZ_TOOLCHAIN overrides `nightly`; FUZZ_ARGS adds libFuzzer flags (e.g. -jobs=2).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
toolchain=${FUZZ_TOOLCHAIN:-nightly}
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi
mkdir -p fuzz/logs
nice -n 10 cargo "+$toolchain" fuzz build
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "== $t: ${secs}s"
    status=ok
    # -timeout: one input taking over 10 s is a finding; -rss_limit_mb: so is 2 GB.
    # shellcheck disable=SC2086
    if ! nice -n 10 cargo "+$toolchain" fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"fuzz/logs/$t.log" 2>&1; then
        status=FAILED
        failed+=("$t")
        grep -aE "^(==[0-9]+==ERROR|thread '.*' panicked)|artifact_prefix|Test unit written" \
            "fuzz/logs/$t.log" | head -5 || true
    fi
    execs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "fuzz/logs/$t.log" | grep -o '[0-9]*$' | tail -1 || true)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    summary+=("$(printf '%-14s %12s execs %6ss %7s inputs  %s' "$t" "${execs:-?}" "$secs" "$corpus" "$status")")
done
echo
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/logs/)" >&2
    exit 1
fi
