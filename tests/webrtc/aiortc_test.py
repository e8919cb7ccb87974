"""aiortc (with aioice underneath), an independent WebRTC stack, against tern on loopback:
two relay-only peers (iceTransportPolicy RELAY), REST credentials from `tern credentials`,
a data channel with ping/pong round trips. Checks that both sides selected a relay/relay
pair on tern's relayed address and port range.

--ipv6 runs tern dual-stack (127.0.0.1 and ::1, relaying in both families, with
allocation-default-address-family=keep) and gives both peers `turn:[::1]:PORT`: each reaches
tern over IPv6 and must relay from an IPv6 relayed address (aiortc asks for no family, as
browsers do; `keep` answers in the family it came in). tern must log both allocations with
family=ipv6.

--transport picks the one ICE server URL both peers get: `turn:...?transport=udp` (the
default), `turn:...?transport=tcp`, or `turns:...?transport=tcp` to tern's TLS port with a
test CA made here and trusted through SSL_CERT_FILE (first checked to be refused without it).
Each peer's relay candidate must reach tern over that transport (from aioice's own socket),
and tern must log both allocations with that transport.

  target/webrtc-venv/bin/python tests/webrtc/aiortc_test.py [--tern target/debug/tern] [--transport tls] [--ipv6]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

import aiortc

from common import Pki, TestFailure, Tern, credentials, default_tern, free_port_block, log
from pair import describe, run_pair

MESSAGES = 20


def check_relay_pair(result: dict, relay_ip: str, ports: range, transport: str, server: str) -> None:
    """The peer completed on a relay/relay pair on tern's relay range, and its own relay
    candidate reached tern at `server` over `transport` (udp, tcp or tls)."""
    pair = result.get("selected_pair")
    if not result.get("ok") or not pair:
        raise TestFailure(f"the {result.get('role')}er did not complete:\n{describe(result)}")
    for side in ("local", "remote"):
        typ, _, hostport = pair[side].split(" ")
        host, port = hostport.rsplit(":", 1)
        if typ != "relay" or host != relay_ip or int(port) not in ports:
            raise TestFailure(f"the {result['role']}er's selected pair is not relay/relay on "
                              f"{relay_ip}:{ports.start}-{ports.stop - 1}: {pair}")
    if pair.get("relay_protocol") != transport or pair.get("turn_server") != server:
        raise TestFailure(f"the {result['role']}er's relay candidate reached tern over "
                          f"{pair.get('relay_protocol')} at {pair.get('turn_server')}, not {transport} at {server}")


def untrusted_fails(tern: Tern, secret: str, uri: str, tls_port: int) -> str:
    """Without the test CA trusted, aiortc must refuse tern's certificate: otherwise the TLS
    run would prove nothing about verification. Returns the error aiortc gave."""
    cred = credentials(tern.bin, secret, "aiortc-untrusted", uri, transport="tls", tls_port=tls_port)
    saved = os.environ.pop("SSL_CERT_FILE", None)
    try:
        results = run_pair([cred], [cred], "relay", messages=1, timeout=10)
        text = "\n".join(describe(r) for r in results)
        if any(r.get("ok") for r in results):
            raise TestFailure(f"aiortc connected over TLS without the test CA trusted:\n{text}")
    except TestFailure as e:
        text = str(e)
    finally:
        if saved is not None:
            os.environ["SSL_CERT_FILE"] = saved
    if "CERTIFICATE_VERIFY_FAILED" not in text:
        raise TestFailure(f"aiortc without the CA trusted failed, but not on certificate verification:\n{text}")
    # Python's asyncio closes the socket without sending the alert, so tern sees only a
    # closed connection (no tern_tls_handshake_failures_total); aioice's error is the proof.
    return "CERTIFICATE_VERIFY_FAILED"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tern", type=Path, default=default_tern())
    p.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp",
                   help="the one ICE server URL each peer gets: turn:...?transport=udp, "
                        "turn:...?transport=tcp or turns:...?transport=tcp")
    p.add_argument("--ipv6", action="store_true",
                   help="reach tern at [::1] and relay from ::1 (tern dual-stack, "
                        "allocation-default-address-family=keep)")
    p.add_argument("--wrong-secret", action="store_true",
                   help="mint the credentials with another secret, to see a failure's diagnosis")
    args = p.parse_args()

    base = free_port_block(ipv6=args.ipv6)
    port, tls_port, relay = base, base + 4, range(base + 16, base + 64)
    host, uri_host = ("::1", "[::1]") if args.ipv6 else ("127.0.0.1", "127.0.0.1")
    server = f"{uri_host}:{tls_port if args.transport == 'tls' else port}"
    secret, realm = secrets.token_hex(16), "webrtc.test"
    pki = Pki(dns=["localhost"], ips=["127.0.0.1", "::1"]) if args.transport == "tls" else None
    extra = ["--relay-ip", "127.0.0.1"] + (pki.tern_args(tls_port) if pki else [])
    if args.ipv6:
        extra += ["--listening-ip", "::1", "--relay-ip", "::1",
                  "--allocation-default-address-family", "keep"]
    log(f"aiortc {aiortc.__version__} over {args.transport}: tern on {server}, "
        f"relay ports {relay.start}-{relay.stop - 1}")
    try:
        with Tern(args.tern, "127.0.0.1", port, relay.start, relay.stop - 1, secret, realm, extra=extra) as tern:
            uri = f"turn:{uri_host}:{port}"
            mint = secrets.token_hex(16) if args.wrong_secret else secret
            offer = credentials(args.tern, mint, "aiortc-offer", uri, transport=args.transport, tls_port=tls_port)
            answer = credentials(args.tern, mint, "aiortc-answer", uri, transport=args.transport, tls_port=tls_port)
            log(f"each peer's only ICE server: {offer['urls']}")
            off = ans = None
            untrusted = ""
            try:
                if pki:
                    untrusted = untrusted_fails(tern, secret, uri, tls_port)
                    log(f"without the CA trusted, aiortc refuses tern's certificate ({untrusted})")
                    os.environ["SSL_CERT_FILE"] = str(pki.ca)  # inherited by both peers
                off, ans = run_pair([offer], [answer], "relay", messages=MESSAGES, timeout=30)
                check_relay_pair(off, host, relay, args.transport, server)
                check_relay_pair(ans, host, relay, args.transport, server)
                if off.get("round_trips") != MESSAGES:
                    raise TestFailure(f"{off.get('round_trips')} of {MESSAGES} round trips")
                family = "ipv6" if args.ipv6 else "ipv4"
                tern.require_allocations([offer["username"], answer["username"]], transport=args.transport,
                                         family=family)
            except TestFailure as e:
                print(f"FAIL aiortc relay-only over {args.transport} through tern: {e}\n", file=sys.stderr)
                for r in (off, ans):
                    if r:
                        print(describe(r), file=sys.stderr)
                print(tern.diagnosis(), file=sys.stderr)
                return 1
            trust = f", test CA trusted through SSL_CERT_FILE (refused without it)" if pki else ""
            print(f"PASS aiortc {aiortc.__version__} relay-only over {args.transport} ({offer['urls'][0]}, "
                  f"REST secret{trust}): {MESSAGES} data-channel round trips, median {off.get('rtt_ms_median')} ms; "
                  f"offerer pair {off['selected_pair']}, answerer pair {ans['selected_pair']}; tern logged both "
                  f"allocations with transport={args.transport} family={family}")
    finally:
        if pki:
            pki.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
