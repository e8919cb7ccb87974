#!/usr/bin/env bash
# Imitates what kube-proxy (and the CNI) do for a LoadBalancer Service in front of tern, with
# network namespaces and iptables, and shows which forwarding keeps TURN working.
#
#   client ns  the TURN client 203.0.113.2 and the peer 203.0.113.3 ("the internet")
#      |  veth
#   node ns    203.0.113.1 outside, 10.244.7.1 toward the pod; forwards; kube-proxy's DNAT of
#      |  veth  the load balancer's address LB=198.51.100.80 (MetalLB-style: not the node's)
#   pod ns     10.244.7.10: `tern serve` with external-ip=<the advertised address>
#
# kube-proxy DNATs LB:3478 (UDP and TCP) and LB:49152-49252 to the pod, same ports
# (port == targetPort).
# Each variant gets fresh namespaces (and so a fresh conntrack table) and a fresh tern:
#
#   local          externalTrafficPolicy Local: DNAT only; the pod's relay traffic leaves
#                  with the LB address (an egress SNAT rule for the relay ports, what an
#                  egress gateway does). tern probe must pass every step, over UDP and
#                  over TCP (TURN over TCP through the Service's TCP port).
#   local-node-ip  Local with the node's own address as the load balancer's (k3s ServiceLB,
#                  a NAT port-forward to the node): the CNI's usual masquerade is enough.
#                  tern probe must pass every step, over UDP and over TCP.
#   local-cni      Local, LB address != node address, and only the CNI's masquerade: the
#                  pod's first datagrams to a peer leave with the node's address, and the
#                  peer's datagrams to LB:port can collide with that conntrack entry.
#                  Informational: the script prints what tern probe reports.
#   cluster        externalTrafficPolicy Cluster: DNAT plus source NAT to the node: tern
#                  sees every client and peer as the node, permissions never match. tern
#                  probe must fail and name the step.
#
# Usage: kube-proxy-netns.sh [TERN_BINARY]   (root; default target/debug/tern)
# Exit 0 only when the variants behave as described. Every namespace it creates is removed
# on exit, also on failure; names are unique per run.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="$(realpath "${1:-target/debug/tern}")"
[ -x "$bin" ] || { echo "kube-proxy-netns: FAIL: no tern binary at $bin" >&2; exit 1; }
command -v iptables >/dev/null || { echo "kube-proxy-netns: FAIL: iptables is not installed" >&2; exit 1; }

id="$$"
lb=198.51.100.80
client=203.0.113.2
peer=203.0.113.3
node_ext=203.0.113.1
node_int=10.244.7.1
pod=10.244.7.10
secret="netns-secret-$id"
workdir="$(mktemp -d)"
server_pid=""
namespaces=()

teardown() {
    if [ -n "$server_pid" ]; then
        kill -INT "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    namespaces=()
}
cleanup() { teardown; rm -rf "$workdir"; }
trap cleanup EXIT

fail() {
    echo "kube-proxy-netns: FAIL: $*" >&2
    [ -f "$workdir/tern.log" ] && tail -20 "$workdir/tern.log" >&2
    exit 1
}

# setup VARIANT: namespaces, links, kube-proxy's and the CNI's rules, tern in the pod.
# Sets $client_ns and $advertised.
setup() {
    local variant="$1" n="$id$2"
    client_ns="kpc$n"; local node_ns="kpn$n" pod_ns="kpp$n"
    for ns in "$client_ns" "$node_ns" "$pod_ns"; do
        if ! ip netns add "$ns" 2>"$workdir/err"; then
            fail "cannot create network namespace $ns ($(cat "$workdir/err")): this test needs root (CAP_NET_ADMIN)"
        fi
        namespaces+=("$ns")
        ip -n "$ns" link set lo up
    done
    ip link add "kc$n" netns "$client_ns" type veth peer name "kn$n" netns "$node_ns"
    ip -n "$client_ns" addr add "$client/24" dev "kc$n"
    ip -n "$client_ns" addr add "$peer/24" dev "kc$n"
    ip -n "$client_ns" link set "kc$n" up
    ip -n "$client_ns" route add "$lb/32" via "$node_ext"
    ip -n "$node_ns" addr add "$node_ext/24" dev "kn$n"
    ip -n "$node_ns" link set "kn$n" up
    ip link add "kp$n" netns "$pod_ns" type veth peer name "ko$n" netns "$node_ns"
    ip -n "$pod_ns" addr add "$pod/24" dev "kp$n"
    ip -n "$pod_ns" link set "kp$n" up
    ip -n "$pod_ns" route add default via "$node_int"
    ip -n "$node_ns" addr add "$node_int/24" dev "ko$n"
    ip -n "$node_ns" link set "ko$n" up
    ip netns exec "$node_ns" sysctl -qw net.ipv4.ip_forward=1

    nat() { ip netns exec "$node_ns" iptables -w 5 -t nat "$@"; }
    advertised="$lb"
    [ "$variant" = local-node-ip ] && advertised="$node_ext"
    # kube-proxy: advertised:port -> pod:port for 3478 and the relay range.
    nat -A PREROUTING -d "$advertised" -p udp --dport 3478 -j DNAT --to-destination "$pod"
    nat -A PREROUTING -d "$advertised" -p tcp --dport 3478 -j DNAT --to-destination "$pod"
    nat -A PREROUTING -d "$advertised" -p udp --dport 49152:49252 -j DNAT --to-destination "$pod"
    case "$variant" in
        cluster)
            # Cluster: kube-proxy also masquerades what it forwards to the pod.
            nat -A POSTROUTING -d "$pod" -o "ko$n" -j MASQUERADE
            nat -A POSTROUTING -s "$pod" -p udp --sport 49152:49252 -o "kn$n" -j SNAT --to-source "$lb" ;;
        local)
            # An egress gateway: relay traffic from the pod leaves with the LB address.
            nat -A POSTROUTING -s "$pod" -p udp --sport 49152:49252 -o "kn$n" -j SNAT --to-source "$lb" ;;
    esac
    # The CNI: the pod's other traffic to the outside leaves with the node's address.
    nat -A POSTROUTING -s 10.244.7.0/24 -o "kn$n" -j MASQUERADE

    cat > "$workdir/turnserver.conf" <<CONF
listening-port=3478
min-port=49152
max-port=49252
realm=netns.test
static-auth-secret=$secret
external-ip=$advertised
# client and peer live in documentation ranges, refused by default
allowed-peer-ip=203.0.113.0/24
allowed-peer-ip=10.244.7.0/24
admin-listen=none
relay-threads=1
CONF
    ip netns exec "$pod_ns" "$bin" serve -c "$workdir/turnserver.conf" >"$workdir/tern.log" 2>&1 &
    server_pid=$!
    local up=""
    for _ in $(seq 1 50); do
        if ip netns exec "$client_ns" "$bin" probe "$advertised:3478" --timeout 0.2 >/dev/null 2>&1; then
            up=1; break
        fi
        kill -0 "$server_pid" 2>/dev/null || fail "tern exited at start"
        sleep 0.2
    done
    [ -n "$up" ] || fail "$variant: tern in the pod namespace does not answer a Binding through the node's DNAT"
}

# run VARIANT INDEX [TRANSPORT]: sets up, probes over TRANSPORT (default udp; output in
# $workdir/probe.out), tears down; returns the probe's status.
run() {
    local transport="${3:-udp}"
    echo "== $1 ($transport) =="
    setup "$1" "$2"
    local status=0
    ip netns exec "$client_ns" "$bin" probe "$advertised:3478" --transport "$transport" \
        --secret "$secret" --peer-bind "$peer" --timeout 1 >"$workdir/probe.out" 2>&1 || status=$?
    cat "$workdir/probe.out"
    teardown
    return "$status"
}

index=0
for variant in local local-node-ip; do
    for transport in udp tcp; do
        index=$((index + 1))
        run "$variant" "$index" "$transport" \
            || fail "$variant: tern probe over $transport must pass every step"
        grep -q "the server sees it as $peer:" "$workdir/probe.out" \
            || fail "$variant ($transport): the server must see the peer's own address $peer"
        grep -q "(not the relayed address" "$workdir/probe.out" \
            && fail "$variant ($transport): relayed data must come from the advertised address"
    done
done

if run local-cni 9; then
    echo "(local-cni: passed this time; the collision depends on which side sends first)"
else
    echo "(local-cni: as documented, the CNI's masquerade alone is not enough when the LB address is not the node's)"
fi

if run cluster 7; then
    fail "cluster: tern probe passed: the imitation does not source-NAT"
fi
grep -q "the server sees it as $node_int:" "$workdir/probe.out" \
    || fail "cluster: the server must see the peer as the node ($node_int)"
grep -q '^\[FAIL\]' "$workdir/probe.out" || fail "cluster: tern probe printed no failing step"
grep -q 'rewrites source addresses (source NAT' "$workdir/probe.out" \
    || fail "cluster: tern probe did not diagnose the source NAT"
echo "kube-proxy-netns: ok: Local relays both ways (clients over UDP and TCP); Cluster's source NAT breaks relaying, and tern probe diagnoses it"
