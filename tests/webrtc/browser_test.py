"""A real browser against tern: headless Chromium loads page.html, which opens two
RTCPeerConnections with iceTransportPolicy 'relay' and a TURN entry each (credentials from
`tern credentials`), exchanges data-channel pings, and POSTs the result (ICE states,
candidates gathered, icecandidateerror codes, the selected pair from getStats) to the small
HTTP server here. Checks that both pairs are relay/relay on tern's relayed address.

  target/webrtc-venv/bin/python tests/webrtc/browser_test.py [--tern target/debug/tern]

No npm and no DevTools client: the page reports over plain HTTP to 127.0.0.1. Bounded: the
page gives up after 30 s, this script after 60 s; Chromium and tern are killed in `finally`.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import HERE, TestFailure, Tern, credentials, default_tern, free_port_block, kill_group, log

MESSAGES = 20
PAGE_TIMEOUT_MS = 30_000
LIMIT_S = 60

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--disable-breakpad", "--no-pings",
    "--no-default-browser-check", "--metrics-recording-only", "--mute-audio",
    "--no-proxy-server",
]


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM_BIN"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def chromium_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or out.stderr.strip()


class PageServer:
    """Serves `page` (at /) and /config on 127.0.0.1; queues what the page POSTs to /result
    and /answer, keeps what it POSTs to /log."""

    def __init__(self, config: dict, page: str = "page.html"):
        self.results: "queue.Queue[dict]" = queue.Queue()
        self.answers: "queue.Queue[dict]" = queue.Queue()
        self.progress: list[str] = []
        page = (HERE / page).read_bytes()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, body: bytes, ctype: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/config":
                    self._send(json.dumps(config).encode(), "application/json")
                elif self.path == "/":
                    self._send(page, "text/html; charset=utf-8")
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                n = min(int(self.headers.get("Content-Length", "0")), 1 << 20)
                body = json.loads(self.rfile.read(n) or b"{}")
                if self.path == "/result":
                    outer.results.put(body)
                elif self.path == "/answer":
                    outer.answers.put(body)
                elif self.path == "/log" and len(outer.progress) < 200:
                    outer.progress.append(str(body.get("msg")))
                self._send(b"{}", "application/json")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def check(result: dict, relay_ip: str, ports: range) -> None:
    if not result.get("ok"):
        raise TestFailure(f"the page reported a failure: {result.get('error')}")
    for name in ("a", "b"):
        pair = result[name].get("pair")
        if not pair:
            raise TestFailure(f"peer connection {name}: no selected candidate pair in getStats")
        for side in ("local", "remote"):
            c = pair.get(side) or {}
            if c.get("type") != "relay" or c.get("address") != relay_ip or c.get("port") not in ports:
                raise TestFailure(f"peer connection {name}: selected pair's {side} candidate is not a "
                                  f"relay candidate on {relay_ip}:{ports.start}-{ports.stop - 1}: {c}")


def run_browser(chromium: str, config: dict, netns: str | None = None) -> tuple[dict | None, PageServer, str]:
    """Loads the page in Chromium (inside `netns` if given; the page server listens on
    127.0.0.1 of the caller's namespace, so a namespaced Chromium needs a page server of its
    own there). Returns the page's result (None on timeout), the server, Chromium's output."""
    server = PageServer(config)
    profile = tempfile.mkdtemp(prefix="tern-chromium-")
    out = tempfile.TemporaryFile()
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", server.url]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        try:
            result = server.results.get(timeout=LIMIT_S)
        except queue.Empty:
            result = None
    finally:
        kill_group(proc)
        server.close()
        shutil.rmtree(profile, ignore_errors=True)
        out.seek(0)
        output = out.read().decode(errors="replace")
        out.close()
    return result, server, output


def describe(result: dict | None, server: PageServer, output: str) -> str:
    lines = ["progress the page reported: " + "; ".join(server.progress[-30:] or ["(none)"])]
    if result is None:
        lines.append(f"the page posted no result within {LIMIT_S} s")
    else:
        lines.append(f"error: {result.get('error')}  user agent: {result.get('userAgent')}")
        for name in ("a", "b"):
            r = result.get(name) or {}
            lines.append(f"pc {name}: ice state {r.get('state')} (seen {r.get('ice')}), "
                         f"candidates {r.get('candidates')}, icecandidateerror {r.get('errors')}, "
                         f"selected pair {json.dumps(r.get('pair'))}")
    tail = [l for l in output.splitlines() if l.strip() and "dbus" not in l][-15:]
    lines.append("chromium output (last lines):\n  " + "\n  ".join(tail or ["(none)"]))
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tern", type=Path, default=default_tern())
    p.add_argument("--wrong-secret", action="store_true",
                   help="mint the credentials with another secret, to see a failure's diagnosis")
    args = p.parse_args()
    chromium = find_chromium()
    if not chromium:
        print("FAIL chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    version = chromium_version(chromium)

    base = free_port_block()
    port, relay = base, range(base + 16, base + 64)
    secret, realm = secrets.token_hex(16), "webrtc.test"
    log(f"{version}: tern on 127.0.0.1:{port}, relay ports {relay.start}-{relay.stop - 1}")
    with Tern(args.tern, "127.0.0.1", port, relay.start, relay.stop - 1, secret, realm,
              extra=["--relay-ip", "127.0.0.1"]) as tern:
        uri = f"turn:127.0.0.1:{port}"
        if args.wrong_secret:
            secret = secrets.token_hex(16)
        config = {"a": credentials(args.tern, secret, "chromium-a", uri),
                  "b": credentials(args.tern, secret, "chromium-b", uri),
                  "messages": MESSAGES, "timeout_ms": PAGE_TIMEOUT_MS}
        result, server, output = run_browser(chromium, config)
        try:
            if result is None:
                raise TestFailure("no result from the page")
            check(result, "127.0.0.1", relay)
            tern.require_allocations([config["a"]["username"], config["b"]["username"]])
        except TestFailure as e:
            print(f"FAIL {version} relay-only through tern: {e}\n{describe(result, server, output)}\n"
                  f"{tern.diagnosis()}", file=sys.stderr)
            return 1
        print(f"PASS {version} relay-only (UDP, REST secret): {result['roundTrips']} data-channel round "
              f"trips, median {result['rttMsMedian']:.2f} ms; pc a pair {json.dumps(result['a']['pair'])}; "
              f"pc b pair {json.dumps(result['b']['pair'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
