#!/usr/bin/env bash
# Side-by-side benchmark: tern, coturn and the bare forwarder, on loopback only.
#
# For each load, runs the servers interleaved (tern, coturn, bare, tern, coturn, bare, ...),
# RUNS times each, every run on a freshly started server with the same relay port range and
# relay threads, the server pinned to CPU 0 and the generator (tern-load) to CPU 1. The server's
# CPU seconds (utime + stime from /proc/PID/stat) are read by the generator at the start and
# end of its measured window. Prints a Markdown table of medians and writes it to
# benches/results/latest.md (raw runs in latest.jsonl).
#
# Loads, in the order of the report:
# - browser-like clients (tern-load --shape browser, the default): every datagram reaches the
#   server as its own datagram, as libwebrtc, Firefox and aioice send media. Closed loads
#   (8 in flight per session), two paced open loads, and two loads closer to a real relay:
#   1000 allocations, each with its own peer address, 1200 B at REAL_RATE packets/s each
#   (ChannelData, then half the sessions on Send/Data indications);
# - bursty clients (--shape bursty): a session's window leaves as one UDP GSO send and reaches
#   the server's listening socket (UDP GRO on in tern and the bare forwarder) as one buffer;
# - allocation rate;
# - TURN over TCP and over TLS (tern-load --transport tcp|tls, browser shape: one write and one
#   TLS record per packet): closed loads and the paced 1000-allocation load (over TCP also the
#   bare forwarder, its client leg TCP: the kernel's ceiling for TURN over TCP; it has no TLS),
#   then a hold of HOLD idle TLS allocations (tern and coturn), each its own full handshake and
#   Allocate (handshakes/s while they open, the server's RSS growth per allocation, and a
#   Refresh on each at the end: none may be lost). Both servers get the same certificate (ECDSA
#   P-256, from a CA made with openssl for this run) on the TLS port and TCP on the listening port.
# The bare forwarder runs under both UDP shapes and over TCP. A row is marked generator-limited when the
# generator used >= 95 % of its CPU while the server used < 90 %; every row also shows the
# per-core capacity 10^6 / (server CPU us per relayed packet), which compares the servers
# whatever held the rate.
#
# Duration: 52 runs per round; about 32 minutes at the defaults (RUNS=3, 6 s windows after
# 1.5 s warm-up, about 10 s per run with start, set-up and drain; callgrind about a minute).
# QUICK=1: 1 round of 2 s windows, about 6 minutes.
#
# A/B against another tern build: BASELINE_TERN=PATH (a tern binary built from an earlier
# commit, e.g. with `git worktree add /tmp/base REV && cargo build --release -p tern
# --manifest-path /tmp/base/Cargo.toml`) adds the server kind `tern-base` to every browser-like
# and real-relay load, interleaved with the others, and the report gains a section comparing
# tern with it (CPU per packet, per round). BASELINE_NAME names the build in the report.
#
# Env: RUNS (default 3), THREADS (relay threads, default 1), QUICK=1, DURATION / WARMUP
# (seconds), LISTEN_PORT (default 34890; TLS on LISTEN_PORT+1), REAL_SESSIONS (default 1000),
# REAL_RATE (packets/s per session, default 25), HOLD (idle TLS allocations held, default
# 10000; QUICK=1: 1000), HOLD_SECONDS (default 10), HOLD_CONCURRENCY (handshakes in flight,
# default 64), TLS12=1 (the generator offers TLS 1.2 only: coturn 4.6.1 has no TLS 1.3, so
# this compares like with like). NO_GSO=1 turns off the bare forwarder's own GSO sends only; the
# generator's shape is chosen per load.
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
# Echo peers PEER_PORT.. (up to REAL_SESSIONS of them), below DATA_CLIENTS and away from
# tern-load's defaults, so a manual run next to this one does not collide.
PEER_PORT=${PEER_PORT:-44990}
REAL_SESSIONS=${REAL_SESSIONS:-1000}
REAL_RATE=${REAL_RATE:-25}
TLS_PORT=$((LISTEN_PORT + 1))
if [[ $QUICK == 1 ]]; then HOLD=${HOLD:-1000}; else HOLD=${HOLD:-10000}; fi
HOLD_SECONDS=${HOLD_SECONDS:-10}
HOLD_CONCURRENCY=${HOLD_CONCURRENCY:-64}
TLS12=${TLS12:-0}
# A socket per session and per peer in the generator, one per relay port in the servers.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Each held allocation takes two descriptors in the server (its connection and its relay
# socket; tern binds the whole relay range up front): the hard RLIMIT_NOFILE bounds HOLD.
HOLD_ASKED=$HOLD
HARD_NOFILE=$(ulimit -Hn)
if [[ $HARD_NOFILE != unlimited ]] && (( 2 * HOLD + 400 > HARD_NOFILE )); then
    HOLD=$(( (HARD_NOFILE - 400) / 2 ))
    echo "HOLD=$HOLD_ASKED needs $((2 * HOLD_ASKED + 400)) open files per server, the hard limit is $HARD_NOFILE: holding $HOLD" >&2
fi
HOLD_RANGE=50000-$((50000 + HOLD + 99))

TMP=$(mktemp -d /tmp/tern-compare.XXXXXX)
# Empty until the first run (a focused ONLY may skip the loads the open rates derive from).
: >"$TMP/results.jsonl"
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

# A CA and a leaf made for this run: both servers serve the leaf, the generator trusts the CA.
# shellcheck source=benches/pki.sh
source "$ROOT/benches/pki.sh"
make_pki "$TMP/pki"
CA=$TMP/pki/ca.pem
CERT=$TMP/pki/leaf.pem
PKEY=$TMP/pki/leaf.key
# Set by the stream loads: the servers also listen on TCP and TLS.
STREAMS=0

NCPU=$(nproc)
if (( NCPU >= 2 )); then
    SRV_CPU=0; GEN_CPU=1; PINNING="server on CPU 0, generator on CPU 1 (taskset)"
else
    SRV_CPU=0; GEN_CPU=0; PINNING="ONLY ONE CPU: server and generator share CPU 0 (numbers are not comparable to a 2-CPU run)"
fi

# server_cmd KIND MIN MAX -> the command line, one word per line
server_cmd() {
    local kind=$1 min=$2 max=$3
    local bin=$TERN
    [[ $kind == tern-base ]] && bin=$BASELINE_TERN
    # Stream loads: TCP on the listening port, TLS on TLS_PORT, the same certificate; coturn's
    # quotas stated (0 = none, its default) so neither server refuses an allocation. tern's
    # connection limits stated too: the generator spreads its connections over 250 source
    # addresses (tern-load's source_of), so HOLD=10000 is 40 per address, under the default
    # max-connections-per-ip of 64, but a HOLD over 16000 would not be; 0 lifts that limit, and
    # max-connections (20000 by default) is set to what the largest stream load opens (HOLD,
    # or REAL_SESSIONS) and 1000 to spare. The alloc-rate loads are thousands of new clients a
    # second behind 127.0.0.1, each taking a 401: tern's per-source limit on unauthenticated
    # answers (10 a second, on by default; coturn's is off by default) is turned off for all
    # loads. A build from before that key warns about it and carries on.
    local -a tern_tls=() coturn_streams=(--no-tcp --no-tls)
    if [[ $STREAMS == 1 ]]; then
        tern_tls=(--tls-listening-port "$TLS_PORT" --cert "$CERT" --pkey "$PKEY"
            --max-connections "$(( (HOLD > REAL_SESSIONS ? HOLD : REAL_SESSIONS) + 1000 ))"
            --max-connections-per-ip 0)
        coturn_streams=(--tls-listening-port="$TLS_PORT" --cert="$CERT" --pkey="$PKEY"
            --user-quota=0 --total-quota=0)
    fi
    case $kind in
        tern|tern-base) printf '%s\n' "$bin" serve --listening-ip 127.0.0.1 --listening-port "$LISTEN_PORT" \
                --relay-ip 127.0.0.1 --min-port "$min" --max-port "$max" --use-auth-secret \
                --static-auth-secret "$SECRET" --realm "$REALM" --allow-loopback-peers \
                --rfc5766-channel-numbers --relay-threads "$THREADS" --unauthorized-ratelimit=false \
                "${tern_tls[@]}" ;;
        coturn) printf '%s\n' "$COTURN" -n "${coturn_streams[@]}" --no-dtls --no-cli --no-rfc5780 \
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
    local ready_port=$LISTEN_PORT ss_flags=-ulnH
    # Stream loads: the TLS port, bound last; the bare forwarder has none, its TCP listening
    # port (bound after its UDP one) instead.
    if [[ $STREAMS == 1 ]]; then
        ss_flags=-tlnH
        [[ $1 == bare* ]] || ready_port=$TLS_PORT
    fi
    # tern binds its whole relay range before it listens: a wide range takes a while.
    for _ in $(seq 300); do
        if [ -n "$(ss "$ss_flags" "sport = :$ready_port")" ]; then
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
    # wait until the listening ports are free again
    for _ in $(seq 50); do
        [ -n "$(ss -ulnH "sport = :$LISTEN_PORT")$(ss -tlnH "( sport = :$LISTEN_PORT or sport = :$TLS_PORT )")" ] || break
        sleep 0.1
    done
}

declare -A GEN_CMD SRV_CMD
# run_one LOAD KIND RELAY_RANGE GENERATOR_ARGS...
run_one() {
    local load=$1 kind=$2 range=$3; shift 3
    local min=${range%-*} max=${range#*-}
    local target=turn
    [[ $kind == bare* ]] && target=bare
    start_server "$kind" "$min" "$max"
    local server_port=$LISTEN_PORT
    [[ " $* " == *" --transport tls "* ]] && server_port=$TLS_PORT
    # A hold brings its own --duration (the seconds it holds).
    local -a window=(--duration "$DURATION" --warmup "$WARMUP")
    [[ " $* " == *" --duration "* ]] && window=()
    local -a gen=("$LOAD" --server "127.0.0.1:$server_port" --target "$target" --secret "$SECRET"
        --peer-port "$PEER_PORT" "${window[@]}" --json --label "$load" "$@")
    SRV_CMD[$load/$kind]="taskset -c $SRV_CPU $(server_cmd "$kind" "$min" "$max" | tr '\n' ' ')"
    GEN_CMD[$load/$kind]="taskset -c $GEN_CPU $(printf '%q ' "${gen[@]}")--server-pid PID"
    local bound
    # 40 s of slack covers setting up 1000 allocations (four transactions each); a hold
    # brings its own duration and 1 s per 100 allocations opened and refreshed.
    bound=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 40 }')
    [[ " $* " == *" --mode hold "* ]] && bound=$((HOLD_SECONDS + 60 + HOLD / 100))
    # NO_GSO is for the bare forwarder; the generator's shape is in its arguments.
    timeout "$bound" env -u NO_GSO taskset -c "$GEN_CPU" "${gen[@]}" --server-pid "$SERVER_PID" >"$TMP/gen.out" 2>"$TMP/gen.err" &
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
    if [[ -n $ONLY && ! $load =~ ${ONLY//,/|} ]]; then return 0; fi
    if [[ -n $SERVERS ]]; then
        local k picked=""
        for k in $kinds; do [[ " $SERVERS " == *" $k "* ]] && picked+="$k "; done
        kinds=$picked
    fi
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
BASELINE_TERN=${BASELINE_TERN:-}
# A focused rerun: ONLY (a bash regex; commas read as |, so ONLY=tcp,tls keeps the TCP and TLS
# loads and ONLY=hold the TLS hold) keeps the loads whose label matches, SERVERS (a list)
# the server kinds; RATE and LOW fix the open loads' rates (otherwise derived from the closed
# 100 B x 10 medians of tern and coturn); OUT names the report (default benches/results/latest).
ONLY=${ONLY:-}
SERVERS=${SERVERS:-}
OUT=${OUT:-benches/results/latest}
if [[ -n $BASELINE_TERN ]]; then
    [[ -x $BASELINE_TERN ]] || { echo "BASELINE_TERN=$BASELINE_TERN is not an executable" >&2; exit 1; }
    ALL="tern tern-base coturn bare"
fi
# Browser-like clients: each datagram its own datagram (--shape browser, the default).
DATA=(--mode closed --shape browser --client-ports "$DATA_CLIENTS")
run_load "closed 100 B x 10" "$ALL" "$POOL" "${DATA[@]}" --size 100 --sessions 10
run_load "closed 100 B x 100" "$ALL" "$POOL" "${DATA[@]}" --size 100 --sessions 100
run_load "closed 1200 B x 10" "$ALL" "$POOL" "${DATA[@]}" --size 1200 --sessions 10
run_load "closed 1200 B x 100" "$ALL" "$POOL" "${DATA[@]}" --size 1200 --sessions 100
# Open loop at half the round-trip rate the slower TURN server reached with 100 B x 10.
T=$(median_of "closed 100 B x 10" tern round_trips_per_s)
C=$(median_of "closed 100 B x 10" coturn round_trips_per_s)
RATE=${RATE:-$(python3 -c "print(max(1000, int(min($T, $C) * 0.5 / 1000) * 1000))")}
OPEN="open 100 B x 10 at $RATE/s"
# The open loads also run the bare forwarder on io_uring: is the floor lower with one
# io_uring_enter per wake-up than with epoll + recvmmsg + sendmmsg?
OPEN_KINDS="$ALL bare-uring"
run_load "$OPEN" "$OPEN_KINDS" "$POOL" --mode open --shape browser --rate "$RATE" --client-ports "$DATA_CLIENTS" --size 100 --sessions 10
# And at an eighth of that, where both servers idle most of the time (one packet per wake-up).
LOW=${LOW:-$(python3 -c "print(max(1000, int($RATE / 8 / 1000) * 1000))")}
run_load "open 100 B x 10 at $LOW/s" "$OPEN_KINDS" "$POOL" --mode open --shape browser --rate "$LOW" --client-ports "$DATA_CLIENTS" --size 100 --sessions 10
# Closer to a real relay: many allocations, each with its own peer address, 1200 B, a modest
# paced rate per session (open loop; the sessions take turns, so each is evenly spaced).
# Needs the wide relay range.
REAL=(--mode open --shape browser --client-ports "$DATA_CLIENTS" --sessions "$REAL_SESSIONS"
    --peers "$REAL_SESSIONS" --size 1200 --rate $((REAL_SESSIONS * REAL_RATE)))
run_load "$REAL_SESSIONS allocations, own peers, 1200 B at $REAL_RATE/s each" "$ALL" "$WIDE" "${REAL[@]}"
run_load "$REAL_SESSIONS allocations, own peers, 1200 B at $REAL_RATE/s each, ChannelData/Send mix" "${ALL% bare}" "$WIDE" "${REAL[@]}" --data-path mix
# Bursty clients: a session's window of 8 leaves as one UDP GSO send (--shape bursty) and
# reaches a listening socket with UDP GRO on (tern, the bare forwarder) as one buffer.
BURSTY=(--mode closed --shape bursty --client-ports "$DATA_CLIENTS")
run_load "bursty (GSO): closed 100 B x 10" "tern coturn bare" "$POOL" "${BURSTY[@]}" --size 100 --sessions 10
run_load "bursty (GSO): closed 1200 B x 100" "tern coturn bare" "$POOL" "${BURSTY[@]}" --size 1200 --sessions 100
ALLOC=(--mode alloc-rate --concurrency 16 --client-ports "$ALLOC_CLIENTS")
run_load "alloc-rate, wide range $WIDE" "tern coturn" "$WIDE" "${ALLOC[@]}"
run_load "alloc-rate, pool $POOL" "tern coturn" "$POOL" "${ALLOC[@]}"

# TURN over TCP and TLS (tern and coturn, and over TCP the bare forwarder with its client leg
# TCP; it has no TLS). Browser shape: each packet its own write (and TLS record), as a
# browser's TURN/TCP sends.
STREAMS=1
STREAM_SERVERS="tern coturn"
[[ -n $BASELINE_TERN ]] && STREAM_SERVERS="tern tern-base coturn"
TLS_ARGS=(--transport tls --ca "$CA")
[[ $TLS12 == 1 ]] && TLS_ARGS+=(--tls12)
for t in tcp tls; do
    if [[ $t == tcp ]]; then
        T_ARGS=(--transport tcp); T_SERVERS="$STREAM_SERVERS bare"
    else
        T_ARGS=("${TLS_ARGS[@]}"); T_SERVERS=$STREAM_SERVERS
    fi
    run_load "$t: closed 100 B x 10" "$T_SERVERS" "$POOL" "${T_ARGS[@]}" --mode closed --size 100 --sessions 10
    run_load "$t: closed 1200 B x 100" "$T_SERVERS" "$POOL" "${T_ARGS[@]}" --mode closed --size 1200 --sessions 100
    run_load "$t: $REAL_SESSIONS allocations, own peers, 1200 B at $REAL_RATE/s each" "$T_SERVERS" "$WIDE" \
        "${T_ARGS[@]}" --mode open --sessions "$REAL_SESSIONS" --peers "$REAL_SESSIONS" --size 1200 \
        --rate $((REAL_SESSIONS * REAL_RATE)) --concurrency 64
done
# Idle authenticated TLS allocations: HOLD full handshakes + Allocate as fast as the server
# takes them, held HOLD_SECONDS, the server's RSS growth per allocation, a Refresh on each.
run_load "tls: hold $HOLD idle allocations" "tern coturn" "$HOLD_RANGE" "${TLS_ARGS[@]}" --mode hold \
    --sessions "$HOLD" --concurrency "$HOLD_CONCURRENCY" --duration "$HOLD_SECONDS"
STREAMS=0

echo "callgrind..." >&2
if [[ -z $ONLY ]]; then
    CALLGRIND=$(bash benches/callgrind.sh 2>/dev/null || echo "callgrind.sh failed")
else
    CALLGRIND="not run in a focused run (ONLY=$ONLY)"
fi

{
    for k in "${!SRV_CMD[@]}"; do printf '%s\t%s\t%s\n' "$k" "${SRV_CMD[$k]}" "${GEN_CMD[$k]}"; done
} >"$TMP/commands.tsv"

mkdir -p benches/results
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%s\n' "$CALLGRIND" >"$TMP/callgrind.txt"
REPORT_DATE=$(date -u +%Y-%m-%dT%H:%MZ) \
REPORT_MACHINE="$NCPU CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)" \
REPORT_THREADS=$THREADS REPORT_RUNS=$RUNS REPORT_DURATION=$DURATION REPORT_WARMUP=$WARMUP \
REPORT_PINNING="$PINNING" REPORT_LOADAVG_START="$LOADAVG_START" REPORT_LOADAVG_END="$LOADAVG_END" \
REPORT_COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet -- crates benches/src || echo ' plus uncommitted changes in crates/ or benches/src/')" \
REPORT_COTURN="$("$COTURN" --version 2>/dev/null | head -1)" \
REPORT_BASELINE="${BASELINE_NAME:-$BASELINE_TERN}" \
REPORT_HOLD="$HOLD" REPORT_HOLD_CONCURRENCY="$HOLD_CONCURRENCY" REPORT_HOLD_ASKED="$HOLD_ASKED" REPORT_HARD_NOFILE="$HARD_NOFILE" REPORT_TLS12="$TLS12" \
    python3 benches/compare_report.py "$TMP/results.jsonl" "$TMP/commands.tsv" "$TMP/callgrind.txt" >"$TMP/table.md"
cat "$TMP/table.md"
cp "$TMP/table.md" "$OUT.md"
cp "$TMP/results.jsonl" "$OUT.jsonl"
echo "written to $OUT.md" >&2
