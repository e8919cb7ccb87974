#!/usr/bin/env bash
# Soak: a release tern on loopback under churn, relay load, reloads, garbage and pool
# exhaustion, in rounds, with RSS, open files, free relay ports and allocations sampled every
# second; fails unless everything returns to its baseline after each round (see
# benches/src/bin/tern-soak.rs for the load and the checks). Bounded: ROUNDS x (ROUND_SECONDS
# + at most SETTLE_SECONDS), and tern is stopped on exit.
#
#   benches/soak.sh                      # CI's short run: 2 rounds of 40 s, about 2 minutes
#   ROUNDS=6 ROUND_SECONDS=300 benches/soak.sh   # the README's 30-minute run
#
# Env: ROUNDS (2), ROUND_SECONDS (40), SETTLE_SECONDS (40), RELAY_RATE (2000 packets/s),
# LIFETIME (max-allocate-lifetime, permission-lifetime and channel-lifetime of the soaked tern,
# 20 s: abandoned allocations, and the timers of every permission and channel, must expire
# within a settle), PORT (the listening port, 28478; admin PORT+1, relay ports PORT+22 ..
# PORT+221, all below Linux's ephemeral range, which the clients use), OUT (directory for
# soak.csv, tern.log and the report; default target/soak). The machine runs nothing else
# heavy meanwhile, or the relay load's losses mean little (they are reported, not judged).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=${ROUNDS:-2}
ROUND_SECONDS=${ROUND_SECONDS:-40}
SETTLE_SECONDS=${SETTLE_SECONDS:-40}
RELAY_RATE=${RELAY_RATE:-2000}
LIFETIME=${LIFETIME:-20}
PORT=${PORT:-28478}
OUT=${OUT:-$ROOT/target/soak}
ADMIN=$((PORT + 1))
MIN_PORT=$((PORT + 22))
MAX_PORT=$((PORT + 221))
SECRET=soak-secret-$RANDOM$RANDOM

# tern as the container image builds it: with jemalloc (crates/tern/src/memory.rs; SOAK_FEATURES=""
# soaks the default build, glibc's malloc trimmed every 10 s).
cargo build --release -q -p tern -p tern-bench --bin tern --bin tern-soak --features "${SOAK_FEATURES-tern/jemalloc}"
mkdir -p "$OUT"
CONF=$OUT/turnserver.conf
# A configuration file, so that SIGHUP has something to reload.
cat > "$CONF" <<EOF
listening-ip=127.0.0.1
listening-port=$PORT
relay-ip=127.0.0.1
min-port=$MIN_PORT
max-port=$MAX_PORT
use-auth-secret
static-auth-secret=$SECRET
realm=soak.test
allow-loopback-peers
# Every soak client comes from 127.0.0.1, a thousand Allocates a second: the per-source limit
# on unauthenticated answers (tests/tests/floods.rs covers it) would drop most of their 401s.
unauthorized-ratelimit=false
max-allocate-lifetime=$LIFETIME
permission-lifetime=$LIFETIME
channel-lifetime=$LIFETIME
admin-listen=127.0.0.1:$ADMIN
relay-threads=2
EOF

target/release/tern serve -c "$CONF" > "$OUT/tern.log" 2>&1 &
TERN=$!
cleanup() { kill "$TERN" 2>/dev/null || true; wait "$TERN" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do
    grep -qs "admin port listening" "$OUT/tern.log" && break
    kill -0 "$TERN" 2>/dev/null || { cat "$OUT/tern.log"; echo "tern exited at start" >&2; exit 1; }
    sleep 0.1
done
sleep 0.5

status=0
target/release/tern-soak --server "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN" --pid "$TERN" \
    --secret "$SECRET" --relay-ports "$MIN_PORT-$MAX_PORT" --rounds "$ROUNDS" \
    --round-seconds "$ROUND_SECONDS" --settle-seconds "$SETTLE_SECONDS" --quiet-seconds "$((LIFETIME + 3))" --relay-rate "$RELAY_RATE" \
    --csv "$OUT/soak.csv" ${PARTS:+--parts "$PARTS"} | tee "$OUT/report.txt" || status=$?
if ! kill -0 "$TERN" 2>/dev/null; then
    echo "FAIL tern exited during the soak; its log: $OUT/tern.log" | tee -a "$OUT/report.txt"
    status=1
fi
# Log volume: at the default level tern logs each allocation's start and end, and nothing per
# packet or per refused request; garbage must not show in the log.
lines=$(wc -l < "$OUT/tern.log")
other=$(grep -cv -e "allocation created" -e "allocation ended" "$OUT/tern.log" || true)
echo "tern logged $lines lines at its default level, $other of them not an allocation's start or end (samples: $OUT/soak.csv)" | tee -a "$OUT/report.txt"
if (( other > 100 + 2 * ROUNDS * ROUND_SECONDS )); then
    echo "FAIL tern logged $other lines besides allocations: something is logged per packet or per request" | tee -a "$OUT/report.txt"
    status=1
fi
exit "$status"
