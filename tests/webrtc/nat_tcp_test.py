"""The UDP-blocked client: a client namespace whose UDP is dropped entirely still reaches a
peer relay-only through tern over TCP and over TLS. Same namespaces as nat_test.py (tern
behind a 1:1 NAT with --external-ip 192.0.2.2/10.9.0.2, cliA behind natA, cliB behind natB),
both NATs endpoint-independent here so that direct ICE can work at all:

    cliA 10.0.1.2 (UDP blocked) -- natA 198.51.100.2 --+
    cliB 10.0.2.2               -- natB 203.0.113.2  --+-- inet -- edge 192.0.2.2 (1:1 NAT) -- tern 10.9.0.2

Checks, in order:
  0. Controls, before the block: direct ICE (STUN via tern) between cliA and cliB works, and
     relay-only over turn:...?transport=udp from cliA works, so what fails below fails
     because of the block.
  1. nftables in cliA drops every UDP packet in and out (loopback excepted).
  a. Relay-only over turn:...?transport=udp from cliA fails: no relay candidate within
     aioice's 5 s gathering bound, and tern logs no allocation for it.
  b. Direct ICE between cliA and cliB fails within the bound.
  c. Relay-only over turn:...?transport=tcp and over turns:192.0.2.2:5349?transport=tcp (a
     test CA with IP SAN 192.0.2.2 trusted through SSL_CERT_FILE) both work: every ping and
     pong arrives; cliA's selected pair is relay/relay with its relay leg over tcp/tls to
     tern's public address; tern logs cliA's allocation with that transport, from natA's
     public address. cliB, unblocked, uses turn:...?transport=udp.
  d. Chromium as the UDP-blocked client (answerer in cliA, test CA in a fresh NSS database),
     over tcp and tls, aiortc in cliB: getStats' selected local candidate has relayProtocol
     tcp / tls. Skipped without chromium or certutil unless CI is set.
  e. Firefox the same way; over TLS it uses turns:turn.nat.test:5349 (cliA's /etc/hosts names
     192.0.2.2 so, and so does the certificate): Firefox makes no turns: connection to an IP
     literal. Skipped without firefox-esr or certutil unless CI is set.

Needs root (ip netns, nftables). Namespaces are t6w<pid>-<role>, deleted in `finally`.

  sudo target/webrtc-venv/bin/python tests/webrtc/nat_tcp_test.py [--tern target/debug/tern]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import sys
from pathlib import Path

from browsers import find_browser
from common import Pki, TestFailure, Tern, credentials, default_tern, log
from nat_test import (NAT_A_PUBLIC, NAT_B_PUBLIC, RELAY_PORTS, TURN_PORT, TURN_PRIVATE, TURN_PUBLIC,
                      Topology, check_relay_only, seen_from)
from pair import describe, run_pair

TLS_PORT = 5349
TURN_NAME = "turn.nat.test"  # tern's public address by name, in cliA's /etc/hosts
MESSAGES = 20

BLOCK_UDP = """
table inet udpblock {
  chain in { type filter hook input priority filter - 10; policy accept; iifname != "lo" meta l4proto udp drop; }
  chain out { type filter hook output priority filter - 10; policy accept; oifname != "lo" meta l4proto udp drop; }
}"""


class Run:
    """The topology, tern and the credentials of one test run."""

    def __init__(self, topo: Topology, tern: Tern, tern_bin: Path, secret: str):
        self.topo, self.tern, self.tern_bin, self.secret = topo, tern, tern_bin, secret

    def cred(self, name: str, transport: str, host: str = TURN_PUBLIC) -> dict:
        return credentials(self.tern_bin, self.secret, name, f"turn:{host}:{TURN_PORT}",
                           transport=transport, tls_port=TLS_PORT)

    def pair(self, a_servers: list[dict], b_servers: list[dict], policy: str, timeout: float,
             browser_in_a: str | None = None, trust: Path | None = None) -> tuple[dict, dict]:
        """(cliA's result, cliB's result). aiortc in cliA offers, unless a browser is the
        cliA side (it can only answer), when aiortc in cliB offers."""
        if browser_in_a:
            off, ans = run_pair(b_servers, a_servers, policy, offer_ns=self.topo.ns["cliB"],
                                answer_ns=self.topo.ns["cliA"], messages=MESSAGES, timeout=timeout,
                                answer_script="browser_peer.py",
                                answer_args=["--browser", browser_in_a, "--trust", str(trust)])
            return ans, off
        return run_pair(a_servers, b_servers, policy, offer_ns=self.topo.ns["cliA"],
                        answer_ns=self.topo.ns["cliB"], messages=MESSAGES, timeout=timeout)


def both_delivered(a: dict, b: dict) -> bool:
    """Every ping reached the answerer and every pong came back to the offerer."""
    off, ans = (a, b) if a.get("role") == "offer" else (b, a)
    return off.get("round_trips") == MESSAGES and ans.get("echoed", MESSAGES) == MESSAGES and \
        bool(off.get("ok")) and bool(ans.get("ok"))


def relay_leg(result: dict) -> str | None:
    return (result.get("selected_pair") or {}).get("relay_protocol")


def controls(run: Run, stun: list[dict]) -> None:
    a, b = run.pair(stun, stun, "all", timeout=20)
    if not (a.get("ok") and b.get("ok")):
        raise TestFailure("0. control: before the block, direct ICE between cliA and cliB (both NATs "
                          f"endpoint-independent) should work but did not:\n{describe(a)}\n{describe(b)}")
    log(f"0. control: direct works before the block: A pair {a['selected_pair']}")
    cred = run.cred("udpctl-a", "udp")
    a, b = run.pair([cred], [run.cred("udpctl-b", "udp")], "relay", timeout=20)
    check_relay_only(a, b, "0. control: relay-only over UDP from cliA before the block")
    log(f"0. control: relay-only over UDP from cliA works before the block: A pair {a['selected_pair']}")


def udp_turn_fails(run: Run) -> str:
    cred = run.cred("blocked-udp-a", "udp")
    try:
        a, b = run.pair([cred], [run.cred("blocked-udp-b", "udp")], "relay", timeout=15)
        if a.get("ok") or a.get("selected_pair") or a.get("local_candidates"):
            raise TestFailure(f"a. relay-only over UDP from the UDP-blocked cliA worked:\n{describe(a)}")
        text = describe(a)
    except TestFailure as e:
        if str(e).startswith("a."):
            raise
        text = str(e)  # cliA gathered nothing, so it made no offer: the expected way to fail
    if "no relay" not in text and "gathered no candidate" not in text:
        raise TestFailure(f"a. relay-only over UDP from cliA failed, but not for want of a relay candidate:\n{text}")
    created = [l for l in run.tern.log_text().splitlines() if "allocation created" in l and cred["username"] in l]
    if created:
        raise TestFailure(f"a. tern allocated for the UDP-blocked cliA over UDP: {created}")
    reason = re.search(r"TURN over udp to [^\"]*", text)
    return reason[0] if reason else "no relay candidate"


def direct_fails(run: Run, stun: list[dict], limit: float) -> None:
    a, b = run.pair(stun, stun, "all", timeout=limit)
    if a.get("ok") or b.get("ok") or a.get("round_trips") or b.get("echoed"):
        raise TestFailure(f"b. direct ICE from the UDP-blocked cliA worked:\n{describe(a)}\n{describe(b)}")
    log(f"b. direct ICE from cliA fails within {limit:.0f} s: ICE states A {a.get('ice_states')}, "
        f"B {b.get('ice_states')}")


def relay_over(run: Run, transport: str, browser: str | None = None, trust: Path | None = None,
               step: str = "c", host: str = TURN_PUBLIC) -> str:
    """cliA (aiortc, or `browser` trusting `trust`) relay-only over `transport` (tcp or tls) to
    tern at `host`, cliB over UDP; returns the PASS detail."""
    who = {None: "aiortc", "chromium": "Chromium", "firefox": "Firefox"}[browser]
    what = f"{step}. {who} in the UDP-blocked cliA over {transport}"
    cred_a = run.cred(f"blocked-{who.lower()}-{transport}-a", transport, host=host)
    cred_b = run.cred(f"blocked-{who.lower()}-{transport}-b", "udp")
    a, b = run.pair([cred_a], [cred_b], "relay", timeout=30, browser_in_a=browser, trust=trust)
    check_relay_only(a, b, what)
    if not both_delivered(a, b):
        raise TestFailure(f"{what}: not every message arrived both ways:\n{describe(a)}\n{describe(b)}")
    if relay_leg(a) != transport or relay_leg(b) != "udp":
        raise TestFailure(f"{what}: relay legs A {relay_leg(a)!r}, B {relay_leg(b)!r}; expected "
                          f"{transport!r} and 'udp':\n{describe(a)}\n{describe(b)}")
    run.tern.require_allocations([cred_a["username"]], transport=transport)
    run.tern.require_allocations([cred_b["username"]], transport="udp")
    seen_from(run.tern, [(cred_a["username"], NAT_A_PUBLIC), (cred_b["username"], NAT_B_PUBLIC)])
    detail = (f"{who} over {cred_a['urls'][0]}: A pair {a['selected_pair']}, "
              f"B pair {b['selected_pair']}")
    log(f"{what} works: {detail}")
    return detail


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tern", type=Path, default=default_tern())
    p.add_argument("--direct-timeout", type=float, default=10.0,
                   help="seconds the direct attempt from the UDP-blocked client gets before it counts as failed")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("FAIL nat_tcp_test needs root (ip netns, nftables)", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        raise SystemExit(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    Topology.remove_stale()
    topo = Topology()
    pki = Pki(dns=[TURN_NAME], ips=[TURN_PUBLIC])
    tern = None
    saved_cert_file = os.environ.get("SSL_CERT_FILE")
    try:
        log(f"namespaces {topo.run}-*: tern {TURN_PRIVATE} (public {TURN_PUBLIC}), cliA behind natA "
            f"{NAT_A_PUBLIC}, cliB behind natB {NAT_B_PUBLIC}, both endpoint-independent")
        topo.setup()
        topo.hosts("cliA", {TURN_NAME: TURN_PUBLIC})
        topo.set_masquerade("natB", symmetric=False)
        secret = secrets.token_hex(16)
        tern = Tern(args.tern, TURN_PRIVATE, TURN_PORT, RELAY_PORTS.start, RELAY_PORTS.stop - 1, secret,
                    "nat.test", extra=["--external-ip", f"{TURN_PUBLIC}/{TURN_PRIVATE}", *pki.tern_args(TLS_PORT)],
                    netns=topo.ns["pub"], admin="127.0.0.1:9641")
        run = Run(topo, tern, args.tern, secret)
        os.environ["SSL_CERT_FILE"] = str(pki.ca)  # aiortc in both namespaces trusts the test CA
        stun = [{"urls": [f"stun:{TURN_PUBLIC}:{TURN_PORT}"]}]

        controls(run, stun)
        topo.x("cliA", "nft", "-f", "-", input=BLOCK_UDP)
        log("1. cliA: nftables drops all UDP in and out (loopback excepted)")
        refused = udp_turn_fails(run)
        log(f"a. relay-only over UDP from cliA fails: {refused}; tern logged no allocation for it")
        direct_fails(run, stun, args.direct_timeout)
        passed = [relay_over(run, "tcp"), relay_over(run, "tls")]

        # d. Chromium, e. Firefox as the UDP-blocked client. Firefox makes no turns:
        # connection to an IP literal, so over TLS it reaches tern by a name that cliA's
        # /etc/hosts gives 192.0.2.2 and the certificate names.
        for step, kind in (("d", "chromium"), ("e", "firefox")):
            missing = [tool for tool, found in ((kind, find_browser(kind)), ("certutil (libnss3-tools)",
                                                                            shutil.which("certutil"))) if not found]
            if missing:
                if os.environ.get("CI"):
                    raise TestFailure(f"{step}. {' and '.join(missing)} not found (CI is set, so this is a failure)")
                log(f"{step}. SKIPPED: {' and '.join(missing)} not found, no {kind} run as the UDP-blocked client")
                continue
            passed += [relay_over(run, "tcp", browser=kind, trust=pki.ca, step=step),
                       relay_over(run, "tls", browser=kind, trust=pki.ca, step=step,
                                  host=TURN_NAME if kind == "firefox" else TURN_PUBLIC)]
        print("PASS UDP-blocked client (nftables drops all UDP in cliA): relay-only over UDP and direct ICE "
              "fail, both worked before the block; relay-only through tern over TCP and TLS works, messages "
              "both ways: " + "; ".join(passed))
        return 0
    except TestFailure as e:
        print(f"FAIL {e}", file=sys.stderr)
        if tern:
            print(tern.diagnosis(), file=sys.stderr)
        return 1
    finally:
        if saved_cert_file is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = saved_cert_file
        if tern:
            tern.stop()
        topo.teardown()
        pki.remove()


if __name__ == "__main__":
    sys.exit(main())
