#!/usr/bin/env bash
# Runs the tern image for real and relays through it (CI runs this as root).
#
# 1. builds the image from a static binary (docker/build-local.sh);
# 2. creates a network namespace playing the outside world: a client address and a peer
#    address on a veth whose host end carries the "public" address the ports are published
#    on (nothing is published on the host's real interfaces or on 127.0.0.1, where Docker's
#    userland proxy would source-NAT every datagram);
# 3. `docker run -p PUBLIC:3478:3478/udp -p PUBLIC:3478:3478/tcp -p PUBLIC:5349:5349/tcp
#    -p PUBLIC:49152-49252:49152-49252/udp`, read-only root, all capabilities dropped,
#    configuration from a mounted turnserver.conf plus TERN_* variables, and a throwaway
#    certificate (openssl: a CA and a leaf for 127.0.0.1, PUBLIC and localhost) in a
#    directory laid out as the kubelet lays out a mounted Secret (tls.crt -> ..data/tls.crt,
#    ..data -> a timestamped directory), mounted read-only, which turns TLS on;
# 4. `tern probe --secret` from the namespace: Allocate, permission, Send/Data, ChannelBind,
#    ChannelData both ways, through Docker's DNAT into the container, over UDP, TCP, TLS on
#    5349 (checked against the test CA, by IP and by name) and TLS on 3478; then coturn's
#    turnutils_uclient, an independent client, relays through it too over UDP, TCP and TLS
#    (if installed);
# 4b. the certificate is renewed as Kubernetes renews a Secret (a new timestamped directory,
#    ..data swapped by rename): within seconds tern serves the new certificate, no restart;
# 5. without TERN_EXTERNAL_IP, tern warns at start that it would advertise the container's
#    bridge address, and says how to fix it; with it, there is no such warning;
# 6. `docker stop` must end the container well within its grace period, with exit code 0.
#
# Everything it creates (container, namespace, veth) is removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

run_id="$$"
tag="tern:local"
name="tern-ci-$run_id"
ns="terndk$run_id"
veth_host="tdh$run_id"
veth_ns="tdc$run_id"
octet=$(( (run_id % 200) + 20 ))
public="10.251.$octet.1"
client="10.251.$octet.2"
peer="10.251.$octet.3"
secret="ci-secret-$run_id-$RANDOM"
conf_dir="$(mktemp -d)"

cleanup() {
    docker rm -f "$name" "$name-noext" >/dev/null 2>&1 || true
    ip netns del "$ns" 2>/dev/null || true
    ip link del "$veth_host" 2>/dev/null || true
    rm -rf "$conf_dir"
}
trap cleanup EXIT

fail() { echo "docker test: FAIL: $*" >&2; docker logs "$name" 2>&1 | tail -30 >&2 || true; exit 1; }

# make_pki DIR: a throwaway CA and a leaf it signs for 127.0.0.1, $public and localhost;
# cert.pem holds the full chain (leaf, then CA), as tern's cert= expects.
make_pki() {
    local dir="$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
        -subj "/CN=tern docker test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "$dir/key.pem" -out "$dir/leaf.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:%s,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
        "$public" > "$dir/leaf.ext"
    openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 90 -extfile "$dir/leaf.ext" -out "$dir/leaf.pem" 2>/dev/null
    cat "$dir/leaf.pem" "$dir/ca.pem" > "$dir/cert.pem"
    rm -f "$dir/ca.key" "$dir/leaf.csr" "$dir/leaf.ext" "$dir/ca.srl"
}

size=$(docker/build-local.sh "$tag" | tail -1)
echo "docker test: image $tag is $size bytes ($(( size / 1024 )) KiB)"
[ "$(docker image inspect -f '{{.Config.User}}' "$tag")" = "65532:65532" ] || fail "image does not run as 65532:65532"

ip netns add "$ns" || fail "cannot create a network namespace (needs root): ip netns add $ns"
ip link add "$veth_host" type veth peer name "$veth_ns"
ip link set "$veth_ns" netns "$ns"
ip addr add "$public/24" dev "$veth_host"
ip link set "$veth_host" up
ip -n "$ns" addr add "$client/24" dev "$veth_ns"
ip -n "$ns" addr add "$peer/24" dev "$veth_ns"
ip -n "$ns" link set "$veth_ns" up
ip -n "$ns" link set lo up

cat > "$conf_dir/turnserver.conf" <<CONF
# mounted read-only at /etc/tern/turnserver.conf
realm=ci.tern.test
listening-port=3478
min-port=49152
max-port=49252
fingerprint
# the client and peer of this test live in a private range
allowed-peer-ip=10.251.$octet.0/24
drain-timeout=5
# turnutils_uclient picks channel numbers in RFC 5766's 0x4000-0x7FFF
rfc5766-channel-numbers
# TLS: the test certificate, mounted read-only at /etc/tern/tls as a Secret would be
tls-listening-port=5349
cert=/etc/tern/tls/tls.crt
pkey=/etc/tern/tls/tls.key
CONF
chmod 0644 "$conf_dir/turnserver.conf"
chmod 0755 "$conf_dir"

# secret_version N: PKI number N (pki-N/ca.pem for the client) published in secret/ the
# kubelet's way: files in ..vN, ..data -> ..vN swapped by an atomic rename, and tls.crt and
# tls.key linking through ..data.
secret_dir="$conf_dir/secret"
secret_version() {
    local n="$1"
    mkdir -p "$conf_dir/pki-$n" "$secret_dir/..v$n"
    make_pki "$conf_dir/pki-$n"
    cp "$conf_dir/pki-$n/cert.pem" "$secret_dir/..v$n/tls.crt"
    cp "$conf_dir/pki-$n/key.pem" "$secret_dir/..v$n/tls.key"
    # The container runs as 65532; the throwaway key must be readable by it.
    chmod 0755 "$secret_dir" "$secret_dir/..v$n"
    chmod 0644 "$secret_dir/..v$n/"*
    ln -sfn "..v$n" "$secret_dir/..data_tmp"
    mv -T "$secret_dir/..data_tmp" "$secret_dir/..data"
    ln -sfn ..data/tls.crt "$secret_dir/tls.crt"
    ln -sfn ..data/tls.key "$secret_dir/tls.key"
}
secret_version 1
ca="$conf_dir/pki-1/ca.pem"

docker run -d --name "$name" \
    --read-only --cap-drop ALL --security-opt no-new-privileges \
    -p "$public:3478:3478/udp" -p "$public:3478:3478/tcp" -p "$public:5349:5349/tcp" \
    -p "$public:49152-49252:49152-49252/udp" \
    -v "$conf_dir/turnserver.conf:/etc/tern/turnserver.conf:ro" \
    -v "$secret_dir:/etc/tern/tls:ro" \
    -e TERN_STATIC_AUTH_SECRET="$secret" -e TERN_EXTERNAL_IP="$public" \
    "$tag" -c /etc/tern/turnserver.conf >/dev/null || fail "docker run"

# Wait (bounded) until the admin port inside the container says ready, via the probe's
# plain STUN Binding from the namespace.
bin="target/docker-context/tern"
ready=""
for _ in $(seq 1 50); do
    if ip netns exec "$ns" "$bin" probe "$public:3478" --timeout 0.2 >/dev/null 2>&1; then
        ready=1; break
    fi
    [ "$(docker inspect -f '{{.State.Running}}' "$name")" = "true" ] || fail "container exited"
    sleep 0.2
done
[ -n "$ready" ] || fail "no STUN answer from the container within 10 s"

# probe WHAT ARGS...: tern probe from the namespace, relaying to a peer there.
probe() {
    local what="$1"; shift
    echo "docker test: tern probe through the container, $what"
    ip netns exec "$ns" "$bin" probe "$@" --secret "$secret" --peer-bind "$peer" --timeout 2 \
        || fail "tern probe could not relay through the container, $what"
}
probe "UDP 3478" "$public:3478"
probe "TCP 3478" "$public:3478" --transport tcp
probe "TLS 5349, certificate checked for the IP" "$public:5349" --transport tls --ca "$ca"
probe "TLS 5349, SNI and certificate for localhost" "$public:5349" --transport tls \
    --ca "$ca" --tls-name localhost
probe "TLS on 3478 (told from plain TCP by its first byte)" "$public:3478" --transport tls \
    --ca "$ca"
# The certificate is checked: without the test CA the handshake must fail.
if ip netns exec "$ns" "$bin" probe "$public:5349" --transport tls --secret "$secret" \
    --peer-bind "$peer" --timeout 2 >/dev/null 2>&1; then
    fail "tern probe over TLS trusted the test certificate without --ca"
fi

echo "docker test: the certificate is renewed the way the kubelet updates a mounted Secret"
secret_version 2
rm -rf "$secret_dir/..v1"
renewed=""
for _ in $(seq 1 40); do
    if ip netns exec "$ns" "$bin" probe "$public:5349" --transport tls --ca "$conf_dir/pki-2/ca.pem" \
        --timeout 0.5 >/dev/null 2>&1; then
        renewed=1; break
    fi
    sleep 0.25
done
[ -n "$renewed" ] || fail "tern did not serve the renewed certificate within 10 s"
probe "TLS 5349 with the renewed certificate" "$public:5349" --transport tls --ca "$conf_dir/pki-2/ca.pem"
if ip netns exec "$ns" "$bin" probe "$public:5349" --transport tls --ca "$ca" --timeout 1 >/dev/null 2>&1; then
    fail "tern still serves the old certificate after the renewal"
fi
ca="$conf_dir/pki-2/ca.pem"

# uclient WHAT ARGS...: coturn's turnutils_uclient from the namespace, 2 clients x 20 messages
# to a turnutils_peer there; ARGS pick the transport (none: UDP, -t: TCP, -t -S: TLS) and port.
uclient() {
    local what="$1"; shift
    echo "docker test: coturn's turnutils_uclient through the container, $what"
    ip netns exec "$ns" timeout 10 turnutils_peer -L "$peer" -p 3480 >/dev/null 2>&1 &
    local peer_pid=$!
    sleep 0.3
    # -W derives REST credentials from the secret; -c: one allocation per client.
    local out lost recv
    out=$(ip netns exec "$ns" timeout 20 turnutils_uclient -n 20 -m 2 -l 100 -c "$@" \
        -u ci -W "$secret" -e "$peer" -r 3480 "$public" 2>&1) || true
    kill "$peer_pid" 2>/dev/null || true
    wait "$peer_pid" 2>/dev/null || true
    echo "$out" | grep -E 'Total (transmit|receive)|lost packets' || true
    lost=$(echo "$out" | sed -n 's/.*Total lost packets \([0-9]*\).*/\1/p' | tail -1)
    recv=$(echo "$out" | sed -n 's/.*tot_recv_msgs=\([0-9]*\).*/\1/p' | tail -1)
    if [ -z "$recv" ] || [ "$recv" -ne 40 ] || [ "${lost:-1}" -ne 0 ]; then
        echo "$out" | tail -20 >&2
        fail "turnutils_uclient ($what) did not get its 40 messages back through the container"
    fi
    echo "docker test: turnutils_uclient ($what) received $recv messages, lost ${lost:-?}"
}
if command -v turnutils_uclient >/dev/null && command -v turnutils_peer >/dev/null; then
    uclient "UDP 3478"
    uclient "TCP 3478" -t
    uclient "TLS 5349" -t -S -p 5349
elif [ -n "${CI:-}" ]; then
    fail "turnutils_uclient/turnutils_peer (coturn) missing, and CI is set"
else
    echo "docker test: NOTE: turnutils_uclient/turnutils_peer (coturn) missing: skipped the uclient runs"
fi

echo "docker test: without TERN_EXTERNAL_IP, the start-up warning names the bridge address"
docker run -d --name "$name-noext" --read-only --cap-drop ALL --security-opt no-new-privileges \
    -e TERN_STATIC_AUTH_SECRET="$secret" -e TERN_MIN_PORT=49152 -e TERN_MAX_PORT=49153 \
    "$tag" >/dev/null || fail "docker run without TERN_EXTERNAL_IP"
bridge=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$name-noext")
[ -n "$bridge" ] || fail "the second container has no bridge address"
warned=""
for _ in $(seq 1 50); do
    noext_logs=$(docker logs "$name-noext" 2>&1)
    if grep -q "not publicly routable" <<<"$noext_logs"; then warned=1; break; fi
    sleep 0.2
done
[ -n "$warned" ] || fail "no warning about the relayed address without TERN_EXTERNAL_IP: $noext_logs"
warning=$(grep "not publicly routable" <<<"$noext_logs")
echo "docker test: $warning"
for part in "$bridge" "bridge address" "TERN_EXTERNAL_IP" "external-ip=PUBLIC"; do
    grep -qF -- "$part" <<<"$warning" || fail "the warning does not say \"$part\": $warning"
done
docker rm -f "$name-noext" >/dev/null
logs=$(docker logs "$name" 2>&1)
if grep -q "not publicly routable" <<<"$logs"; then
    fail "the warning appeared although TERN_EXTERNAL_IP is set"
fi

echo "docker test: docker stop (grace period 10 s; tern's drain-timeout is 5 s)"
start=$(date +%s%N)
docker stop -t 10 "$name" >/dev/null
stop_ms=$(( ($(date +%s%N) - start) / 1000000 ))
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
finished=$(date -d "$(docker inspect -f '{{.State.FinishedAt}}' "$name")" +%s%N)
exit_ms=$(( (finished - start) / 1000000 ))
# `docker stop` itself returns later than the process exits: Docker then tears down one
# userland proxy per published port (about 6 s for 102 ports here).
echo "docker test: tern exited ${exit_ms} ms after docker stop began, exit code $code (docker stop returned after ${stop_ms} ms)"
[ "$code" = "0" ] || fail "exit code $code after docker stop (137 means SIGKILL: SIGTERM was not handled)"
[ "$exit_ms" -lt 9000 ] || fail "tern took ${exit_ms} ms to exit: the grace period, not tern, ended it"
# The log is read whole first: with pipefail, `docker logs | grep -q` fails whenever grep
# exits at the match before docker logs has written everything (SIGPIPE).
logs=$(docker logs "$name" 2>&1)
grep -q 'signal="SIGTERM"' <<<"$logs" || fail "the log does not show the SIGTERM drain"
echo "docker test: ok"
