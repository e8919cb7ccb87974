"""A dual-stack tern between an IPv6-only client and an IPv4-only client, in network
namespaces, with documentation prefixes everywhere (RFC 3849, RFC 5737):

    cli6 2001:db8:6::2 (IPv6 only, no IPv4 address) --+
    cli4 198.51.100.2 (IPv4 only, IPv6 disabled) ------+-- inet (router, both families)
    tern 203.0.113.2 and 2001:db8:7::2 ----------------+

tern listens and relays on both of its addresses, with allowed-peer-ip for the clients'
documentation prefixes (refused as peers by default). cli6 reaches tern only over IPv6
(turn:[2001:db8:7::2]:3478), cli4 only over IPv4 (turn:203.0.113.2:3478). Checks, in order:
  1. Both relay-only (iceTransportPolicy relay, aiortc): they reach each other. tern saw cli6
     over IPv6 and cli4 over IPv4, and gave both an IPv4 relayed address (the default family,
     allocation-default-address-family=ipv4): ICE pairs candidates of one family only, so the
     relay/relay pair is IPv4, and the IPv6-only client's data crosses families inside tern.
  2. cli6 relay-only, cli4 with every candidate (policy all): the pair is cli6's relay
     candidate with cli4's host address 198.51.100.2, a documentation address tern reaches as
     a peer only because allowed-peer-ip names it; without it (2b, the control) tern answers
     403 and the same attempt fails.
  3. The same two clients with allocation-default-address-family=keep: cli6 gets an IPv6
     relayed address and cli4 an IPv4 one, no candidate pair exists, and relay-only ICE fails
     (the reason the default is ipv4; the README says when keep is the better choice).

Needs root (ip netns). Namespaces are t6d<pid>-<role>, deleted in `finally` (and on
SIGTERM/SIGINT); leftovers of a killed run are deleted at start.

  sudo target/webrtc-venv/bin/python tests/webrtc/dualstack_test.py [--tern target/debug/tern]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from common import TestFailure, Tern, credentials, default_tern, kill_group, log
from nat_test import kill_inside, sh
from pair import describe, run_pair

PREFIX = "t6d"
TERN4, TERN6, TURN_PORT = "203.0.113.2", "2001:db8:7::2", 3478
CLI4, CLI6 = "198.51.100.2", "2001:db8:6::2"
RELAY_PORTS = range(49152, 49200)
MESSAGES = 20


class Topology:
    ROLES = ("inet", "pub", "cli4", "cli6")

    def __init__(self) -> None:
        self.run = f"{PREFIX}{os.getpid()}"
        self.ns = {role: f"{self.run}-{role}" for role in self.ROLES}
        self.created: list[str] = []

    @staticmethod
    def remove_stale() -> None:
        for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
            name = line.split()[0] if line.strip() else ""
            m = re.fullmatch(rf"{PREFIX}(\d+)-\w+", name)
            if m and not Path(f"/proc/{m[1]}").exists():
                log(f"deleting stale namespace {name} and the processes left in it")
                kill_inside(name)
                sh("ip", "netns", "del", name, check=False)

    def x(self, role: str, *args: str) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns[role], *args)

    def link(self, a: str, a_if: str, b: str, b_if: str) -> None:
        tmp_a, tmp_b = f"{a_if[:4]}{os.getpid() % 10**6}a", f"{b_if[:4]}{os.getpid() % 10**6}b"
        sh("ip", "link", "add", tmp_a, "netns", self.ns[a], "type", "veth",
           "peer", "name", tmp_b, "netns", self.ns[b])
        for role, tmp, name in ((a, tmp_a, a_if), (b, tmp_b, b_if)):
            self.x(role, "ip", "link", "set", tmp, "name", name)
            self.x(role, "ip", "link", "set", name, "up")

    def addr(self, role: str, dev: str, addr: str) -> None:
        # nodad: usable at once, not tentative for a second of duplicate detection.
        extra = ["nodad"] if ":" in addr else []
        self.x(role, "ip", "addr", "add", addr, "dev", dev, *extra)

    def setup(self) -> None:
        for role in self.ROLES:
            sh("ip", "netns", "add", self.ns[role])
            self.created.append(self.ns[role])
            self.x(role, "ip", "link", "set", "lo", "up")
        self.x("inet", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.x("inet", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        # cli4 has no IPv6 at all, not even link-local.
        self.x("cli4", "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        self.x("cli4", "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        self.link("inet", "to-pub", "pub", "eth0")
        self.link("inet", "to-cli4", "cli4", "eth0")
        self.link("inet", "to-cli6", "cli6", "eth0")
        self.addr("inet", "to-pub", "203.0.113.1/24")
        self.addr("inet", "to-pub", "2001:db8:7::1/64")
        self.addr("pub", "eth0", f"{TERN4}/24")
        self.addr("pub", "eth0", f"{TERN6}/64")
        self.addr("inet", "to-cli4", "198.51.100.1/24")
        self.addr("cli4", "eth0", f"{CLI4}/24")
        self.addr("inet", "to-cli6", "2001:db8:6::1/64")
        self.addr("cli6", "eth0", f"{CLI6}/64")
        self.x("pub", "ip", "route", "add", "default", "via", "203.0.113.1")
        self.x("pub", "ip", "-6", "route", "add", "default", "via", "2001:db8:7::1")
        self.x("cli4", "ip", "route", "add", "default", "via", "198.51.100.1")
        self.x("cli6", "ip", "-6", "route", "add", "default", "via", "2001:db8:6::1")
        # The clients really have one family each.
        v4_of_cli6 = self.x("cli6", "ip", "-4", "addr", "show", "dev", "eth0").stdout
        v6_of_cli4 = sh("ip", "netns", "exec", self.ns["cli4"], "ip", "-6", "addr", "show",
                        check=False).stdout
        if "inet " in v4_of_cli6 or "inet6" in v6_of_cli4:
            raise TestFailure(f"a client has the other family: cli6 {v4_of_cli6!r}, cli4 {v6_of_cli4!r}")

    def teardown(self) -> None:
        for name in reversed(self.created):
            kill_inside(name)
            sh("ip", "netns", "del", name, check=False)
        left = [n for n in self.created if n in sh("ip", "netns", "list", check=False).stdout]
        if left:
            log(f"WARNING: namespaces left behind: {left}")
        self.created.clear()


def start_tern(args, topo: Topology, secret: str, default_family: str, allow: bool = True) -> Tern:
    extra = ["--listening-ip", TERN6, "--relay-ip", TERN4, "--relay-ip", TERN6,
             "--allocation-default-address-family", default_family]
    if allow:
        extra += ["--allowed-peer-ip", "198.51.100.0/24", "--allowed-peer-ip", "2001:db8:6::/64"]
    return Tern(args.tern, TERN4, TURN_PORT, RELAY_PORTS.start, RELAY_PORTS.stop - 1, secret,
                "dualstack.test", extra=extra, netns=topo.ns["pub"], admin="127.0.0.1:9641")


def pair_hosts(result: dict) -> tuple[str, str, str, str]:
    """(local type, local host, remote type, remote host) of the selected pair."""
    pair = result["selected_pair"]
    lt, _, lhp = pair["local"].split(" ")
    rt, _, rhp = pair["remote"].split(" ")
    return lt, lhp.rsplit(":", 1)[0], rt, rhp.rsplit(":", 1)[0]


def allocation_line(tern: Tern, user: str) -> str:
    lines = [l for l in tern.log_text().splitlines() if "allocation created" in l and user in l]
    if not lines:
        raise TestFailure(f"tern logged no allocation for {user}")
    return lines[-1]


def require(cond: bool, what: str, *results: dict) -> None:
    if not cond:
        raise TestFailure(what + "".join("\n" + describe(r) for r in results if r))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tern", type=Path, default=default_tern())
    args = p.parse_args()
    if os.geteuid() != 0:
        print("FAIL dualstack_test needs root (ip netns)", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        raise SystemExit(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    Topology.remove_stale()
    topo = Topology()
    tern = None
    try:
        log(f"namespaces {topo.run}-*: tern {TERN4} and {TERN6}, cli6 {CLI6} (IPv6 only), "
            f"cli4 {CLI4} (IPv4 only)")
        topo.setup()
        secret = secrets.token_hex(16)
        tern = start_tern(args, topo, secret, "ipv4")
        uri6, uri4 = f"turn:[{TERN6}]:{TURN_PORT}", f"turn:{TERN4}:{TURN_PORT}"

        # 1. Both relay-only.
        cred6 = credentials(args.tern, secret, "dual-cli6", uri6)
        cred4 = credentials(args.tern, secret, "dual-cli4", uri4)
        off, ans = run_pair([cred6], [cred4], "relay", offer_ns=topo.ns["cli6"],
                            answer_ns=topo.ns["cli4"], messages=MESSAGES, timeout=30)
        require(off.get("ok") and ans.get("ok") and off.get("round_trips") == MESSAGES,
                "1. relay-only between the IPv6-only and the IPv4-only client failed", off, ans)
        for r, name in ((off, "cli6"), (ans, "cli4")):
            lt, lh, rt, rh = pair_hosts(r)
            require((lt, lh, rt, rh) == ("relay", TERN4, "relay", TERN4),
                    f"1. {name}'s pair is not relay/relay on tern's IPv4 relayed address: {r['selected_pair']}")
        require(off["selected_pair"].get("turn_server") == f"[{TERN6}]:{TURN_PORT}",
                f"1. cli6 did not reach tern over IPv6: {off['selected_pair']}")
        require(ans["selected_pair"].get("turn_server") == f"{TERN4}:{TURN_PORT}",
                f"1. cli4 did not reach tern over IPv4: {ans['selected_pair']}")
        line6, line4 = allocation_line(tern, cred6["username"]), allocation_line(tern, cred4["username"])
        for line, client in ((line6, f"client=[{CLI6}]:"), (line4, f"client={CLI4}:")):
            require(client in line and ("family=ipv4" in line or 'family="ipv4"' in line),
                    f"1. tern's allocation line is not from {client} with family ipv4: {line}")
        log(f"1. relay-only, cli6 over IPv6 and cli4 over IPv4: {off['round_trips']} round trips, "
            f"median {off.get('rtt_ms_median')} ms; both pairs relay/relay on {TERN4}")
        step1 = (off["selected_pair"], ans["selected_pair"])

        # 2. cli6 relay-only, cli4 with its host address: tern relays to 198.51.100.2.
        cred6b = credentials(args.tern, secret, "dual-cli6-b", uri6)
        off, ans = run_pair([cred6b], [], "relay", offer_ns=topo.ns["cli6"], answer_ns=topo.ns["cli4"],
                            messages=MESSAGES, timeout=30, answer_policy="all")
        require(off.get("ok") and off.get("round_trips") == MESSAGES,
                "2. cli6 (relay) to cli4 (host) failed", off, ans)
        lt, lh, rt, rh = pair_hosts(off)
        require((lt, rt, rh) == ("relay", "host", CLI4),
                f"2. cli6's pair is not its relay candidate with cli4's host {CLI4}: {off['selected_pair']}")
        log(f"2. cli6 relay-only to cli4's host address {CLI4} (allowed-peer-ip 198.51.100.0/24): "
            f"{off['round_trips']} round trips; cli6 pair {off['selected_pair']}")
        step2 = off["selected_pair"]

        # 2b. Control: without allowed-peer-ip tern refuses the documentation address (403),
        #     and the same attempt fails.
        tern.stop()
        tern = start_tern(args, topo, secret, "ipv4", allow=False)
        cred6c = credentials(args.tern, secret, "dual-cli6-c", uri6)
        off, ans = run_pair([cred6c], [], "relay", offer_ns=topo.ns["cli6"], answer_ns=topo.ns["cli4"],
                            messages=3, timeout=12, answer_policy="all")
        require(not off.get("round_trips"), "2b. without allowed-peer-ip cli6 still reached cli4's host", off)
        refused = [l for l in tern.turn_errors()
                   if "code=403" in l and ("channel_bind" in l or "create_permission" in l)]
        require(bool(refused), "2b. tern logged no 403 for the channel or permission to cli4's documentation "
                f"address:\n{tern.diagnosis()}")
        log(f"2b. control: without allowed-peer-ip tern answers 403 ({len(refused)} refused permissions) "
            f"and cli6 cannot reach {CLI4}")

        # 3. keep: the IPv6-only client gets an IPv6 relayed address, the IPv4-only one an
        #    IPv4 one, and no candidate pair exists.
        tern.stop()
        tern = start_tern(args, topo, secret, "keep")
        cred6 = credentials(args.tern, secret, "keep-cli6", uri6)
        cred4 = credentials(args.tern, secret, "keep-cli4", uri4)
        off, ans = run_pair([cred6], [cred4], "relay", offer_ns=topo.ns["cli6"],
                            answer_ns=topo.ns["cli4"], messages=3, timeout=12)
        line6, line4 = allocation_line(tern, cred6["username"]), allocation_line(tern, cred4["username"])
        require(("family=ipv6" in line6 or 'family="ipv6"' in line6)
                and ("family=ipv4" in line4 or 'family="ipv4"' in line4),
                f"3. with keep, cli6 should get IPv6 and cli4 IPv4: {line6} / {line4}")
        require(not off.get("ok") and not ans.get("ok") and not off.get("round_trips"),
                "3. with keep, relay-only between an IPv6 and an IPv4 relay candidate worked", off, ans)
        relay6 = [c for c in off.get("local_candidates", []) if c.startswith("relay ")]
        relay4 = [c for c in ans.get("local_candidates", []) if c.startswith("relay ")]
        require(relay6 and all(TERN6 in c for c in relay6) and relay4 and all(TERN4 in c for c in relay4),
                f"3. the candidates are not one IPv6 and one IPv4 relay: {relay6} / {relay4}", off, ans)
        log(f"3. keep: cli6 relays from {relay6}, cli4 from {relay4}: no pair of one family, ICE "
            f"{off.get('final_ice_state')}")
        print(f"PASS dual-stack tern ({TERN4}, {TERN6}) between an IPv6-only and an IPv4-only client: "
              f"relay-only works through IPv4 relayed addresses (cli6 pair {step1[0]}, cli4 pair {step1[1]}); "
              f"cli6 reaches cli4's documentation address through allowed-peer-ip ({step2}), and not without it; with "
              f"allocation-default-address-family=keep their relay candidates differ in family and ICE fails")
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
