#!/usr/bin/env bash
# XDP benchmark (issue 15): tern in userspace, tern with xdp=native, and coturn (Debian's
# `turnserver`, 4.6.1 here), over a veth pair between two network namespaces of this script's
# own (xdpb-srv: the server; xdpb-gen: tern-load, its clients and its echo peers). Root only.
#
# - veth with threaded NAPI (`/sys/class/net/DEV/threaded`); both ends carry an XDP program
#   (XDP_PASS, or tern's own), so each end's receive work runs in its NAPI thread: the server
#   end's thread and the server are pinned to CPU 1, the generator, its echo peers and its
#   end's NAPI thread to CPU 0.
# - Loads (tern-load, UDP ChannelData, browser shape): `sat`, closed loop, SESSIONS sessions
#   with WINDOW packets in flight each (relayed pkt/s at saturation); `rate`, open loop at
#   RATE pkt/s in total (CPU per packet: busy time of CPU 1 from /proc/stat over the window,
#   softirq and the NAPI thread included, divided by the packets relayed).
# - Servers interleaved (tern, tern-xdp, coturn, tern, ...), RUNS rounds, medians.
# - coturn's newest release built from source is not run by this script.
#
# Env: RUNS (3), DURATION (5 s windows), WARMUP (1 s), SESSIONS (32), WINDOW (16), RATE
# (40000), SIZE (200 payload bytes). Everything is bounded: each run is under `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}; DURATION=${DURATION:-5}; WARMUP=${WARMUP:-1}
SESSIONS=${SESSIONS:-32}; WINDOW=${WINDOW:-16}; RATE=${RATE:-40000}; SIZE=${SIZE:-200}
SECRET=xdp-bench-secret
SRV=xdpb-srv; GEN=xdpb-gen; SDEV=xdpbs; GDEV=xdpbg
SIP=10.202.0.1; CIP=10.202.0.2; PIP=10.202.0.3
SMAC=02:00:00:ca:00:01; GMAC=02:00:00:ca:00:02
[[ $(id -u) == 0 ]] || { echo "xdp.sh needs root (namespaces, XDP)" >&2; exit 1; }
(( $(nproc) >= 2 )) || { echo "xdp.sh needs 2 CPUs" >&2; exit 1; }

echo "building release binaries (tern with the xdp feature, tern-load)..." >&2
cargo build --release -p tern -p tern-bench --features tern/xdp >&2
TERN=$ROOT/target/release/tern
LOAD=$ROOT/target/release/tern-load
COTURN=$(command -v turnserver)
TMP=$(mktemp -d)
SERVER_PID=""

cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    ip netns del "$SRV" 2>/dev/null || true
    ip netns del "$GEN" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns del "$SRV" 2>/dev/null || true
ip netns del "$GEN" 2>/dev/null || true
ip netns add "$SRV"; ip netns add "$GEN"
ip link add "$SDEV" address "$SMAC" netns "$SRV" type veth peer name "$GDEV" address "$GMAC" netns "$GEN"
ip -n "$SRV" addr add "$SIP/24" dev "$SDEV"
ip -n "$GEN" addr add "$CIP/24" dev "$GDEV"
ip -n "$GEN" addr add "$PIP/24" dev "$GDEV"
for p in "$SRV $SDEV" "$GEN $GDEV"; do
    set -- $p
    ip -n "$1" link set lo up
    ip -n "$1" link set "$2" up
done
# Full UDP checksums from the generator, as a NIC puts on the wire (a local socket over veth
# leaves only the pseudo-header sum, which an XDP program cannot tell apart).
ip netns exec "$GEN" ethtool -K "$GDEV" tx off >/dev/null
ip -n "$SRV" neigh replace "$CIP" lladdr "$GMAC" nud permanent dev "$SDEV"
ip -n "$SRV" neigh replace "$PIP" lladdr "$GMAC" nud permanent dev "$SDEV"
ip -n "$GEN" neigh replace "$SIP" lladdr "$SMAC" nud permanent dev "$GDEV"
printf '%s\n' '__attribute__((section("xdp"), used)) int pass(void *ctx) { return 2; }' \
    'char _license[] __attribute__((section("license"), used)) = "GPL";' >"$TMP/pass.c"
clang -O2 -target bpf -c "$TMP/pass.c" -o "$TMP/pass.o"
ip -n "$GEN" link set dev "$GDEV" xdpdrv obj "$TMP/pass.o" sec xdp
# Threaded NAPI can be set once the device has NAPI (an XDP program); it stays set.
threaded() { ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded"; }
threaded "$GEN" "$GDEV"

# pin_napi NS DEV CPU: the NAPI threads of DEV (named napi/DEV-ID) to CPU.
pin_napi() {
    local pid
    for pid in $(ps -eo pid=,comm= | awk -v d="napi/$2-" 'index($2, d) == 1 { print $1 }'); do
        taskset -pc "$3" "$pid" >/dev/null
    done
}

server_cmd() { # KIND
    case $1 in
        tern|tern-xdp)
            local -a xdp=()
            [[ $1 == tern-xdp ]] && xdp=(--xdp native --xdp-interface "$SDEV")
            echo "$TERN" serve --listening-ip "$SIP" --relay-ip "$SIP" --listening-port 3478 \
                --min-port 49152 --max-port 49252 --use-auth-secret --static-auth-secret "$SECRET" \
                --realm bench --allowed-peer-ip 10.202.0.0-10.202.0.255 --rfc5766-channel-numbers \
                --relay-threads 1 --unauthorized-ratelimit=false --no-tcp "${xdp[@]}" ;;
        coturn)
            echo "$COTURN" -n --no-tcp --no-tls --no-dtls --no-cli --no-rfc5780 --log-file=stdout \
                --simple-log --pidfile="$TMP/coturn.pid" --no-software-attribute \
                --listening-ip="$SIP" --listening-port=3478 --relay-ip="$SIP" --min-port=49152 \
                --max-port=49252 --use-auth-secret --static-auth-secret="$SECRET" --realm=bench \
                --allowed-peer-ip=10.202.0.0-10.202.0.255 --relay-threads=1 ;;
    esac
}

start_server() { # KIND
    # The userspace runs keep an XDP_PASS program on the server end, so its receive work
    # runs in its NAPI thread (on CPU 1) as with tern's program.
    ip -n "$SRV" link set dev "$SDEV" xdpdrv off 2>/dev/null || true
    [[ $1 != tern-xdp ]] && ip -n "$SRV" link set dev "$SDEV" xdpdrv obj "$TMP/pass.o" sec xdp
    # shellcheck disable=SC2046
    ip netns exec "$SRV" taskset -c 1 $(server_cmd "$1") >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        if [[ -n $(ip netns exec "$SRV" ss -ulnH "sport = :3478") ]]; then
            sleep 0.5
            threaded "$SRV" "$SDEV"
            pin_napi "$SRV" "$SDEV" 1
            pin_napi "$GEN" "$GDEV" 0
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server $1 did not start:" >&2; cat "$TMP/server.log" >&2; return 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

run_one() { # LOAD KIND ARGS...
    local load=$1 kind=$2; shift 2
    start_server "$kind"
    local -a gen=("$LOAD" --server "$SIP:3478" --client-ip "$CIP" --peer-ip "$PIP"
        --secret "$SECRET" --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP"
        --stat-cpu 1 --server-pid "$SERVER_PID" --json --label "$load" "$@")
    if timeout $((DURATION + 60)) ip netns exec "$GEN" taskset -c 0 "${gen[@]}" >"$TMP/gen.out" 2>"$TMP/gen.err"; then
        grep '^{' "$TMP/gen.out" | sed "s/^{/{\"kind\":\"$kind\",/" >>"$TMP/results.jsonl"
        echo "[$kind] $(head -1 "$TMP/gen.out")" >&2
    else
        echo "[$kind] $load: generator failed" >&2; cat "$TMP/gen.err" >&2
    fi
    stop_server
}

KINDS=(tern tern-xdp coturn)
for round in $(seq "$RUNS"); do
    echo "round $round/$RUNS" >&2
    for kind in "${KINDS[@]}"; do
        run_one sat "$kind" --mode closed --sessions "$SESSIONS" --window "$WINDOW"
        run_one rate "$kind" --mode open --sessions "$SESSIONS" --rate "$RATE"
    done
done

python3 - "$TMP/results.jsonl" "$RUNS" "$RATE" "$SESSIONS" "$WINDOW" "$SIZE" <<'EOF'
import json, statistics, sys
path, runs, rate, sessions, window, size = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
def med(kind, label, f):
    v = [f(r) for r in rows if r["kind"] == kind and r["label"] == label]
    v = [x for x in v if x is not None]
    return (statistics.median(v), len(v)) if v else (None, 0)
def us_per_pkt(r):
    return r["stat_cpu_s"] * 1e6 / r["relayed"] if r.get("stat_cpu_s") is not None and r["relayed"] else None
print(f"| server | relayed pkt/s at saturation (closed, {sessions}x{window}) | CPU 1 µs per relayed packet at {rate} pkt/s (softirq included) | loss at {rate} pkt/s | runs |")
print("|---|---|---|---|---|")
res = {}
for k in ["tern", "tern-xdp", "coturn"]:
    pps, n1 = med(k, "sat", lambda r: r["relayed_pps"])
    cpu, n2 = med(k, "rate", us_per_pkt)
    loss, _ = med(k, "rate", lambda r: r["loss"])
    res[k] = (pps, cpu)
    f = lambda x, fmt: "n/a" if x is None else fmt.format(x)
    print(f"| {k} | {f(pps, '{:,.0f}')} | {f(cpu, '{:.2f}')} | {f(loss, '{:.4f}')} | {min(n1, n2)} |")
t, x, c = res["tern"], res["tern-xdp"], res["coturn"]
if None not in (t[0], x[0], c[1], x[1]):
    print(f"\nRatios: tern-xdp / tern pkt/s = {x[0]/t[0]:.2f} (target >= 2); "
          f"tern-xdp / coturn CPU per packet = {x[1]/c[1]:.2f} (target <= 0.5); "
          f"tern / coturn CPU per packet = {t[1]/c[1]:.2f}.")
EOF
