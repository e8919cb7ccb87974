#!/usr/bin/env python3
"""Records the UDP datagrams a TURN client and server exchange, for the fuzz seeds.

    record.py LISTEN_PORT SERVER_PORT OUT_DIR SECONDS

Listens on 127.0.0.1:LISTEN_PORT, forwards every datagram from a client to the server at
127.0.0.1:SERVER_PORT from a socket of its own per client, and sends the answers back.
Each datagram is written to OUT_DIR as NNNN-c.bin (client to server) or NNNN-s.bin (server
to client). Loopback only; stops after SECONDS or 2,000 datagrams. record.sh drives it.
"""
import os
import select
import socket
import sys
import time

MAX_DATAGRAMS = 2000


def main():
    listen_port, server_port, out_dir, seconds = sys.argv[1:5]
    server = ("127.0.0.1", int(server_port))
    os.makedirs(out_dir, exist_ok=True)
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", int(listen_port)))
    upstream = {}  # client address -> socket connected to the server
    client_of = {}  # socket -> client address
    count = 0
    deadline = time.monotonic() + float(seconds)
    while count < MAX_DATAGRAMS and time.monotonic() < deadline:
        ready, _, _ = select.select([front, *client_of], [], [], 0.2)
        for s in ready:
            if s is front:
                data, addr = front.recvfrom(65535)
                up = upstream.get(addr)
                if up is None:
                    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    up.bind(("127.0.0.1", 0))
                    up.connect(server)
                    upstream[addr] = up
                    client_of[up] = addr
                up.send(data)
                direction = "c"
            else:
                try:
                    data = s.recv(65535)
                except ConnectionRefusedError:
                    continue
                front.sendto(data, client_of[s])
                direction = "s"
            with open(os.path.join(out_dir, f"{count:04d}-{direction}.bin"), "wb") as f:
                f.write(data)
            count += 1
    print(f"recorded {count} datagrams in {out_dir}")


if __name__ == "__main__":
    main()
