"""tern behind a 1:1 NAT, two aiortc clients behind their own NATs, in network namespaces.

    cliA 10.0.1.2 -- natA (masquerade: endpoint-independent) 198.51.100.2 --+
    cliB 10.0.2.2 -- natB (masquerade random,fully-random: symmetric) 203.0.113.2 --+-- inet (router)
    peer 198.18.0.2 (a public host: the NAT reflectors) -----------------------------+      |
                                                     edge 192.0.2.2 (1:1 NAT, hairpin) -- pub: tern 10.9.0.2

tern binds 10.9.0.2 and runs with --external-ip 192.0.2.2/10.9.0.2, so XOR-RELAYED-ADDRESS
says 192.0.2.2; no client has a route to 10.9.0.0/24, so only the advertised address works.
Checks, in order:
  1. NAT types, from one socket to two reflector ports: natA keeps the port (EIM), natB
     changes it per destination (symmetric).
  2. Direct ICE (STUN via tern, policy all) between cliA and cliB fails within the bound.
  3. Relay-only ICE (TURN via tern) between cliA and cliB works: both select a relay/relay
     pair, every relay candidate is on 192.0.2.2 (never 10.9.0.2), and tern saw the clients
     as the NATs' public addresses.
  3b. The same with headless Chromium as the peer in cliB (browser_peer.py): two independent
     stacks interoperating through tern. Skipped without chromium unless CI is set.
  3c. The same with headless Firefox in cliB, behind the symmetric NAT. Skipped without
     firefox-esr unless CI is set.
  4. Control: natB switched to endpoint-independent masquerade, the same direct attempt works,
     so the failure in 2 was the symmetric NAT.

Needs root (ip netns, nftables). Namespaces are named t6w<pid>-<role>, deleted in `finally`
(and on SIGTERM/SIGINT); leftovers of a killed run (its pid gone) are deleted at start.

  sudo target/webrtc-venv/bin/python tests/webrtc/nat_test.py [--tern target/debug/tern]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from browsers import find_browser
from common import HERE, TestFailure, Tern, credentials, default_tern, kill_group, log
from pair import describe, run_pair

PREFIX = "t6w"
TURN_PUBLIC, TURN_PRIVATE, TURN_PORT = "192.0.2.2", "10.9.0.2", 3478
RELAY_PORTS = range(49152, 49200)
NAT_A_PUBLIC, NAT_B_PUBLIC = "198.51.100.2", "203.0.113.2"
PEER_IP, REFLECT_PORTS = "198.18.0.2", (7001, 7002)
MESSAGES = 20


def sh(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=20, input=input)
    if check and out.returncode != 0:
        raise TestFailure(f"`{' '.join(args)}` failed ({out.returncode}): {out.stderr.strip()}")
    return out


def kill_inside(netns: str) -> None:
    """Ends, by pid, whatever still runs inside one of this test's namespaces (only this test
    starts processes there)."""
    for pid in sh("ip", "netns", "pids", netns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


class Topology:
    ROLES = ("inet", "edge", "pub", "natA", "cliA", "natB", "cliB", "peer")

    def __init__(self) -> None:
        self.run = f"{PREFIX}{os.getpid()}"
        self.ns = {role: f"{self.run}-{role}" for role in self.ROLES}
        self.created: list[str] = []
        self.procs: list[subprocess.Popen] = []

    @staticmethod
    def remove_stale() -> None:
        """Deletes namespaces of earlier runs whose process is gone (a SIGKILLed run)."""
        for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
            name = line.split()[0] if line.strip() else ""
            m = re.fullmatch(rf"{PREFIX}(\d+)-\w+", name)
            if m and not Path(f"/proc/{m[1]}").exists():
                log(f"deleting stale namespace {name} and the processes left in it")
                kill_inside(name)
                sh("ip", "netns", "del", name, check=False)
                shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)

    def x(self, role: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns[role], *args, input=input)

    def link(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str) -> None:
        tmp_a, tmp_b = f"{a_if[:4]}{os.getpid() % 10**6}a", f"{b_if[:4]}{os.getpid() % 10**6}b"
        sh("ip", "link", "add", tmp_a, "netns", self.ns[a], "type", "veth",
           "peer", "name", tmp_b, "netns", self.ns[b])
        for role, tmp, name, addr in ((a, tmp_a, a_if, a_addr), (b, tmp_b, b_if, b_addr)):
            self.x(role, "ip", "link", "set", tmp, "name", name)
            self.x(role, "ip", "addr", "add", addr, "dev", name)
            self.x(role, "ip", "link", "set", name, "up")

    def setup(self) -> None:
        for role in self.ROLES:
            sh("ip", "netns", "add", self.ns[role])
            self.created.append(self.ns[role])
            self.x(role, "ip", "link", "set", "lo", "up")
        for router in ("inet", "edge", "natA", "natB"):
            self.x(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.x(router, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0")
        self.link("inet", "to-edge", "192.0.2.1/24", "edge", "wan", f"{TURN_PUBLIC}/24")
        self.link("edge", "lan", "10.9.0.1/24", "pub", "eth0", f"{TURN_PRIVATE}/24")
        self.link("inet", "to-natA", "198.51.100.1/24", "natA", "wan", f"{NAT_A_PUBLIC}/24")
        self.link("natA", "lan", "10.0.1.1/24", "cliA", "eth0", "10.0.1.2/24")
        self.link("inet", "to-natB", "203.0.113.1/24", "natB", "wan", f"{NAT_B_PUBLIC}/24")
        self.link("natB", "lan", "10.0.2.1/24", "cliB", "eth0", "10.0.2.2/24")
        self.link("inet", "to-peer", "198.18.0.1/24", "peer", "eth0", f"{PEER_IP}/24")
        for role, gw in (("edge", "192.0.2.1"), ("pub", "10.9.0.1"), ("natA", "198.51.100.1"),
                         ("cliA", "10.0.1.1"), ("natB", "203.0.113.1"), ("cliB", "10.0.2.1"),
                         ("peer", "198.18.0.1")):
            self.x(role, "ip", "route", "add", "default", "via", gw)
        # tern's 1:1 NAT, as a cloud gives a VM a public address: DNAT in, SNAT out, and the
        # SNAT also applies to hairpinned packets (relay to relay), so a relay port is seen
        # by the other relay port as 192.0.2.2, the address its permission names.
        self.x("edge", "nft", "-f", "-", input=f"""
table ip nat {{
  chain pre {{ type nat hook prerouting priority dstnat; policy accept; ip daddr {TURN_PUBLIC} dnat to {TURN_PRIVATE}; }}
  chain post {{ type nat hook postrouting priority srcnat; policy accept; ip saddr {TURN_PRIVATE} snat to {TURN_PUBLIC}; }}
}}""")
        self.set_masquerade("natA", symmetric=False)
        self.set_masquerade("natB", symmetric=True)

    def set_masquerade(self, role: str, symmetric: bool) -> None:
        """Linux masquerade keeps a flow's source port when it can (endpoint-independent
        mapping); with random,fully-random every new flow gets a random port (symmetric).
        Filtering is conntrack's: only answers to flows seen leaving come back in. Unsolicited
        packets from the WAN are dropped in `input`, as home routers do; otherwise each one
        would leave a conntrack entry that makes the NAT pick another port for the outgoing
        flow it clashes with, and hole punching would fail even behind this cone NAT."""
        flags = " random,fully-random" if symmetric else ""
        self.x(role, "nft", "flush", "ruleset")
        self.x(role, "nft", "-f", "-", input=f"""
table ip nat {{
  chain post {{ type nat hook postrouting priority srcnat; policy accept; oifname "wan" masquerade{flags}; }}
}}
table ip filter {{
  chain input {{ type filter hook input priority filter; policy accept; iifname "wan" ct state new,invalid drop; }}
}}""")

    def spawn(self, role: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[role], *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def hosts(self, role: str, names: dict[str, str]) -> None:
        """Host names that resolve inside `role`'s namespace: `ip netns exec` bind-mounts
        /etc/netns/<namespace>/hosts over /etc/hosts. Removed by teardown."""
        etc = Path("/etc/netns") / self.ns[role]
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text("127.0.0.1 localhost\n" +
                                   "".join(f"{ip} {name}\n" for name, ip in names.items()))

    def teardown(self) -> None:
        for proc in self.procs:
            kill_group(proc)
        for name in reversed(self.created):
            kill_inside(name)
            sh("ip", "netns", "del", name, check=False)
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
        left = [n for n in self.created if n in sh("ip", "netns", "list", check=False).stdout]
        if left:
            log(f"WARNING: namespaces left behind: {left}")
        self.created.clear()


def nat_types(topo: Topology) -> dict:
    reflector = topo.spawn("peer", sys.executable, str(HERE / "nat_probe.py"), "reflect", "--bind", PEER_IP,
                           *sum((["--port", str(p)] for p in REFLECT_PORTS), []), "--lifetime", "30")
    line = reflector.stdout.readline().strip()
    if line != "ready":
        raise TestFailure(f"the NAT reflector did not start: {line}")
    seen = {}
    for client, nat_public in (("cliA", NAT_A_PUBLIC), ("cliB", NAT_B_PUBLIC)):
        out = topo.x(client, sys.executable, str(HERE / "nat_probe.py"), "probe",
                     *sum((["--to", f"{PEER_IP}:{p}"] for p in REFLECT_PORTS), []))
        mapped = json.loads(out.stdout)["mapped"]
        if any(m is None or not m.startswith(nat_public + ":") for m in mapped):
            raise TestFailure(f"{client}: the reflectors saw {mapped}, expected {nat_public}:*")
        seen[client] = mapped
    kill_group(reflector)
    a_ports = {m.split(":")[1] for m in seen["cliA"]}
    b_ports = {m.split(":")[1] for m in seen["cliB"]}
    if len(a_ports) != 1:
        raise TestFailure(f"natA should map endpoint-independently, but one socket was seen as {seen['cliA']}")
    if len(b_ports) != 2:
        raise TestFailure(f"natB should be symmetric, but one socket was seen as {seen['cliB']}")
    return seen


def direct(stun: list[dict], timeout: float) -> tuple[dict, dict]:
    return run_pair(stun, stun, "all", offer_ns=TOPO.ns["cliA"], answer_ns=TOPO.ns["cliB"],
                    messages=5, timeout=timeout)


def candidates_of(result: dict, typ: str) -> list[str]:
    return [c for c in result.get("local_candidates", []) if c.startswith(typ + " ")]


def check_relay_only(off: dict, ans: dict, what: str) -> None:
    """Both peers completed on a relay/relay pair, and every candidate either side gathered
    or received is a relay candidate on tern's external-ip and relay range."""
    for r in (off, ans):
        pair = r.get("selected_pair")
        if not r.get("ok") or not pair:
            raise TestFailure(f"{what}: relay-only ICE through tern failed:\n{describe(off)}\n{describe(ans)}")
        for c in [pair["local"], pair["remote"]] + r.get("local_candidates", []) + r.get("remote_candidates", []):
            typ, _, hostport = c.split(" ")
            host, port = hostport.rsplit(":", 1)
            if typ != "relay" or host != TURN_PUBLIC or int(port) not in RELAY_PORTS:
                raise TestFailure(f"{what}: {r['role']}er: candidate {c!r} is not a relay candidate on the "
                                  f"external-ip {TURN_PUBLIC}:{RELAY_PORTS.start}-{RELAY_PORTS.stop - 1}")


def seen_from(tern: Tern, expected: list[tuple[str, str]]) -> None:
    """tern logged an allocation for each username, from the given NAT's public address."""
    tern.require_allocations([user for user, _ in expected])
    created = [l for l in tern.log_text().splitlines() if "allocation created" in l]
    for user, nat_public in expected:
        if not any(f"client={nat_public}:" in l and user in l for l in created):
            raise TestFailure(f"tern did not see {user} as coming from {nat_public}: {created}")


TOPO: Topology


def main() -> int:
    global TOPO
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tern", type=Path, default=default_tern())
    p.add_argument("--direct-timeout", type=float, default=12.0,
                   help="seconds the direct attempt behind the symmetric NAT gets before it counts as failed")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("FAIL nat_test needs root (ip netns, nftables)", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        raise SystemExit(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    Topology.remove_stale()
    TOPO = topo = Topology()
    tern = None
    off = ans = None
    try:
        log(f"namespaces {topo.run}-*: tern {TURN_PRIVATE} (public {TURN_PUBLIC}), cliA behind natA "
            f"{NAT_A_PUBLIC} (EIM), cliB behind natB {NAT_B_PUBLIC} (symmetric)")
        topo.setup()
        seen = nat_types(topo)
        log(f"1. NAT types: cliA seen as {seen['cliA']} (same port: endpoint-independent), "
            f"cliB seen as {seen['cliB']} (port per destination: symmetric)")

        secret, realm = secrets.token_hex(16), "nat.test"
        tern = Tern(args.tern, TURN_PRIVATE, TURN_PORT, RELAY_PORTS.start, RELAY_PORTS.stop - 1,
                    secret, realm, extra=["--external-ip", f"{TURN_PUBLIC}/{TURN_PRIVATE}"],
                    netns=topo.ns["pub"], admin="127.0.0.1:9641")
        stun = [{"urls": [f"stun:{TURN_PUBLIC}:{TURN_PORT}"]}]

        off, ans = direct(stun, args.direct_timeout)
        if off.get("ok") or ans.get("ok") or off.get("round_trips"):
            raise TestFailure("2. direct ICE between cliA and cliB worked behind the symmetric NAT:\n"
                              + describe(off) + "\n" + describe(ans))
        srflx_a, srflx_b = candidates_of(off, "srflx"), candidates_of(ans, "srflx")
        if not srflx_a or not srflx_b:
            raise TestFailure("2. the direct attempt gathered no server-reflexive candidates via tern's "
                              f"STUN, so it proves nothing: A {off.get('local_candidates')}, "
                              f"B {ans.get('local_candidates')}")
        log(f"2. direct (policy all, STUN via tern) failed as expected within {args.direct_timeout:.0f} s: "
            f"A gathered {srflx_a}, B gathered {srflx_b}; ICE states A {off.get('ice_states')}, "
            f"B {ans.get('ice_states')}")

        uri = f"turn:{TURN_PUBLIC}:{TURN_PORT}"
        cred_a = credentials(args.tern, secret, "nat-a", uri)
        cred_b = credentials(args.tern, secret, "nat-b", uri)
        off, ans = run_pair([cred_a], [cred_b], "relay", offer_ns=topo.ns["cliA"],
                            answer_ns=topo.ns["cliB"], messages=MESSAGES, timeout=30)
        check_relay_only(off, ans, "3. aiortc (cliA) to aiortc (cliB)")
        seen_from(tern, [(cred_a["username"], NAT_A_PUBLIC), (cred_b["username"], NAT_B_PUBLIC)])
        relay_pairs = (off["selected_pair"], ans["selected_pair"])
        browser_notes = []
        log(f"3. relay-only through tern: {off['round_trips']} round trips, median {off.get('rtt_ms_median')} ms; "
            f"A pair {off['selected_pair']}, B pair {ans['selected_pair']}; tern saw the clients as "
            f"{NAT_A_PUBLIC} and {NAT_B_PUBLIC}")

        for step, kind in (("3b", "chromium"), ("3c", "firefox")):
            browser = find_browser(kind)
            if not browser:
                if os.environ.get("CI"):
                    raise TestFailure(f"{step}. {kind} not found (CI is set, so this is a failure)")
                log(f"{step}. SKIPPED: {kind} not found, no aiortc-to-{kind} run behind the NATs")
                continue
            cred_c = credentials(args.tern, secret, f"nat-{kind}", uri)
            off, ans = run_pair([cred_a], [cred_c], "relay", offer_ns=topo.ns["cliA"],
                                answer_ns=topo.ns["cliB"], messages=MESSAGES, timeout=30,
                                answer_script="browser_peer.py", answer_args=["--browser", kind])
            check_relay_only(off, ans, f"{step}. aiortc (cliA) to {browser.name} (cliB, symmetric NAT)")
            seen_from(tern, [(cred_c["username"], NAT_B_PUBLIC)])
            version = browser.short_version
            browser_notes.append(f"aiortc to {version} behind the symmetric NAT ({browser.name} pair "
                                 f"{ans['selected_pair']})")
            log(f"{step}. aiortc in cliA to {version} in cliB, relay-only through tern: "
                f"{off['round_trips']} round trips; aiortc pair {off['selected_pair']}, "
                f"{browser.name} pair {ans['selected_pair']}")

        topo.set_masquerade("natB", symmetric=False)
        off, ans = direct(stun, 20)
        if not (off.get("ok") and ans.get("ok")):
            raise TestFailure("4. control: with natB endpoint-independent, direct ICE should work but did "
                              f"not, so the direct check in 2 proves nothing:\n{describe(off)}\n{describe(ans)}")
        log(f"4. control: natB endpoint-independent, direct works: A pair {off['selected_pair']}, "
            f"B pair {ans['selected_pair']}")
        print(f"PASS NAT topology: direct ICE fails behind the symmetric NAT; relay-only through tern "
              f"(external-ip {TURN_PUBLIC}/{TURN_PRIVATE}) works, aiortc to aiortc (A pair {relay_pairs[0]}, "
              f"B pair {relay_pairs[1]}){''.join(', ' + n for n in browser_notes)}; control: direct works once natB is "
              f"endpoint-independent")
        return 0
    except TestFailure as e:
        print(f"FAIL {e}", file=sys.stderr)
        if tern:
            print(tern.diagnosis(), file=sys.stderr)
        return 1
    finally:
        if tern:
            tern.stop()
        topo.teardown()


if __name__ == "__main__":
    sys.exit(main())
