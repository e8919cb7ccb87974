#!/usr/bin/env bash
# XDP benchmark (issue 15): tern in userspace, tern with xdp=native and coturn (Debian's
# `turnserver`, 4.6.1 here), and with COTURN_NEW a coturn built from source (see
# benches/build-coturn.sh) in its default mode and with its fastest options, over a veth pair
# between two network namespaces of this script's own (xdpb-srv: the server; xdpb-gen:
# tern-load, its clients and its echo peers). Root only.
#
# - veth with threaded NAPI (`/sys/class/net/DEV/threaded`); both ends carry an XDP program
#   (XDP_PASS, or tern's own), so each end's receive work runs in its NAPI thread: the server
#   end's thread and the server are pinned to CPU 1, the generator, its echo peers and its
#   end's NAPI thread to CPU 0.
# - Loads (tern-load, UDP ChannelData, browser shape, one echo peer per session, which
#   coturn's --multiplex-peer needs: it tells allocations apart by peer address and refuses a
#   second allocation with the same peer with 508): `sat`,
#   closed loop, SESSIONS sessions with WINDOW packets in flight each (relayed pkt/s at
#   saturation); `rate`, open loop at RATE pkt/s in total (CPU per packet: busy time of CPU 1
#   from /proc/stat over the window, softirq and the NAPI thread included, divided by the
#   packets relayed).
# - Every server has one relay thread. Servers interleaved (tern, tern-xdp, coturn,
#   coturn-new, coturn-new-fast, tern, ...), RUNS rounds, medians.
# - Each run is checked: the generator must exit 0 and report relayed packets; tern-xdp's fast
#   path must have carried most of them (`tern_xdp_relayed_packets_total` over
#   `tern_relayed_packets_total`, from tern's admin port inside the namespace); a coturn's log
#   must show no unknown argument or configuration error, and the fastest configuration's
#   multiplexed relay socket must be up (coturn only logs and falls back when it is not).
#   A failed check stops the script (a comparison with a server that did not relay, or did
#   not run as labelled, means nothing).
#
# Env: RUNS (3), DURATION (5 s windows), WARMUP (1 s), SESSIONS (32), WINDOW (16), RATE
# (40000), SIZE (200 payload bytes), COTURN_NEW (a turnserver binary; unset: not run),
# COTURN_FAST (the fastest configuration's options, to try others), OUT
# (the report, default benches/results/xdp-latest.md; the raw rows go beside it as .jsonl).
# Everything is bounded: each load runs under `timeout`, and the namespaces are deleted on
# exit, on a failure and on Ctrl-C.
set -euo pipefail
# Paths given relative to where the script was started from.
COTURN_NEW=${COTURN_NEW:+$(realpath "$COTURN_NEW")}
OUT=${OUT:+$(realpath -m "$OUT")}
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}; DURATION=${DURATION:-5}; WARMUP=${WARMUP:-1}
SESSIONS=${SESSIONS:-32}; WINDOW=${WINDOW:-16}; RATE=${RATE:-40000}; SIZE=${SIZE:-200}
OUT=${OUT:-$ROOT/benches/results/xdp-latest.md}
SECRET="xdp-bench-secret"
SRV=xdpb-srv; GEN=xdpb-gen; SDEV=xdpbs; GDEV=xdpbg
SIP=10.202.0.1; CIP=10.202.0.2; PIP=10.202.0.3
SMAC=02:00:00:ca:00:01; GMAC=02:00:00:ca:00:02
ADMIN=127.0.0.1:9650          # tern's admin port, on the server namespace's own loopback
MUX_PORT=3480                 # coturn's multiplexed relay socket (--multiplex-peer-port)
# coturn's fastest options for this load (coturn 4.17's `turnserver -h`): one relay socket per
# relay thread shared by all allocations, its receives batched with recvmmsg (on by default,
# named so a build without it fails) and its sends with sendmmsg (implied by
# --multiplex-peer); UDP GSO for batches that share destination and size (this load gives
# every session its own peer and client address, so it rarely engages; it is on because it
# costs nothing when it does not).
# COTURN_FAST replaces them (space-separated; the multiplexed socket is still checked for
# when --multiplex-peer is among them).
read -ra COTURN_FAST_OPTS <<<"${COTURN_FAST:---multiplex-peer --multiplex-peer-port=$MUX_PORT --udp-recvmmsg --udp-gso}"
[[ $(id -u) == 0 ]] || { echo "xdp.sh needs root (namespaces, XDP)" >&2; exit 1; }
(( $(nproc) >= 2 )) || { echo "xdp.sh needs 2 CPUs" >&2; exit 1; }
for tool in ip ethtool clang taskset timeout curl python3; do
    command -v "$tool" >/dev/null || { echo "xdp.sh needs $tool" >&2; exit 1; }
done

echo "building release binaries (tern with the xdp feature, tern-load)..." >&2
cargo build --release -p tern -p tern-bench --features tern/xdp >&2
TERN=$ROOT/target/release/tern
LOAD=$ROOT/target/release/tern-load
COTURN=$(command -v turnserver) || { echo "no turnserver on PATH (apt-get install -y coturn)" >&2; exit 1; }
COTURN_VERSION=$("$COTURN" --version 2>/dev/null | head -1)
KINDS=(tern tern-xdp coturn)
if [[ -n $COTURN_NEW ]]; then
    [[ -x $COTURN_NEW ]] || { echo "COTURN_NEW=$COTURN_NEW is not an executable" >&2; exit 1; }
    COTURN_NEW_VERSION=$("$COTURN_NEW" --version 2>/dev/null | head -1)
    [[ $COTURN_NEW_VERSION =~ ^[0-9.]+$ ]] ||
        { echo "COTURN_NEW=$COTURN_NEW: --version printed '$COTURN_NEW_VERSION', not a coturn version" >&2; exit 1; }
    KINDS+=(coturn-new coturn-new-fast)
else
    COTURN_NEW_VERSION=""
fi
TMP=$(mktemp -d)
SERVER_PID=""; GEN_PID=""

# stop PID: SIGTERM (coturn exits; tern starts a graceful drain), SIGTERM again after a
# second (tern: "SIGTERM during a drain: stop at once"), SIGKILL after five more.
stop() {
    local i
    for i in $(seq 60); do
        kill -0 "$1" 2>/dev/null || return 0
        case $i in 1|10) kill "$1" 2>/dev/null || true ;; 60) kill -9 "$1" 2>/dev/null || true ;; esac
        sleep 0.1
    done
}

cleanup() {
    local pid
    for pid in $GEN_PID $SERVER_PID; do stop "$pid"; done
    ip netns del "$SRV" 2>/dev/null || true
    ip netns del "$GEN" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

fail() { # MESSAGE [LOG]: stops the script, the log's end on stderr
    echo "FAILED: $1" >&2
    if [[ -n ${2:-} && -f $2 ]]; then
        echo "---- $2: its errors" >&2
        grep -a -m5 -iE "unrecognized option|invalid option|unknown argument|config error|error" "$2" >&2 || true
        echo "---- $2: its last 20 lines" >&2
        tail -20 "$2" >&2
    fi
    exit 1
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
ip netns del "$SRV" 2>/dev/null || true
ip netns del "$GEN" 2>/dev/null || true
ip netns add "$SRV"; ip netns add "$GEN"
ip link add "$SDEV" address "$SMAC" netns "$SRV" type veth peer name "$GDEV" address "$GMAC" netns "$GEN"
ip -n "$SRV" addr add "$SIP/24" dev "$SDEV"
ip -n "$GEN" addr add "$CIP/24" dev "$GDEV"
ip -n "$GEN" addr add "$PIP/24" dev "$GDEV"
for p in "$SRV:$SDEV" "$GEN:$GDEV"; do
    ip -n "${p%%:*}" link set lo up
    ip -n "${p%%:*}" link set "${p#*:}" up
done
# Full UDP checksums from the generator, as a NIC puts on the wire. A local socket over veth
# leaves only the pseudo-header sum (CHECKSUM_PARTIAL), which an XDP program cannot tell
# apart: tern's program would carry it on (the receiver then drops the packet), and a program
# that verifies checksums would hand every packet to userspace. Either way xdp=native would not
# be measured; so this stays off for every server alike.
ip netns exec "$GEN" ethtool -K "$GDEV" tx off >/dev/null
ip -n "$SRV" neigh replace "$CIP" lladdr "$GMAC" nud permanent dev "$SDEV"
ip -n "$SRV" neigh replace "$PIP" lladdr "$GMAC" nud permanent dev "$SDEV"
ip -n "$GEN" neigh replace "$SIP" lladdr "$SMAC" nud permanent dev "$GDEV"
printf '%s\n' '__attribute__((section("xdp"), used)) int pass(void *ctx) { return 2; }' \
    'char _license[] __attribute__((section("license"), used)) = "GPL";' >"$TMP/pass.c"
clang -O2 -target bpf -c "$TMP/pass.c" -o "$TMP/pass.o"
ip -n "$GEN" link set dev "$GDEV" xdpdrv obj "$TMP/pass.o" sec xdp
# Threaded NAPI can be set once the device has NAPI (an XDP program); it stays set.
# The write fails (EIO) while the device has no NAPI, i.e. no XDP program yet: tern's own
# program attaches a moment after its listening socket opens, so retry for up to 5 s.
threaded() {
    local _
    for _ in $(seq 50); do
        ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "could not turn on threaded NAPI on $2 (no XDP program attached?)" >&2
    return 1
}
threaded "$GEN" "$GDEV"

# pin_napi NS DEV CPU: the NAPI threads of DEV (named napi/DEV-ID) to CPU.
pin_napi() {
    local pid
    for pid in $(ps -eo pid=,comm= | awk -v d="napi/$2-" 'index($2, d) == 1 { print $1 }'); do
        taskset -pc "$3" "$pid" >/dev/null
    done
}

coturn_args() { # BINARY: the options every coturn run shares
    echo "$1" -n --no-tcp --no-tls --no-dtls --no-cli --no-rfc5780 --log-file=stdout \
        --simple-log --pidfile="$TMP/coturn.pid" --no-software-attribute \
        --listening-ip="$SIP" --listening-port=3478 --relay-ip="$SIP" --min-port=49152 \
        --max-port=49252 --use-auth-secret --static-auth-secret="$SECRET" --realm=bench \
        --allowed-peer-ip=10.202.0.0-10.202.0.255 --relay-threads=1
}

server_cmd() { # KIND
    case $1 in
        tern|tern-xdp)
            local -a xdp=()
            [[ $1 == tern-xdp ]] && xdp=(--xdp native --xdp-interface "$SDEV")
            echo "$TERN" serve --listening-ip "$SIP" --relay-ip "$SIP" --listening-port 3478 \
                --min-port 49152 --max-port 49252 --use-auth-secret --static-auth-secret "$SECRET" \
                --realm bench --allowed-peer-ip 10.202.0.0-10.202.0.255 --rfc5766-channel-numbers \
                --relay-threads 1 --unauthorized-ratelimit=false --no-tcp \
                --admin-listen "$ADMIN" "${xdp[@]}" ;;
        coturn) coturn_args "$COTURN" ;;
        coturn-new) coturn_args "$COTURN_NEW" ;;
        coturn-new-fast) echo "$(coturn_args "$COTURN_NEW")" "${COTURN_FAST_OPTS[@]}" ;;
    esac
}

# check_started KIND: the server runs as labelled (what its log and sockets say).
check_started() {
    local log=$TMP/server.log
    case $1 in
        tern*)
            grep -q "tern listening (udp).* workers=1" "$log" || fail "$1: not one worker" "$log"
            if [[ $1 == tern-xdp ]]; then
                grep -q "xdp fast path attached" "$log" || fail "$1: no 'xdp fast path attached' line" "$log"
            fi ;;
        coturn*)
            # One relay thread, as tern's one worker (4.6.1 and 4.17 say it differently).
            grep -E -q "Total General servers: 1$|Total relay threads: 1$" "$log" ||
                fail "$1: not one relay thread" "$log"
            # getopt refuses an unknown option (coturn prints its usage and exits), but a stray
            # argument is only logged, and a feature that cannot start is logged and skipped.
            if grep -E -q "Unknown argument|CONFIG ERROR|unrecognized option|multiplex-peer init failed" "$log"; then
                fail "$1: its log reports a refused or ignored option" "$log"
            fi
            if [[ $1 == coturn-new-fast && " ${COTURN_FAST_OPTS[*]} " == *" --multiplex-peer "* ]]; then
                grep -q "multiplex-peer: 1 thread(s)" "$log" ||
                    fail "$1: no 'multiplex-peer: 1 thread(s)' line" "$log"
                [[ -n $(ip netns exec "$SRV" ss -ulnH "sport = :$MUX_PORT") ]] ||
                    fail "$1: no multiplexed relay socket on port $MUX_PORT" "$log"
            fi ;;
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
            kill -0 "$SERVER_PID" 2>/dev/null || break
            threaded "$SRV" "$SDEV"
            pin_napi "$SRV" "$SDEV" 1
            pin_napi "$GEN" "$GDEV" 0
            check_started "$1"
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    fail "server $1 did not start" "$TMP/server.log"
}

stop_server() {
    stop "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# xdp_share: of the ChannelData tern relayed over the whole run, the share its fast path
# carried (the fast path's per-CPU counts are folded every second, published every 100 ms).
xdp_share() {
    sleep 1.5
    ip netns exec "$SRV" curl -fsS --max-time 5 "http://$ADMIN/metrics" | awk '
        /^tern_relayed_packets_total\{/ && /path="channel_data"/ { all += $NF }
        /^tern_xdp_relayed_packets_total\{/ { fast += $NF }
        END { if (all > 0) printf "%.4f\n", fast / all; else print "0" }'
}

run_one() { # LOAD KIND ARGS...
    local load=$1 kind=$2 share=null rc=0; shift 2
    start_server "$kind"
    local -a gen=("$LOAD" --server "$SIP:3478" --client-ip "$CIP" --peer-ip "$PIP"
        --peers "$SESSIONS" --peer-port 40000 --secret "$SECRET" --size "$SIZE" --duration "$DURATION"
        --warmup "$WARMUP" --stat-cpu 1 --server-pid "$SERVER_PID" --json --label "$load" "$@")
    # In the background and waited for, so Ctrl-C is handled at once (bash runs a trap only
    # after a foreground command ends); the cleanup stops it.
    timeout $((DURATION + 60)) ip netns exec "$GEN" taskset -c 0 "${gen[@]}" >"$TMP/gen.out" 2>"$TMP/gen.err" &
    GEN_PID=$!
    wait "$GEN_PID" || rc=$?
    GEN_PID=""
    (( rc == 0 )) || { cat "$TMP/gen.err" >&2; fail "[$kind] $load: generator exited with $rc" "$TMP/server.log"; }
    if [[ $kind == tern-xdp ]]; then
        share=$(xdp_share) || fail "[$kind] $load: no /metrics from tern" "$TMP/server.log"
    fi
    if [[ $kind == coturn* ]] && grep -q "disabling --udp-gso" "$TMP/server.log"; then
        fail "[$kind] $load: coturn turned UDP GSO off while running" "$TMP/server.log"
    fi
    # The generator's JSON line, checked (it relayed; the fast path carried most of tern-xdp's
    # ChannelData) and labelled with the server, to the raw rows.
    local row
    row=$(python3 - "$kind" "$share" "$TMP/gen.out" <<'PY'
import json, sys
kind, share, path = sys.argv[1], sys.argv[2], sys.argv[3]
lines = [l for l in open(path) if l.startswith("{")]
if not lines:
    sys.exit("no JSON line from the generator")
r = json.loads(lines[0])
if not (r["relayed"] > 0 and r["received"] > 0):
    sys.exit(f"relayed nothing: {lines[0].strip()}")
r = {"kind": kind, "xdp_share": None if share == "null" else float(share), **r}
if kind == "tern-xdp" and r["xdp_share"] < 0.5:
    sys.exit(f"the fast path carried only {share} of the ChannelData "
             "(TX checksum offload on at the generator's end?)")
print(json.dumps(r, separators=(",", ":")))
PY
    ) || fail "[$kind] $load: see above" "$TMP/server.log"
    echo "$row" >>"$TMP/results.jsonl"
    local note=""
    [[ $share != null ]] && note=" (fast path carried $share of the ChannelData)"
    echo "[$kind] $(head -1 "$TMP/gen.out")$note" >&2
    stop_server
}

for round in $(seq "$RUNS"); do
    echo "round $round/$RUNS" >&2
    for kind in "${KINDS[@]}"; do
        run_one sat "$kind" --mode closed --sessions "$SESSIONS" --window "$WINDOW"
        run_one rate "$kind" --mode open --sessions "$SESSIONS" --rate "$RATE"
    done
done

mkdir -p "$(dirname "$OUT")"
cp "$TMP/results.jsonl" "${OUT%.md}.jsonl"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- . ':(exclude)benches/results' 2>/dev/null || COMMIT+=" (work tree modified)"
export RUNS DURATION WARMUP SESSIONS WINDOW RATE SIZE COMMIT LOAD_BEFORE COTURN_VERSION \
    COTURN_NEW_VERSION
COTURN_FAST="${COTURN_FAST_OPTS[*]}"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
KERNEL=$(uname -r)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
export COTURN_FAST LOAD_AFTER KERNEL CPU_MODEL
python3 benches/xdp_report.py "$TMP/results.jsonl" | tee "$OUT"
echo "report: $OUT (raw rows: ${OUT%.md}.jsonl)" >&2
