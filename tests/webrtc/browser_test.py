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

from common import HERE, Pki, TestFailure, Tern, credentials, default_tern, free_port_block, kill_group, log

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


def check(result: dict, relay_ip: str, ports: range, transport: str, url: str) -> None:
    """Both peer connections completed on a relay/relay pair on tern's relay range, and the
    local candidate of each (getStats) was allocated from `url` over `transport`."""
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
        local = pair["local"]
        if local.get("relayProtocol") != transport or local.get("url") != url:
            raise TestFailure(f"peer connection {name}: the selected local candidate has relayProtocol "
                              f"{local.get('relayProtocol')!r} from {local.get('url')!r}, not {transport!r} "
                              f"from {url!r}")


def nss_home(ca: Path | None) -> Path:
    """A fresh home directory whose NSS database ($HOME/.pki/nssdb, which Chromium on Linux
    reads for locally trusted CAs) trusts `ca` for TLS servers (or nothing, without `ca`).
    Made with `certutil` from libnss3-tools; the caller removes it."""
    certutil = shutil.which("certutil")
    if not certutil:
        raise TestFailure("certutil not found (apt-get install libnss3-tools)")
    home = Path(tempfile.mkdtemp(prefix="tern-chromium-home-"))
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    steps = [["-N", "--empty-password"]]
    if ca:
        steps.append(["-A", "-n", "tern-test-ca", "-t", "C,,", "-i", str(ca)])
    for args in steps:
        out = subprocess.run([certutil, *args, "-d", f"sql:{db}"], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            shutil.rmtree(home, ignore_errors=True)
            raise TestFailure(f"certutil {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return home


def run_browser(chromium: str, config: dict, netns: str | None = None,
                home: Path | None = None) -> tuple[dict | None, PageServer, str]:
    """Loads the page in Chromium (inside `netns` if given; the page server listens on
    127.0.0.1 of the caller's namespace, so a namespaced Chromium needs a page server of its
    own there), with HOME set to `home` if given (for its NSS database). Returns the page's
    result (None on timeout), the server, Chromium's output."""
    server = PageServer(config)
    profile = tempfile.mkdtemp(prefix="tern-chromium-")
    out = tempfile.TemporaryFile()
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", server.url]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    env = dict(os.environ, HOME=str(home)) if home else None
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
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


def untrusted_fails(chromium: str, tern: Tern, secret: str, port: int, tls_port: int) -> str:
    """Without the test CA in its NSS database Chromium must refuse tern's certificate (no
    relay candidate, an icecandidateerror), or the trusted runs prove nothing about
    verification. Returns what the page reported."""
    home = nss_home(None)
    try:
        uri = f"turn:127.0.0.1:{port}"
        config = {"a": credentials(tern.bin, secret, "chromium-untrusted-a", uri, transport="tls", tls_port=tls_port),
                  "b": credentials(tern.bin, secret, "chromium-untrusted-b", uri, transport="tls", tls_port=tls_port),
                  "messages": 1, "timeout_ms": 10_000}
        result, server, output = run_browser(chromium, config, home=home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if result is None or result.get("ok") or result["a"]["candidates"] or result["b"]["candidates"]:
        raise TestFailure("Chromium without the test CA trusted gathered a relay candidate over TLS, or "
                          f"reported nothing:\n{describe(result, server, output)}")
    failures = {k: v for k, v in tern.metrics().items() if k.startswith("tern_tls_handshake_failures") and v}
    if not failures:
        raise TestFailure("Chromium without the test CA trusted gathered no candidate, but tern counted no "
                          f"failed TLS handshake, so the refusal was not the certificate:\n"
                          f"{describe(result, server, output)}")
    return f"{result.get('error')}; icecandidateerror {result['a']['errors']}; tern counted {failures}"


def run_one(chromium: str, version: str, tern: Tern, secret: str, transport: str, host: str,
            port: int, tls_port: int, relay: range, home: Path | None) -> str:
    """Two relay-only peer connections whose only ICE server is tern over `transport` at
    `host`; returns the PASS line's details, raises TestFailure with the diagnosis."""
    uri = f"turn:{host}:{port}"
    config = {"a": credentials(tern.bin, secret, "chromium-a", uri, transport=transport, tls_port=tls_port),
              "b": credentials(tern.bin, secret, "chromium-b", uri, transport=transport, tls_port=tls_port),
              "messages": MESSAGES, "timeout_ms": PAGE_TIMEOUT_MS}
    url = config["a"]["urls"][0]
    log(f"each peer connection's only ICE server: {config['a']['urls']}")
    result, server, output = run_browser(chromium, config, home=home)
    try:
        if result is None:
            raise TestFailure("no result from the page")
        check(result, "127.0.0.1", relay, transport, url)
        tern.require_allocations([config["a"]["username"], config["b"]["username"]], transport=transport)
    except TestFailure as e:
        raise TestFailure(f"{e}\n{describe(result, server, output)}") from None
    return (f"{url}: {result['roundTrips']} data-channel round trips, median {result['rttMsMedian']:.2f} ms; "
            f"pc a pair {json.dumps(result['a']['pair'])}; pc b pair {json.dumps(result['b']['pair'])}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tern", type=Path, default=default_tern())
    p.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp",
                   help="the one ICE server URL each peer connection gets: turn:...?transport=udp, "
                        "turn:...?transport=tcp or turns:HOST:TLS_PORT?transport=tcp (HOST localhost, "
                        "then 127.0.0.1: the certificate names both)")
    p.add_argument("--wrong-secret", action="store_true",
                   help="mint the credentials with another secret, to see a failure's diagnosis")
    args = p.parse_args()
    chromium = find_chromium()
    if not chromium:
        print("FAIL chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    version = chromium_version(chromium)

    base = free_port_block()
    port, tls_port, relay = base, base + 4, range(base + 16, base + 64)
    secret, realm = secrets.token_hex(16), "webrtc.test"
    tls = args.transport == "tls"
    pki = home = None
    try:
        extra = ["--relay-ip", "127.0.0.1"]
        if tls:
            pki = Pki(dns=["localhost"], ips=["127.0.0.1"])
            home = nss_home(pki.ca)
            extra += pki.tern_args(tls_port)
        log(f"{version} over {args.transport}: tern on 127.0.0.1:{tls_port if tls else port}, "
            f"relay ports {relay.start}-{relay.stop - 1}")
        with Tern(args.tern, "127.0.0.1", port, relay.start, relay.stop - 1, secret, realm, extra=extra) as tern:
            mint = secrets.token_hex(16) if args.wrong_secret else secret
            passed = []
            try:
                if tls:
                    refused = untrusted_fails(chromium, tern, secret, port, tls_port)
                    log(f"without the CA in its NSS database, Chromium refuses tern's certificate: {refused}")
                for host in (["localhost", "127.0.0.1"] if tls else ["127.0.0.1"]):
                    passed.append(run_one(chromium, version, tern, mint, args.transport, host, port,
                                          tls_port, relay, home))
                    log(f"relay-only over {args.transport} works with {passed[-1].split(': ')[0]}")
            except TestFailure as e:
                print(f"FAIL {version} relay-only over {args.transport} through tern: {e}\n{tern.diagnosis()}",
                      file=sys.stderr)
                return 1
            trust = " (test CA trusted in a fresh NSS database, refused without it)" if tls else ""
            print(f"PASS {version} relay-only over {args.transport}{trust}, REST secret, tern logged every "
                  f"allocation with transport={args.transport}; " + "; ".join(passed))
    finally:
        if home:
            shutil.rmtree(home, ignore_errors=True)
        if pki:
            pki.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
