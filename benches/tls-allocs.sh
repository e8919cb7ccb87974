#!/usr/bin/env bash
# Heap allocations per packet relayed over TLS, in the real tern binary (loopback only).
#
# Runs tern under valgrind's DHAT (every malloc, calloc and realloc counted with its stack)
# with a TLS port, and tern-load relays through it over TLS: a paced `open` load by default
# (SESSIONS sessions with their own peers, SIZE-byte payloads, RATE packets a second in all,
# each packet its own TLS record, as a browser sends), or a `closed` one with MODE=closed.
# Two runs, SHORT and LONG seconds: set-up (start, handshakes, Allocates) is the same in
# both, so the difference in allocations over the difference in packets is what each packet
# costs. Packets are those into the server both ways (client records read, peer datagrams
# written to the clients as records; every packet is echoed, so half go each way). Prints the
# allocations per packet in all, and those made at rustls' two per-record sites: the
# plaintext copied out of each record read (`take_received_plaintext`), per client->peer
# packet, and the buffer each record written is encrypted into (`MessageEncrypter::encrypt`),
# per peer->client packet.
#
# Under valgrind tern runs many times slower: RATE must stay within what it relays there, so
# a run that loses packets (the generator's sent and received differ) stops the script.
# Every run is bounded by `timeout`.
#
# Env: MODE (open or closed), SESSIONS (20), SIZE (100), RATE (4000), SHORT (1), LONG (9),
# PORT (35990; TLS on PORT + 1), TERN (target/release/tern).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-open}; SESSIONS=${SESSIONS:-20}; SIZE=${SIZE:-100}; RATE=${RATE:-4000}
SHORT=${SHORT:-1}; LONG=${LONG:-9}; PORT=${PORT:-35990}
TERN=${TERN:-$PWD/target/release/tern}
LOAD=$PWD/target/release/tern-load
SECRET=allocs-secret
for tool in valgrind openssl python3 ss; do
    command -v "$tool" >/dev/null || { echo "tls-allocs.sh needs $tool" >&2; exit 1; }
done
[[ -x $TERN && -x $LOAD ]] || { echo "build first: cargo build --release -p tern -p tern-bench" >&2; exit 1; }
TMP=$(mktemp -d /tmp/tern-tls-allocs.XXXXXX)
SERVER_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A CA and a leaf for 127.0.0.1 (ECDSA P-256), as compare.sh makes them.
# shellcheck source=benches/pki.sh
source benches/pki.sh
make_pki "$TMP"

# run SECONDS: one DHAT run; appends {"seconds", "load": tern-load's JSON, "dhat": file}.
run() {
    local seconds=$1 out=$TMP/dhat.$1.json
    timeout $((seconds + 180)) valgrind --tool=dhat --dhat-out-file="$out" \
        "$TERN" serve --listening-ip 127.0.0.1 --listening-port "$PORT" --relay-ip 127.0.0.1 \
        --min-port 53000 --max-port $((53000 + SESSIONS + 99)) --use-auth-secret \
        --static-auth-secret "$SECRET" --realm bench --allow-loopback-peers \
        --rfc5766-channel-numbers --relay-threads 1 --unauthorized-ratelimit=false \
        --tls-listening-port $((PORT + 1)) --cert "$TMP/leaf.pem" --pkey "$TMP/leaf.key" \
        --max-connections-per-ip 0 >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 600); do
        [[ -n $(ss -tlnH "sport = :$((PORT + 1))") ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
        sleep 0.1
    done
    local -a shape=(--mode open --rate "$RATE" --concurrency 16)
    [[ $MODE == closed ]] && shape=(--mode closed)
    timeout $((seconds + 120)) "$LOAD" --server "127.0.0.1:$((PORT + 1))" --transport tls \
        --ca "$TMP/ca.pem" --secret "$SECRET" --peer-port 45990 --sessions "$SESSIONS" \
        --peers "$SESSIONS" --size "$SIZE" "${shape[@]}" --duration "$seconds" --json \
        >"$TMP/load.out" 2>"$TMP/load.err" || { cat "$TMP/load.err" >&2; exit 1; }
    kill -INT "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
    printf '{"seconds":%s,"dhat":"%s","load":%s}\n' "$seconds" "$out" \
        "$(grep '^{' "$TMP/load.out" | tail -1)" >>"$TMP/runs.jsonl"
    echo "$(grep -v '^{' "$TMP/load.out" | tail -1)" >&2
}

: >"$TMP/runs.jsonl"
run "$SHORT"
run "$LONG"
python3 - "$TMP/runs.jsonl" "$MODE" "$SESSIONS" "$SIZE" "$RATE" <<'EOF'
import json, sys
SITES = {"read (take_received_plaintext), per client->peer packet": "take_received_plaintext",
         "written (MessageEncrypter::encrypt), per peer->client packet": "MessageEncrypter>::encrypt"}
def blocks(path):
    d = json.load(open(path))
    names = d["ftbl"]
    total = sum(p["tbk"] for p in d["pps"])
    sites = {k: sum(p["tbk"] for p in d["pps"] if any(m in names[i] for i in p["fs"]))
             for k, m in SITES.items()}
    return total, sites
short, long_ = [json.loads(l) for l in open(sys.argv[1])]
for r in (short, long_):
    if r["load"]["sent"] != r["load"]["received"]:
        sys.exit(f"the {r['seconds']} s run lost packets under valgrind: lower RATE")
(t0, s0), (t1, s1) = blocks(short["dhat"]), blocks(long_["dhat"])
# Every packet a client sends comes back from its echo peer: half of them each way.
packets = long_["load"]["sent"] - short["load"]["sent"]
mode, sessions, size, rate = sys.argv[2:6]
shape = f"paced {rate} pkt/s" if mode == "open" else "closed"
print(f"tern over TLS ({long_['load']['tls']}), {shape}, {sessions} sessions, {size} B: "
      f"runs of {short['seconds']} s and {long_['seconds']} s under DHAT\n")
print("| | short run | long run | per packet (difference) |")
print("|---|---:|---:|---:|")
print(f"| packets into the server (half each way) | {short['load']['sent']:,} | {long_['load']['sent']:,} | |")
print(f"| heap allocations, all, per packet either way | {t0:,} | {t1:,} | {(t1 - t0) / packets:.3f} |")
for k in SITES:
    print(f"| … rustls, record {k} | {s0[k]:,} | {s1[k]:,} | {(s1[k] - s0[k]) / (packets / 2):.3f} |")
EOF
