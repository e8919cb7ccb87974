#!/usr/bin/env bash
# System calls per relayed packet, tern against coturn, under the same closed load (loopback
# only). Issue 11 asks where plain TCP's CPU goes: this counts, by kind, the system calls each
# server makes while tern-load relays through it, and divides by the packets relayed.
#
# For each server (interleaved, RUNS rounds): start it pinned to CPU 0, start tern-load pinned
# to CPU 1 (closed load, SESSIONS sessions, SIZE-byte payloads, over TRANSPORT), and count the
# server's system calls with `perf stat -e 'syscalls:sys_enter_*' -p PID` for DURATION seconds
# inside the generator's measured window (it starts WARMUP + 1 s after the generator, the
# window lasts DURATION + 2 s, so perf's window falls inside it). Packets relayed in perf's
# window are the generator's relayed pkt/s times DURATION. Prints per server the median of
# system calls per relayed packet, the median count of each kind per packet, and the TCP
# segments the whole machine sent per relayed packet over the same window (`nstat`
# TcpOutSegs: the generator's and the server's, data and pure ACKs; over UDP, zero).
#
# Needs root or perf_event_paranoid <= 1 and tracefs (perf's syscalls tracepoints), perf
# (Debian's linux-perf) and coturn's turnserver. Every run is bounded by `timeout`.
#
# Env: TRANSPORT (tcp; udp works too), RUNS (3), DURATION (4), WARMUP (1), SESSIONS (10),
# SIZE (100), PORT (34990).
set -euo pipefail
cd "$(dirname "$0")/.."
TRANSPORT=${TRANSPORT:-tcp}; RUNS=${RUNS:-3}; DURATION=${DURATION:-4}; WARMUP=${WARMUP:-1}
SESSIONS=${SESSIONS:-10}; SIZE=${SIZE:-100}; PORT=${PORT:-34990}
SECRET=syscalls-secret
for tool in perf turnserver taskset nstat; do
    command -v "$tool" >/dev/null || { echo "syscalls.sh needs $tool" >&2; exit 1; }
done
perf stat -e 'syscalls:sys_enter_sendto' -- true >/dev/null 2>&1 \
    || { echo "perf cannot read the syscalls tracepoints here (root, tracefs)" >&2; exit 1; }

echo "building release binaries..." >&2
cargo build --release -p tern -p tern-bench >&2
TERN=$PWD/target/release/tern
LOAD=$PWD/target/release/tern-load
TMP=$(mktemp -d /tmp/tern-syscalls.XXXXXX)
SERVER_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server() { # KIND
    local streams=(--no-tls)
    [[ $TRANSPORT == udp ]] && streams=(--no-tcp --no-tls)
    case $1 in
        tern) timeout 120 taskset -c 0 "$TERN" serve --listening-ip 127.0.0.1 --listening-port "$PORT" \
                --relay-ip 127.0.0.1 --min-port 49152 --max-port 49252 --use-auth-secret \
                --static-auth-secret "$SECRET" --realm bench --allow-loopback-peers \
                --rfc5766-channel-numbers --relay-threads 1 --unauthorized-ratelimit=false \
                "${streams[@]}" >"$TMP/server.log" 2>&1 & ;;
        coturn) timeout 120 taskset -c 0 turnserver -n "${streams[@]}" --no-dtls --no-cli --no-rfc5780 \
                --log-file=stdout --simple-log --no-software-attribute --listening-ip=127.0.0.1 \
                --listening-port="$PORT" --relay-ip=127.0.0.1 --min-port=49152 --max-port=49252 \
                --use-auth-secret --static-auth-secret="$SECRET" --realm=bench \
                --allow-loopback-peers --relay-threads=1 --user-quota=0 --total-quota=0 \
                --pidfile="$TMP/coturn.pid" >"$TMP/server.log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    sleep 1.5
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
}

: >"$TMP/runs.jsonl"
for round in $(seq "$RUNS"); do
    for kind in tern coturn; do
        start_server "$kind"
        # The relay process itself (timeout and taskset exec or fork it).
        pid=$(pgrep -n -f -- "listening-port[= ]$PORT" || true)
        timeout 60 taskset -c 1 "$LOAD" --server "127.0.0.1:$PORT" --transport "$TRANSPORT" \
            --mode closed --size "$SIZE" --sessions "$SESSIONS" --secret "$SECRET" \
            --warmup "$WARMUP" --duration "$((DURATION + 2))" --json >"$TMP/load.json" 2>"$TMP/load.err" &
        load=$!
        sleep "$(python3 -c "print($WARMUP + 1)")"
        nstat -n >/dev/null
        perf stat -x, -e 'syscalls:sys_enter_*' -p "$pid" -o "$TMP/perf.csv" -- sleep "$DURATION" >/dev/null 2>&1
        nstat -z TcpOutSegs >"$TMP/nstat.txt"
        wait "$load" || { cat "$TMP/load.err" >&2; exit 1; }
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
        python3 - "$kind" "$DURATION" "$TMP/perf.csv" "$TMP/load.json" "$TMP/nstat.txt" >>"$TMP/runs.jsonl" <<'EOF'
import json, sys
kind, duration, perf, load, nstat = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
segments = sum(int(l.split()[1]) for l in open(nstat) if l.startswith("TcpOutSegs"))
counts = {}
for line in open(perf):
    parts = line.strip().split(",")
    if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_") and parts[0].isdigit() and int(parts[0]) > 0:
        counts[parts[2][len("syscalls:sys_enter_"):]] = int(parts[0])
result = json.loads(open(load).read().strip().splitlines()[-1])
packets = result["relayed_pps"] * duration
print(json.dumps({"kind": kind, "packets": packets, "pps": result["relayed_pps"], "counts": counts,
                  "segments": segments}))
EOF
        echo "round $round $kind: $(tail -1 "$TMP/runs.jsonl" | cut -c1-160)" >&2
    done
done

python3 - "$TMP/runs.jsonl" "$TRANSPORT" "$SESSIONS" "$SIZE" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print(f"System calls per relayed packet, closed {sys.argv[4]} B x {sys.argv[3]} over {sys.argv[2]}, "
      f"medians of {len(runs) // 2} runs per server (packets both ways)\n")
print("| server | relayed pkt/s | syscalls per pkt | TCP segments per pkt (machine) | by kind (per pkt) |")
print("|---|---:|---:|---:|---|")
for kind in ("tern", "coturn"):
    mine = [r for r in runs if r["kind"] == kind]
    total = statistics.median(sum(r["counts"].values()) / r["packets"] for r in mine)
    names = sorted({n for r in mine for n in r["counts"]})
    per = {n: statistics.median(r["counts"].get(n, 0) / r["packets"] for r in mine) for n in names}
    kinds = ", ".join(f"{n} {v:.3f}" for n, v in sorted(per.items(), key=lambda x: -x[1]) if v >= 0.001)
    pps = statistics.median(r["pps"] for r in mine)
    segments = statistics.median(r["segments"] / r["packets"] for r in mine)
    print(f"| {kind} | {pps:,.0f} | {total:.3f} | {segments:.3f} | {kinds} |")
EOF
