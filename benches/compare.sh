#!/usr/bin/env bash
# Side-by-side benchmark: tern, coturn and the bare UDP forwarder, on loopback only.
#
# For each load, runs the servers interleaved (tern, coturn, bare, tern, coturn, bare, ...),
# RUNS times each, every run on a freshly started server with the same relay port range and
# relay threads, the server pinned to CPU 0 and the generator (tern-load) to CPU 1. The server's
# CPU seconds (utime + stime from /proc/PID/stat) are read by the generator at the start and
# end of its measured window. Prints a Markdown table of medians and writes it to
# benches/results/latest.md (raw runs in latest.jsonl).
#
# Env: RUNS (default 3), THREADS (relay threads, default 1), QUICK=1 (about 2 minutes:
# 1 run, 2 s windows), DURATION / WARMUP (seconds), LISTEN_PORT (default 34790).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    RUNS=${RUNS:-1}; DURATION=${DURATION:-2}; WARMUP=${WARMUP:-0.5}
else
    RUNS=${RUNS:-3}; DURATION=${DURATION:-6}; WARMUP=${WARMUP:-1.5}
fi
THREADS=${THREADS:-1}
LISTEN_PORT=${LISTEN_PORT:-34890}
SECRET=compare-secret
REALM=bench
POOL=49152-49252        # the default 101-port pool
WIDE=50000-59999        # a wide relay range
DATA_CLIENTS=${DATA_CLIENTS:-46000-46999}
ALLOC_CLIENTS=${ALLOC_CLIENTS:-20000-29999}
PEER_PORT=${PEER_PORT:-45990}   # away from tern-load's defaults, so a manual run next to this one does not collide

TMP=$(mktemp -d /tmp/tern-compare.XXXXXX)
SERVER_PID=""
GEN_PID=""
cleanup() {
    if [[ -n $GEN_PID ]]; then kill "$GEN_PID" 2>/dev/null || true; fi
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "building release binaries..." >&2
cargo build --release -p tern -p tern-bench >&2
TERN=$ROOT/target/release/tern
LOAD=$ROOT/target/release/tern-load
BARE=$ROOT/target/release/bare-forwarder
URING=$ROOT/target/release/bare-uring
COTURN=$(command -v turnserver)

NCPU=$(nproc)
if (( NCPU >= 2 )); then
    SRV_CPU=0; GEN_CPU=1; PINNING="server on CPU 0, generator on CPU 1 (taskset)"
else
    SRV_CPU=0; GEN_CPU=0; PINNING="ONLY ONE CPU: server and generator share CPU 0 (numbers are not comparable to a 2-CPU run)"
fi

# server_cmd KIND MIN MAX -> the command line, one word per line
server_cmd() {
    local kind=$1 min=$2 max=$3
    case $kind in
        tern) printf '%s\n' "$TERN" serve --listening-ip 127.0.0.1 --listening-port "$LISTEN_PORT" \
                --relay-ip 127.0.0.1 --min-port "$min" --max-port "$max" --use-auth-secret \
                --static-auth-secret "$SECRET" --realm "$REALM" --allow-loopback-peers \
                --rfc5766-channel-numbers --relay-threads "$THREADS" ;;
        coturn) printf '%s\n' "$COTURN" -n --no-tcp --no-tls --no-dtls --no-cli --no-rfc5780 \
                --log-file=stdout --simple-log --pidfile="$TMP/coturn.pid" --no-software-attribute \
                --listening-ip=127.0.0.1 --listening-port="$LISTEN_PORT" --relay-ip=127.0.0.1 \
                --min-port="$min" --max-port="$max" --use-auth-secret \
                --static-auth-secret="$SECRET" --realm="$REALM" --allow-loopback-peers \
                --relay-threads="$THREADS" ;;
        bare) printf '%s\n' "$BARE" --listen "127.0.0.1:$LISTEN_PORT" --relay-ip 127.0.0.1 \
                --min-port "$min" --max-port "$max" --max-seconds 300 ;;
        bare-uring) printf '%s\n' "$URING" --listen "127.0.0.1:$LISTEN_PORT" --relay-ip 127.0.0.1 \
                --min-port "$min" --max-port "$max" --max-seconds 300 ;;
    esac
}

start_server() { # KIND MIN MAX
    local -a cmd
    mapfile -t cmd < <(server_cmd "$@")
    taskset -c "$SRV_CPU" "${cmd[@]}" >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        if [ -n "$(ss -ulnH "sport = :$LISTEN_PORT")" ]; then
            sleep 0.3   # let it finish binding relay ports
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server $1 did not start:" >&2
    cat "$TMP/server.log" >&2
    return 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    # wait until the listening port is free again
    for _ in $(seq 50); do [ -n "$(ss -ulnH "sport = :$LISTEN_PORT")" ] || break; sleep 0.1; done
}

declare -A GEN_CMD SRV_CMD
# run_one LOAD KIND RELAY_RANGE GENERATOR_ARGS...
run_one() {
    local load=$1 kind=$2 range=$3; shift 3
    local min=${range%-*} max=${range#*-}
    local target=turn
    [[ $kind == bare* ]] && target=bare
    start_server "$kind" "$min" "$max"
    local -a gen=("$LOAD" --server "127.0.0.1:$LISTEN_PORT" --target "$target" --secret "$SECRET"
        --peer-port "$PEER_PORT" --duration "$DURATION" --warmup "$WARMUP" --json
        --label "$load" "$@")
    SRV_CMD[$load/$kind]="taskset -c $SRV_CPU $(server_cmd "$kind" "$min" "$max" | tr '\n' ' ')"
    GEN_CMD[$load/$kind]="taskset -c $GEN_CPU $(printf '%q ' "${gen[@]}")--server-pid PID"
    local bound
    bound=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 40 }')
    timeout "$bound" taskset -c "$GEN_CPU" "${gen[@]}" --server-pid "$SERVER_PID" >"$TMP/gen.out" 2>"$TMP/gen.err" &
    GEN_PID=$!
    local ok=0
    wait "$GEN_PID" && ok=1
    GEN_PID=""
    local out
    out=$(cat "$TMP/gen.out")
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "[$kind] $load: the server was gone before the end of the run (killed from outside?); run discarded" >&2
        ok=0
    fi
    if [[ $ok == 1 ]]; then
        echo "[$kind] ${out%%$'\n'*}" >&2
        echo "$out" | grep '^{' | sed "s/^{/{\"kind\":\"$kind\",/" >>"$TMP/results.jsonl"
    else
        echo "[$kind] $load: generator failed" >&2
        cat "$TMP/gen.err" >&2
        echo "{\"kind\":\"$kind\",\"label\":\"$load\",\"error\":true}" >>"$TMP/results.jsonl"
    fi
    stop_server
}

# run_load LOAD KINDS RELAY_RANGE GENERATOR_ARGS...: RUNS rounds, kinds interleaved
run_load() {
    local load=$1 kinds=$2 range=$3; shift 3
    for r in $(seq "$RUNS"); do
        for kind in $kinds; do
            echo "== $load run $r/$RUNS: $kind" >&2
            run_one "$load" "$kind" "$range" "$@"
        done
    done
}

median_of() { # LOAD KIND FIELD
    python3 - "$TMP/results.jsonl" "$@" <<'EOF'
import json, statistics, sys
path, load, kind, field = sys.argv[1:]
vals = [json.loads(l) for l in open(path)]
xs = [v[field] for v in vals if v.get("label") == load and v.get("kind") == kind and not v.get("error") and v.get(field) is not None]
print(statistics.median(xs) if xs else 0)
EOF
}

ALL="tern coturn bare"
DATA=(--mode closed --client-ports "$DATA_CLIENTS")
run_load "closed 100 B x 10" "$ALL" "$POOL" "${DATA[@]}" --size 100 --sessions 10
run_load "closed 100 B x 100" "$ALL" "$POOL" "${DATA[@]}" --size 100 --sessions 100
run_load "closed 1200 B x 10" "$ALL" "$POOL" "${DATA[@]}" --size 1200 --sessions 10
run_load "closed 1200 B x 100" "$ALL" "$POOL" "${DATA[@]}" --size 1200 --sessions 100
# Open loop at half the round-trip rate the slower TURN server reached with 100 B x 10.
T=$(median_of "closed 100 B x 10" tern round_trips_per_s)
C=$(median_of "closed 100 B x 10" coturn round_trips_per_s)
RATE=$(python3 -c "print(max(1000, int(min($T, $C) * 0.5 / 1000) * 1000))")
OPEN="open 100 B x 10 at $RATE/s"
# The open loads also run the bare forwarder on io_uring: is the floor lower with one
# io_uring_enter per wake-up than with epoll + recvmmsg + sendmmsg?
OPEN_KINDS="$ALL bare-uring"
run_load "$OPEN" "$OPEN_KINDS" "$POOL" --mode open --rate "$RATE" --client-ports "$DATA_CLIENTS" --size 100 --sessions 10
# And at an eighth of that, where both servers idle most of the time (one packet per wake-up).
LOW=$(python3 -c "print(max(1000, int($RATE / 8 / 1000) * 1000))")
run_load "open 100 B x 10 at $LOW/s" "$OPEN_KINDS" "$POOL" --mode open --rate "$LOW" --client-ports "$DATA_CLIENTS" --size 100 --sessions 10
ALLOC=(--mode alloc-rate --concurrency 16 --client-ports "$ALLOC_CLIENTS")
run_load "alloc-rate, wide range $WIDE" "tern coturn" "$WIDE" "${ALLOC[@]}"
run_load "alloc-rate, pool $POOL" "tern coturn" "$POOL" "${ALLOC[@]}"

echo "callgrind..." >&2
CALLGRIND=$(bash benches/callgrind.sh 2>/dev/null || echo "callgrind.sh failed")

{
    for k in "${!SRV_CMD[@]}"; do printf '%s\t%s\t%s\n' "$k" "${SRV_CMD[$k]}" "${GEN_CMD[$k]}"; done
} >"$TMP/commands.tsv"

mkdir -p benches/results
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$TMP/results.jsonl" "$TMP/commands.tsv" >"$TMP/table.md" <<EOF
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cmds = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
loads = []
for r in rows:
    if r["label"] not in loads:
        loads.append(r["label"])
def valid(r):
    # A run counts when the generator finished, the server's CPU could be read at both ends
    # of the window (it was alive throughout) and no session failed to set up.
    return not r.get("error") and r.get("server_cpu_s") is not None and (r["label"].startswith("alloc") or r.get("failures") == 0)
def med(load, kind, f):
    xs = [r[f] for r in rows if r["label"] == load and r["kind"] == kind and valid(r) and r.get(f) is not None]
    return statistics.median(xs) if xs else None
def n(load, kind):
    ok = sum(1 for r in rows if r["label"] == load and r["kind"] == kind and valid(r))
    total = sum(1 for r in rows if r["label"] == load and r["kind"] == kind)
    return f"{ok}/{total}" if ok else 0
def fmt(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"
def ratio(a, b):
    return "-" if a is None or b in (None, 0) else f"{a / b:.2f}"
print("# tern vs coturn vs bare forwarder (loopback)")
print()
print("Generated by \`benches/compare.sh\` on $(date -u +%Y-%m-%dT%H:%MZ). Machine: $NCPU CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r).")
print("Relay threads: $THREADS. Runs per server and load: $RUNS (medians shown), interleaved tern, coturn, bare (and bare-uring in the open loads). Measured window $DURATION s after $WARMUP s warm-up. Pinning: $PINNING.")
print("Load average (1/5/15 min) before: $LOADAVG_START, after: $LOADAVG_END. Other processes on the machine share both CPUs; a run where neither the server nor the generator is near 100 % CPU was held back by them.")
print("tern at commit $(git rev-parse --short HEAD)$(git diff --quiet -- crates || echo ' plus uncommitted changes in crates/'), coturn $("$COTURN" --version 2>/dev/null | head -1).")
print()
print("Relayed packets = packets the server forwarded (arrivals at the peer + arrivals back at the client; a round trip is 2). Server CPU = utime + stime of the server process over the window; 100 % = one core busy. Generator CPU shows whether tern-load itself was the limit (near 100 % means it was).")
print()
print("## Relaying (closed: each session keeps 8 packets in flight; open: paced offered rate)")
print()
print("| load | server | relayed pkt/s | payload Mbit/s | RTT p50 / p99 / p99.9 (us) | loss | server CPU | CPU s per M pkts | generator CPU | runs |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for load in loads:
    if load.startswith("alloc"):
        continue
    for kind in ("tern", "coturn", "bare", "bare-uring"):
        if n(load, kind) == 0:
            continue
        secs = med(load, kind, "seconds") or 1
        cpu = med(load, kind, "server_cpu_s")
        gcpu = med(load, kind, "generator_cpu_s")
        loss = med(load, kind, "loss")
        print(f"| {load} | {kind} | {fmt(med(load, kind, 'relayed_pps'))} | {fmt(med(load, kind, 'mbit_per_s'), 1)} | "
              f"{fmt(med(load, kind, 'p50_us'))} / {fmt(med(load, kind, 'p99_us'))} / {fmt(med(load, kind, 'p999_us'))} | "
              f"{'-' if loss is None else f'{loss * 100:.3f} %'} | {'-' if cpu is None else f'{cpu / secs * 100:.0f} %'} | "
              f"{fmt(med(load, kind, 'cpu_s_per_million'), 2)} | {'-' if gcpu is None else f'{gcpu / secs * 100:.0f} %'} | {n(load, kind)} |")
print()
print("## Ratios (medians)")
print()
def per_round(load, a, b, f):
    # Ratio of each run of a to the run of b in the same round (adjacent in time, so under
    # the same background load), in run order.
    xs = [r for r in rows if r["label"] == load and r["kind"] == a]
    ys = [r for r in rows if r["label"] == load and r["kind"] == b]
    out = [ratio(x.get(f), y.get(f)) if valid(x) and valid(y) else "-" for x, y in zip(xs, ys)]
    return " / ".join(out) if out else "-"
print("| load | relayed pkt/s tern/coturn | tern/bare | CPU s per M pkts tern/coturn | per round | tern/bare | bare/coturn | bare-uring/coturn | RTT p50 tern/coturn | p99 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for load in loads:
    if load.startswith("alloc"):
        continue
    g = lambda k, f: med(load, k, f)
    print(f"| {load} | {ratio(g('tern','relayed_pps'), g('coturn','relayed_pps'))} | {ratio(g('tern','relayed_pps'), g('bare','relayed_pps'))} | "
          f"{ratio(g('tern','cpu_s_per_million'), g('coturn','cpu_s_per_million'))} | {per_round(load, 'tern', 'coturn', 'cpu_s_per_million')} | "
          f"{ratio(g('tern','cpu_s_per_million'), g('bare','cpu_s_per_million'))} | "
          f"{ratio(g('bare','cpu_s_per_million'), g('coturn','cpu_s_per_million'))} | {ratio(g('bare-uring','cpu_s_per_million'), g('coturn','cpu_s_per_million'))} | "
          f"{ratio(g('tern','p50_us'), g('coturn','p50_us'))} | {ratio(g('tern','p99_us'), g('coturn','p99_us'))} |")
print()
print("## Allocation rate (16 cycles in flight: Allocate, 401, signed Allocate, Refresh LIFETIME 0; a new client port each cycle)")
print()
print("| load | server | allocations/s | failures/s | 508/s | latency p50 / p99 (us) | server CPU | CPU s per M allocations | generator CPU | runs |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for load in loads:
    if not load.startswith("alloc"):
        continue
    for kind in ("tern", "coturn"):
        if n(load, kind) == 0:
            continue
        secs = med(load, kind, "seconds") or 1
        cpu = med(load, kind, "server_cpu_s")
        gcpu = med(load, kind, "generator_cpu_s")
        f = med(load, kind, "failures"); e = med(load, kind, "e508")
        print(f"| {load} | {kind} | {fmt(med(load, kind, 'allocations_per_s'))} | {fmt(None if f is None else f / secs, 1)} | {fmt(None if e is None else e / secs, 1)} | "
              f"{fmt(med(load, kind, 'p50_us'))} / {fmt(med(load, kind, 'p99_us'))} | {'-' if cpu is None else f'{cpu / secs * 100:.0f} %'} | "
              f"{fmt(med(load, kind, 'cpu_s_per_million'), 2)} | {'-' if gcpu is None else f'{gcpu / secs * 100:.0f} %'} | {n(load, kind)} |")
print()
print("## Core instruction count (callgrind, \`benches/callgrind.sh\`)")
print()
for line in """$CALLGRIND""".splitlines():
    print(f"- {line}")
print()
print("## Command lines")
print()
print("Raw per-run JSON lines of the generator: \`benches/results/latest.jsonl\`. Runs column: valid/total; a run is discarded when the server died during it or a session failed to set up.")
print()
print("SECRET, ports and ranges as in \`benches/compare.sh\`; PID is the server's pid.")
print()
for key, srv, gen in sorted(cmds):
    print(f"- **{key}**")
    print(f"  - server: \`{srv.strip()}\`")
    print(f"  - generator: \`{gen.strip()}\`")
EOF
cat "$TMP/table.md"
cp "$TMP/table.md" benches/results/latest.md
cp "$TMP/results.jsonl" benches/results/latest.jsonl
echo "written to benches/results/latest.md" >&2
