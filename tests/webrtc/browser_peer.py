"""Headless Chromium as the answering peer of pair.py, speaking aiortc_peer.py's protocol on
stdin/stdout (one JSON object a line): reads {"type": "offer"}, prints {"type": "answer"},
then {"type": "result", ...} with the same fields as aiortc_peer.py. Meant to run inside a
client's network namespace (`ip netns exec`): the page server listens on that namespace's
127.0.0.1 and Chromium runs there too, so the browser's only way out is the NAT under test.
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import subprocess
import sys
import tempfile
import time

from browser_test import CHROMIUM_FLAGS, PageServer, chromium_version, find_chromium
from common import kill_group


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
    args = p.parse_args()
    result = {"type": "result", "role": "answer", "ok": False}
    chromium = find_chromium()
    if not chromium:
        emit({**result, "error": "chromium not found"})
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
    profile = tempfile.mkdtemp(prefix="tern-chromium-")
    out = tempfile.TemporaryFile()
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", server.url],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        try:
            emit(server.answers.get(timeout=max(1.0, deadline - time.monotonic())))
        except queue.Empty:
            emit({**result, "error": "the page posted no answer"})
            return 1
        try:
            page_result = server.results.get(timeout=args.timeout + 10)
        except queue.Empty:
            page_result = {**result, "error": "the page posted no result"}
        page_result["version"] = chromium_version(chromium)
        emit(page_result)
        return 0 if page_result.get("ok") else 1
    finally:
        kill_group(proc)
        server.close()
        shutil.rmtree(profile, ignore_errors=True)
        out.close()


if __name__ == "__main__":
    sys.exit(main())
