#!/usr/bin/env python3
"""Two relay-only aiortc peers with a data channel through the TURN server at
127.0.0.1:PORT, for record.sh: the e2e suites' aiortc peers (tests/webrtc/pair.py) with
REST credentials from `tern credentials --secret fuzz-seed-secret`.

    aiortc_pair.py TERN_BINARY PORT
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "webrtc"))

from common import credentials  # noqa: E402
from pair import describe, run_pair  # noqa: E402


def main():
    tern, port = sys.argv[1:3]
    cred = credentials(Path(tern), "fuzz-seed-secret", "aiortc", f"turn:127.0.0.1:{port}", transport="udp")
    for result in run_pair([cred], [cred], "relay", messages=3, timeout=20):
        print(describe(result))


if __name__ == "__main__":
    main()
