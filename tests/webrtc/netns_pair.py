"""Two peers inside one network namespace that the caller made, with the ICE servers and
policies given, signalling carried by pair.py: an aiortc offerer (aiortc_peer.py) and an
answerer that is aiortc_peer.py too, or another script speaking its protocol
(`--answer-script browser_peer.py --answer-arg=--browser --answer-arg=chromium`). For a suite that owns
tern and the namespaces itself and judges the outcome with tern's own counters
(tests/tests/xdp_webrtc.rs: tern with xdp=native on a veth pair).

Prints one JSON line, {"offer": RESULT, "answer": RESULT} (each peer's result as
aiortc_peer.py reports it: ok, round trips, the nominated pair, candidates, aioice's TURN log
lines), and both described for a reader on stderr. Exit status 0 when both peers produced
a result, whatever it says (the caller decides); 1 when a peer broke down before that.

  target/webrtc-venv/bin/python tests/webrtc/netns_pair.py --netns NS \\
      --offer-servers '[{"urls": [...], "username": ..., "credential": ...}]' --offer-policy relay \\
      --answer-servers '[]' --answer-policy all [--messages 20] [--timeout 30] \\
      [--answer-script browser_peer.py --answer-arg=--browser --answer-arg=firefox]
"""

from __future__ import annotations

import argparse
import json
import sys

import aioice
import aiortc

from common import TestFailure, log
from pair import describe, run_pair


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--netns", required=True, help="the namespace both peers run in")
    p.add_argument("--offer-servers", required=True, help="the offerer's iceServers (JSON list)")
    p.add_argument("--answer-servers", required=True, help="the answerer's iceServers (JSON list)")
    p.add_argument("--offer-policy", choices=["relay", "all"], default="relay")
    p.add_argument("--answer-policy", choices=["relay", "all"], default="relay")
    p.add_argument("--messages", type=int, default=20)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--answer-script", default="aiortc_peer.py",
                   help="the answerer's script in tests/webrtc (aiortc_peer.py, browser_peer.py)")
    p.add_argument("--answer-arg", action="append", default=[],
                   help="one more argument for the answerer's script (repeat; write --answer-arg=--flag)")
    args = p.parse_args()

    log(f"aiortc {aiortc.__version__}, aioice {aioice.__version__} in {args.netns}: offerer "
        f"{args.offer_policy}, answerer {args.answer_script} {' '.join(args.answer_arg)} "
        f"{args.answer_policy}")
    try:
        off, ans = run_pair(json.loads(args.offer_servers), json.loads(args.answer_servers),
                            args.offer_policy, offer_ns=args.netns, answer_ns=args.netns,
                            messages=args.messages, timeout=args.timeout,
                            answer_policy=args.answer_policy, answer_script=args.answer_script,
                            answer_args=args.answer_arg)
    except TestFailure as e:
        print(f"FAIL the pair broke down: {e}", file=sys.stderr)
        return 1
    for r in (off, ans):
        print(describe(r), file=sys.stderr)
    # One write, newline included: stdout and stderr share the test's capture, and a
    # separate newline write lets stderr's text land behind the JSON on its line.
    sys.stdout.write(json.dumps({"offer": off, "answer": ans, "aiortc": aiortc.__version__,
                                 "aioice": aioice.__version__}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
