#!/usr/bin/env bash
# Records real client traffic for the fuzz seeds: coturn's turnutils_uclient (channels, then
# Send indications), turnutils_stunclient and two aiortc peers (if target/webrtc-venv, or
# TERN_WEBRTC_PYTHON, exists) talk to tern through tools/record.py on loopback.
# The recordings land in $1 (default: target/fuzz-recordings); pick.py copies a varied few
# into seeds/. Needs target/debug/tern (cargo build -p tern) and coturn's turnutils_* tools.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-target/fuzz-recordings}"
rm -rf "$out"
mkdir -p "$out"
tern=target/debug/tern
listen=34782 front=34781 peer=34790
"$tern" serve -n --listening-ip=127.0.0.1 --listening-port=$listen --relay-ip=127.0.0.1 \
    --min-port=35000 --max-port=35100 --realm=tern.test --use-auth-secret \
    --static-auth-secret=fuzz-seed-secret --allow-loopback-peers --rfc5766-channel-numbers \
    --admin-listen=127.0.0.1:34799 --no-tcp >"$out/tern.log" 2>&1 &
tern_pid=$!
turnutils_peer -L 127.0.0.1 -p $peer >/dev/null 2>&1 &
peer_pid=$!
trap 'kill $tern_pid $peer_pid 2>/dev/null || true' EXIT
sleep 1
record() { # name, then the client's command line
    local name=$1
    shift
    python3 fuzz/tools/record.py $front $listen "$out/$name" 40 &
    local rec=$!
    sleep 0.5
    timeout 35 "$@" >"$out/$name.log" 2>&1 || true
    sleep 0.5
    kill $rec 2>/dev/null || true
    wait $rec 2>/dev/null || true
}
uclient=(turnutils_uclient -p $front -e 127.0.0.1 -r $peer -n 5 -m 1 -l 60 -u fuzz -W fuzz-seed-secret -c)
record uclient-channels "${uclient[@]}" 127.0.0.1
record uclient-send "${uclient[@]}" -s 127.0.0.1
record stunclient turnutils_stunclient -p $front 127.0.0.1
# aiortc (the e2e suites' WebRTC stack), two relay-only peers, when its venv is there.
venv=${TERN_WEBRTC_PYTHON:-target/webrtc-venv/bin/python}
if [ -x "$venv" ]; then
    record aiortc "$venv" fuzz/tools/aiortc_pair.py "$tern" $front
fi
python3 fuzz/tools/pick.py "$out" fuzz/seeds
