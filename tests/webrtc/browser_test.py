"""A real browser against tern: headless Chromium or Firefox loads page.html, which opens two
RTCPeerConnections with iceTransportPolicy 'relay' and a TURN entry each (credentials from
`tern credentials`), exchanges data-channel pings, and POSTs the result (ICE states,
candidates gathered, icecandidateerror codes, the selected pair from getStats) to the small
HTTP server here. Checks that both pairs are relay/relay on tern's relayed address.

  target/webrtc-venv/bin/python tests/webrtc/browser_test.py [--browser chromium|firefox]
      [--transport udp|tcp|tls] [--tern target/debug/tern]

Over TLS it also checks that the browser refuses tern's certificate without the test CA in a
fresh NSS database, and, for Firefox, that `turns:` with an IP literal gets no relay candidate
(Firefox needs a host name the certificate names). Browser specifics are in browsers.py.

No npm and no DevTools client: the page reports over plain HTTP to 127.0.0.1. Bounded: the
page gives up after 30 s, this script after 60 s; the browser and tern are killed in `finally`.
"""

from __future__ import annotations

import argparse
import json
import queue
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from browsers import KINDS, Browser, find_browser, install_hint
from common import HERE, Pki, TestFailure, Tern, credentials, default_tern, free_port_block, log

MESSAGES = 20
PAGE_TIMEOUT_MS = 30_000
LIMIT_S = 60

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
    local candidate of each (getStats) was allocated over `transport` (from `url`, where the
    browser reports it)."""
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
        # Firefox reports no `url` on candidate stats (Chromium does); tern's allocation log
        # (require_allocations) then shows which transport the relay candidate came over.
        if local.get("relayProtocol") != transport or local.get("url", url) not in (url, None):
            raise TestFailure(f"peer connection {name}: the selected local candidate has relayProtocol "
                              f"{local.get('relayProtocol')!r} from {local.get('url')!r}, not {transport!r} "
                              f"from {url!r}")


def run_browser(browser: Browser, config: dict, netns: str | None = None, trust: Path | None = None,
                fresh_nss: bool = False) -> tuple[dict | None, PageServer, str]:
    """Loads the page in `browser` (inside `netns` if given; the page server listens on
    127.0.0.1 of the caller's namespace, so a namespaced browser needs a page server of its
    own there), with a fresh NSS database trusting `trust` if given or `fresh_nss` is set.
    Returns the page's result (None on timeout), the server, the browser's output."""
    server = PageServer(config)
    try:
        with browser.open(server.url, netns=netns, trust=trust, fresh_nss=fresh_nss) as proc:
            try:
                result = server.results.get(timeout=LIMIT_S)
            except queue.Empty:
                result = None
            output = Browser.output(proc)
    finally:
        server.close()
    return result, server, output


def describe(browser: Browser, result: dict | None, server: PageServer, output: str) -> str:
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
    lines.append(f"{browser.kind} output (last lines):\n  " + "\n  ".join(tail or ["(none)"]))
    return "\n".join(lines)


def untrusted_fails(browser: Browser, tern: Tern, secret: str, host: str, port: int, tls_port: int) -> str:
    """Without the test CA in its NSS database the browser must refuse tern's certificate (no
    relay candidate, an icecandidateerror), or the trusted runs prove nothing about
    verification. Returns what the page reported."""
    uri = f"turn:{host}:{port}"
    config = {"a": credentials(tern.bin, secret, f"{browser.kind}-untrusted-a", uri, transport="tls", tls_port=tls_port),
              "b": credentials(tern.bin, secret, f"{browser.kind}-untrusted-b", uri, transport="tls", tls_port=tls_port),
              "messages": 1, "timeout_ms": 10_000}
    before = tls_failures(tern)
    result, server, output = run_browser(browser, config, fresh_nss=True)
    if result is None or result.get("ok") or result["a"]["candidates"] or result["b"]["candidates"]:
        raise TestFailure(f"{browser.name} without the test CA trusted gathered a relay candidate over TLS, or "
                          f"reported nothing:\n{describe(browser, result, server, output)}")
    failures = tls_failures(tern)
    if sum(failures.values()) <= sum(before.values()):
        raise TestFailure(f"{browser.name} without the test CA trusted gathered no candidate, but tern counted no "
                          f"failed TLS handshake, so the refusal was not the certificate:\n"
                          f"{describe(browser, result, server, output)}")
    return f"{result.get('error')}; icecandidateerror {result['a']['errors']}; tern counted {failures}"


def tls_failures(tern: Tern) -> dict[str, float]:
    return {k: v for k, v in tern.metrics().items() if k.startswith("tern_tls_handshake_failures") and v}


def run_one(browser: Browser, tern: Tern, secret: str, transport: str, host: str,
            port: int, tls_port: int, relay: range, trust: Path | None) -> str:
    """Two relay-only peer connections whose only ICE server is tern over `transport` at
    `host`; returns the PASS line's details, raises TestFailure with the diagnosis."""
    uri = f"turn:{host}:{port}"
    config = {"a": credentials(tern.bin, secret, f"{browser.kind}-a", uri, transport=transport, tls_port=tls_port),
              "b": credentials(tern.bin, secret, f"{browser.kind}-b", uri, transport=transport, tls_port=tls_port),
              "messages": MESSAGES, "timeout_ms": PAGE_TIMEOUT_MS}
    url = config["a"]["urls"][0]
    log(f"each peer connection's only ICE server: {config['a']['urls']}")
    result, server, output = run_browser(browser, config, trust=trust)
    try:
        if result is None:
            raise TestFailure("no result from the page")
        check(result, "127.0.0.1", relay, transport, url)
        tern.require_allocations([config["a"]["username"], config["b"]["username"]], transport=transport)
    except TestFailure as e:
        raise TestFailure(f"{e}\n{describe(browser, result, server, output)}") from None
    return (f"{url}: {result['roundTrips']} data-channel round trips, median {result['rttMsMedian']:.2f} ms; "
            f"pc a pair {json.dumps(result['a']['pair'])}; pc b pair {json.dumps(result['b']['pair'])}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tern", type=Path, default=default_tern())
    p.add_argument("--browser", choices=KINDS, default="chromium")
    p.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp",
                   help="the one ICE server URL each peer connection gets: turn:...?transport=udp, "
                        "turn:...?transport=tcp or turns:HOST:TLS_PORT?transport=tcp (HOST localhost, "
                        "then, for Chromium, 127.0.0.1: the certificate names both; Firefox makes no "
                        "turns: connection to an IP literal, which is checked instead)")
    p.add_argument("--wrong-secret", action="store_true",
                   help="mint the credentials with another secret, to see a failure's diagnosis")
    args = p.parse_args()
    browser = find_browser(args.browser)
    if not browser:
        print(f"FAIL {args.browser} not found ({install_hint(args.browser)})", file=sys.stderr)
        return 2
    version = browser.short_version

    base = free_port_block()
    port, tls_port, relay = base, base + 4, range(base + 16, base + 64)
    secret, realm = secrets.token_hex(16), "webrtc.test"
    tls = args.transport == "tls"
    pki = None
    try:
        extra = ["--relay-ip", "127.0.0.1"]
        if tls:
            pki = Pki(dns=["localhost"], ips=["127.0.0.1"])
            extra += pki.tern_args(tls_port)
        log(f"{version} over {args.transport}: tern on 127.0.0.1:{tls_port if tls else port}, "
            f"relay ports {relay.start}-{relay.stop - 1}")
        with Tern(args.tern, "127.0.0.1", port, relay.start, relay.stop - 1, secret, realm, extra=extra) as tern:
            mint = secrets.token_hex(16) if args.wrong_secret else secret
            passed = []
            try:
                if tls:
                    refused = untrusted_fails(browser, tern, secret, "localhost", port, tls_port)
                    log(f"without the CA in its NSS database, {browser.name} refuses tern's certificate: {refused}")
                hosts = ["localhost", "127.0.0.1"] if tls and browser.kind == "chromium" else \
                    ["localhost"] if tls else ["127.0.0.1"]
                for host in hosts:
                    passed.append(run_one(browser, tern, mint, args.transport, host, port, tls_port, relay,
                                          pki.ca if pki else None))
                    log(f"relay-only over {args.transport} works with {passed[-1].split(': ')[0]}")
                if tls and browser.kind == "firefox":
                    passed.append(ip_literal_refused(browser, tern, secret, port, tls_port, pki.ca))
                    log(passed[-1])
            except TestFailure as e:
                print(f"FAIL {version} relay-only over {args.transport} through tern: {e}\n{tern.diagnosis()}",
                      file=sys.stderr)
                return 1
            trust = " (test CA trusted in a fresh NSS database, refused without it)" if tls else ""
            print(f"PASS {version} relay-only over {args.transport}{trust}, REST secret, tern logged every "
                  f"allocation with transport={args.transport}; " + "; ".join(passed))
    finally:
        if pki:
            pki.remove()
    return 0


def ip_literal_refused(browser: Browser, tern: Tern, secret: str, port: int, tls_port: int, ca: Path) -> str:
    """Firefox with the CA trusted, but `turns:127.0.0.1:...` (an IP literal the certificate
    names too): Firefox gathers no relay candidate, and tern sees no TCP connection from it.
    What the README says about Firefox and IP literals rests on this."""
    uri = f"turn:127.0.0.1:{port}"
    config = {"a": credentials(tern.bin, secret, "firefox-literal-a", uri, transport="tls", tls_port=tls_port),
              "b": credentials(tern.bin, secret, "firefox-literal-b", uri, transport="tls", tls_port=tls_port),
              "messages": 1, "timeout_ms": 10_000}
    before = stream_closes(tern)
    result, server, output = run_browser(browser, config, trust=ca)
    time.sleep(0.5)  # a connection the browser had open is closed by its exit; let tern count it
    after = stream_closes(tern)
    if result is None or result.get("ok") or result["a"]["candidates"] or result["b"]["candidates"]:
        raise TestFailure("Firefox gathered a relay candidate from turns: with an IP literal, or reported "
                          f"nothing; the README's note is wrong:\n{describe(browser, result, server, output)}")
    if after != before:
        raise TestFailure(f"Firefox opened TCP connections to tern for turns: with an IP literal (closes "
                          f"{before} -> {after}), so the refusal is not the one the README describes:\n"
                          f"{describe(browser, result, server, output)}")
    return (f"{config['a']['urls'][0]} (an IP literal, named by the certificate too) gives Firefox no relay "
            f"candidate even with the CA trusted, and tern saw no connection from it: {result.get('error')}; "
            f"icecandidateerror {result['a']['errors']}")


def stream_closes(tern: Tern) -> float:
    return sum(v for k, v in tern.metrics().items() if k.startswith("tern_stream_closes"))


if __name__ == "__main__":
    sys.exit(main())
