"""A headless browser (Chromium, or Firefox with --browser firefox) as the answering peer of pair.py, speaking aiortc_peer.py's protocol on
stdin/stdout (one JSON object a line): reads {"type": "offer"}, prints {"type": "answer"},
then {"type": "result", ...} with the same fields as aiortc_peer.py. Meant to run inside a
client's network namespace (`ip netns exec`): the page server listens on that namespace's
127.0.0.1 and the browser runs there too, so the browser's only way out is the NAT under test.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from pathlib import Path

from browser_test import PageServer
from browsers import KINDS, find_browser


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--role", choices=["answer"], required=True)
    p.add_argument("--ice-servers", required=True)
    p.add_argument("--policy", choices=["relay", "all"], default="relay")
    p.add_argument("--messages", type=int, default=20)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--browser", choices=KINDS, default="chromium")
    p.add_argument("--trust", type=Path, help="a CA (PEM) the browser's fresh NSS database trusts")
    args = p.parse_args()
    result = {"type": "result", "role": "answer", "ok": False}
    browser = find_browser(args.browser)
    if not browser:
        emit({**result, "error": f"{args.browser} not found"})
        return 1
    offer = None
    deadline = time.monotonic() + args.timeout
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("type") == "offer":
            offer = msg
            break
    if offer is None:
        emit({**result, "error": "no offer on stdin"})
        return 1
    server = PageServer({"offer": offer["sdp"], "iceServers": json.loads(args.ice_servers),
                         "policy": args.policy, "messages": args.messages,
                         "timeout_ms": int(args.timeout * 1000)}, page="peer.html")
    try:
        with browser.open(server.url, trust=args.trust) as proc:
            try:
                emit(server.answers.get(timeout=max(1.0, deadline - time.monotonic())))
            except queue.Empty:
                emit({**result, "error": "the page posted no answer",
                      "browser_output": browser.output(proc).splitlines()[-15:]})
                return 1
            try:
                page_result = server.results.get(timeout=args.timeout + 10)
            except queue.Empty:
                page_result = {**result, "error": "the page posted no result"}
        page_result["version"] = browser.version
        emit(page_result)
        return 0 if page_result.get("ok") else 1
    finally:
        server.close()

if __name__ == "__main__":
    sys.exit(main())
