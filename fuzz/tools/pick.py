#!/usr/bin/env python3
"""Copies a varied few of record.sh's recordings into the seed corpus.

    pick.py RECORDINGS_DIR SEEDS_DIR

From each recording, the first datagram of every kind (direction, then STUN method and class,
or ChannelData) goes to SEEDS_DIR/stun_message or SEEDS_DIR/channel_data, named
rec-<recording>-<c|s>-<kind>. The seed generator (examples/seeds.rs) builds the stream and
core seeds made from them.
"""
import os
import struct
import sys

METHODS = {1: "binding", 3: "allocate", 4: "refresh", 6: "send", 7: "data", 8: "permission", 9: "channel-bind"}
CLASSES = {0: "request", 1: "indication", 2: "success", 3: "error"}


def kind(data):
    if data[0] & 0xC0 == 0x40:
        return "channel_data", "channel-data"
    t = struct.unpack(">H", data[:2])[0]
    method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80)
    klass = ((t >> 4) & 1) | ((t >> 7) & 2)
    return "stun_message", f"{METHODS.get(method, hex(method))}-{CLASSES[klass]}"


def main():
    recordings, seeds = sys.argv[1:3]
    for rec in sorted(os.listdir(recordings)):
        path = os.path.join(recordings, rec)
        if not os.path.isdir(path):
            continue
        seen = set()
        for name in sorted(os.listdir(path)):
            data = open(os.path.join(path, name), "rb").read()
            direction = name.split("-")[1][0]
            target, what = kind(data)
            if (direction, what) in seen:
                continue
            seen.add((direction, what))
            os.makedirs(os.path.join(seeds, target), exist_ok=True)
            with open(os.path.join(seeds, target, f"rec-{rec}-{direction}-{what}"), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
