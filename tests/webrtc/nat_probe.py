"""Classifies a NAT's mapping behaviour (RFC 4787), run inside the test's namespaces.

  nat_probe.py reflect --bind IP --port P1 --port P2 --lifetime S
      answers every datagram with the source address it came from ("ip:port"), for S seconds.
  nat_probe.py probe --to IP:P1 --to IP:P2
      from ONE socket, asks each reflector how it sees us; prints JSON {"mapped": [...]}.
      Same mapped port for both destinations: endpoint-independent mapping; different ports:
      address- and port-dependent (symmetric) mapping.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time


def reflect(bind: str, ports: list[int], lifetime: float) -> int:
    sel = selectors.DefaultSelector()
    socks = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((bind, port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    print("ready", flush=True)
    deadline = time.monotonic() + lifetime
    answered = 0
    while time.monotonic() < deadline and answered < 1000:
        for key, _ in sel.select(timeout=max(0.0, min(0.5, deadline - time.monotonic()))):
            data, addr = key.fileobj.recvfrom(2048)
            key.fileobj.sendto(f"{addr[0]}:{addr[1]}".encode(), addr)
            answered += 1
    for s in socks:
        s.close()
    return 0


def probe(targets: list[str]) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    s.settimeout(1.0)
    mapped = []
    for target in targets:
        host, port = target.rsplit(":", 1)
        answer = None
        for _ in range(3):
            s.sendto(b"?", (host, int(port)))
            try:
                data, src = s.recvfrom(2048)
                if src == (host, int(port)):
                    answer = data.decode()
                    break
            except socket.timeout:
                continue
        mapped.append(answer)
    print(json.dumps({"local": "%s:%d" % s.getsockname(), "mapped": mapped}), flush=True)
    return 0 if all(mapped) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reflect")
    r.add_argument("--bind", required=True)
    r.add_argument("--port", type=int, action="append", required=True)
    r.add_argument("--lifetime", type=float, default=60)
    q = sub.add_parser("probe")
    q.add_argument("--to", action="append", required=True)
    a = p.parse_args()
    return reflect(a.bind, a.port, a.lifetime) if a.cmd == "reflect" else probe(a.to)


if __name__ == "__main__":
    sys.exit(main())
