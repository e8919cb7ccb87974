"""aiortc (with aioice underneath), an independent WebRTC stack, against tern on loopback:
two relay-only peers (iceTransportPolicy RELAY), REST credentials from `tern credentials`,
a data channel with ping/pong round trips. Checks that both sides selected a relay/relay
pair on tern's relayed address and port range.

  target/webrtc-venv/bin/python tests/webrtc/aiortc_test.py [--tern target/debug/tern]
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

import aiortc

from common import TestFailure, Tern, credentials, default_tern, free_port_block, log
from pair import describe, run_pair

MESSAGES = 20


def check_relay_pair(result: dict, relay_ip: str, ports: range) -> None:
    pair = result.get("selected_pair")
    if not result.get("ok") or not pair:
        raise TestFailure(f"the {result.get('role')}er did not complete:\n{describe(result)}")
    for side in ("local", "remote"):
        typ, _, hostport = pair[side].split(" ")
        host, port = hostport.rsplit(":", 1)
        if typ != "relay" or host != relay_ip or int(port) not in ports:
            raise TestFailure(f"the {result['role']}er's selected pair is not relay/relay on "
                              f"{relay_ip}:{ports.start}-{ports.stop - 1}: {pair}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tern", type=Path, default=default_tern())
    p.add_argument("--wrong-secret", action="store_true",
                   help="mint the credentials with another secret, to see a failure's diagnosis")
    args = p.parse_args()

    base = free_port_block()
    port, relay = base, range(base + 16, base + 64)
    secret, realm = secrets.token_hex(16), "webrtc.test"
    log(f"aiortc {aiortc.__version__}: tern on 127.0.0.1:{port}, relay ports {relay.start}-{relay.stop - 1}")
    with Tern(args.tern, "127.0.0.1", port, relay.start, relay.stop - 1, secret, realm,
              extra=["--relay-ip", "127.0.0.1"]) as tern:
        uri = f"turn:127.0.0.1:{port}"
        if args.wrong_secret:
            secret = secrets.token_hex(16)
        offer = credentials(args.tern, secret, "aiortc-offer", uri)
        answer = credentials(args.tern, secret, "aiortc-answer", uri)
        off = ans = None
        try:
            off, ans = run_pair([offer], [answer], "relay", messages=MESSAGES, timeout=30)
            check_relay_pair(off, "127.0.0.1", relay)
            check_relay_pair(ans, "127.0.0.1", relay)
            if off.get("round_trips") != MESSAGES:
                raise TestFailure(f"{off.get('round_trips')} of {MESSAGES} round trips")
            tern.require_allocations([offer["username"], answer["username"]])
        except TestFailure as e:
            print(f"FAIL aiortc relay-only through tern: {e}\n", file=sys.stderr)
            for r in (off, ans):
                if r:
                    print(describe(r), file=sys.stderr)
            print(tern.diagnosis(), file=sys.stderr)
            return 1
        print(f"PASS aiortc {aiortc.__version__} relay-only (UDP, REST secret): {MESSAGES} data-channel "
              f"round trips, median {off.get('rtt_ms_median')} ms; offerer pair {off['selected_pair']}, "
              f"answerer pair {ans['selected_pair']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
