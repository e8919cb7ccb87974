"""One aiortc peer, driven over stdin/stdout with one JSON object a line, so the two peers of
a test can run in different network namespaces with the signalling carried by the parent's
pipes (no signalling server, no network between them but the one under test).

  --role offer:  prints {"type": "offer", "sdp": ...}, reads {"type": "answer", ...}, opens a
                 data channel and sends `--messages` pings, each answered by a pong.
  --role answer: reads the offer, prints the answer, echoes every ping as a pong.

Both print a final {"type": "result", ...}: ok, ICE states seen, local and remote candidates,
the selected (nominated) pair, round trips, and the TURN allocation error if any. The exit
status is 0 only if every message made its round trip within `--timeout` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
import time

import aioice.turn
from aioice.turn import TurnClientTcpProtocol
from aiortc import (RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection,
                    RTCSessionDescription)


class TurnLog(logging.Handler):
    """Keeps aioice's log lines about TURN (allocation errors carry the STUN error code)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if len(self.lines) >= 200:
            return
        error = re.search(r"message_method=Method\.(\w+), message_class=Class\.ERROR.*'ERROR-CODE': \((\d+), '([^']*)'", msg)
        if error:
            self.lines.append(f"TURN {error[1]} answered {error[2]} {error[3]}")
        elif "Message(" not in msg and any(w in msg.lower() for w in ("turn", "error", "fail")):
            self.lines.append(f"{record.name}: {msg}")


def record_turn_failures(turn_log: TurnLog) -> None:
    """aioice drops the exception of a relay candidate that failed (a refused connection, a
    certificate it did not trust, an allocation error) without a log line; wrap its TURN
    endpoint factory so the reason lands in the result's turn_log."""
    create = aioice.turn.create_turn_endpoint

    async def create_logged(*args, **kwargs):
        server = kwargs.get("server_addr")
        how = "tls" if kwargs.get("ssl") else kwargs.get("transport", "udp")
        try:
            return await create(*args, **kwargs)
        except asyncio.CancelledError:
            turn_log.lines.append(f"TURN over {how} to {server}: no allocation before aioice's gathering timeout")
            raise
        except Exception as exc:
            turn_log.lines.append(f"TURN over {how} to {server} failed: {type(exc).__name__}: {exc}")
            raise

    aioice.turn.create_turn_endpoint = create_logged


def accept_ipv6_literals() -> None:
    """aiortc 1.16 parses `turn:HOST:PORT` with a host pattern that stops at the first colon,
    so an IPv6 literal (`turn:[::1]:3478`, RFC 7065 §3.1 allows IP-literal hosts, and
    browsers take it) is refused as malformed. Parse the bracketed host here and let aiortc
    parse the rest, so the TURN server can be named by its IPv6 address."""
    import aiortc.rtcicetransport as rtc

    parse = rtc.parse_stun_turn_uri

    def parse_literal(uri: str):
        m = re.fullmatch(r"(turns?|stuns?):\[([0-9A-Fa-f:.]+)\](.*)", uri)
        if not m:
            return parse(uri)
        parsed = parse(f"{m[1]}:ipv6-literal{m[3]}")
        parsed["host"] = m[2]
        return parsed

    rtc.parse_stun_turn_uri = parse_literal


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_msg(reader: asyncio.StreamReader, want: str, deadline: float) -> dict:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {want} from the other peer in time")
        line = await asyncio.wait_for(reader.readline(), left)
        if not line:
            raise EOFError(f"stdin closed before the {want}")
        msg = json.loads(line)
        if msg.get("type") == want:
            return msg


def cand(c) -> str:
    return f"{c.type} {c.transport} {c.host}:{c.port}"


def ice_details(pc: RTCPeerConnection) -> dict:
    """Candidates and the nominated pair from aiortc's ICE transport (aioice underneath)."""
    out: dict = {"local_candidates": [], "remote_candidates": [], "selected_pair": None}
    try:
        transport = pc.sctp.transport.transport  # RTCDtlsTransport -> RTCIceTransport
        conn = transport.iceGatherer._connection  # aioice.Connection
    except AttributeError:
        return out
    out["local_candidates"] = [cand(c) for c in conn.local_candidates]
    out["remote_candidates"] = [cand(c) for c in conn.remote_candidates]
    nominated = getattr(conn, "_nominated", {})
    if nominated:
        pair = nominated.get(1) or next(iter(nominated.values()))
        local = pair.protocol.local_candidate
        out["selected_pair"] = {"local": cand(local), "remote": cand(pair.remote_candidate),
                                **relay_leg(pair.protocol)}
    return out


def relay_leg(protocol) -> dict:
    """How a relay candidate's protocol reaches the TURN server, from aioice's objects: the
    TurnTransport wraps an inner protocol whose own transport is a UDP endpoint, a TCP
    connection or a TLS connection (an `ssl_object` then). Empty for other candidates."""
    inner = getattr(protocol.transport, "_TurnTransport__inner_protocol", None)
    if inner is None or inner.transport is None:
        return {}
    link = inner.transport
    if link.get_extra_info("ssl_object") is not None:
        relay_protocol = "tls"
    elif isinstance(inner, TurnClientTcpProtocol):
        relay_protocol = "tcp"
    else:
        relay_protocol = "udp"
    peer = link.get_extra_info("peername")
    host = f"[{peer[0]}]" if peer and ":" in peer[0] else (peer[0] if peer else None)
    return {"relay_protocol": relay_protocol, "turn_server": f"{host}:{peer[1]}" if peer else None}


async def run(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    turn_log = TurnLog()
    record_turn_failures(turn_log)
    accept_ipv6_literals()
    logging.getLogger("aioice").addHandler(turn_log)
    logging.getLogger("aioice").setLevel(logging.DEBUG)

    servers = []
    for entry in json.loads(args.ice_servers):
        servers.append(RTCIceServer(urls=entry["urls"], username=entry.get("username"),
                                    credential=entry.get("credential")))
    policy = RTCIceTransportPolicy.RELAY if args.policy == "relay" else RTCIceTransportPolicy.ALL
    pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))

    states: list[str] = []
    done = asyncio.Event()
    rtts: list[float] = []
    echoed = 0
    result: dict = {"type": "result", "role": args.role, "ok": False}

    snapshot: dict = {}

    @pc.on("iceconnectionstatechange")
    def _on_ice() -> None:
        states.append(pc.iceConnectionState)
        if pc.iceConnectionState in ("completed", "connected"):
            # The nominated pair is forgotten when the connection closes: keep it now.
            snapshot.update(ice_details(pc))
        if pc.iceConnectionState == "failed":
            done.set()

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    try:
        if args.role == "offer":
            channel = pc.createDataChannel("tern")
            sent: dict[int, float] = {}

            @channel.on("open")
            def _open() -> None:
                for i in range(args.messages):
                    sent[i] = time.monotonic()
                    channel.send(f"ping {i}")

            @channel.on("message")
            def _msg(message) -> None:
                if isinstance(message, str) and message.startswith("pong "):
                    i = int(message.split()[1])
                    if i in sent:
                        rtts.append((time.monotonic() - sent.pop(i)) * 1000)
                    if len(rtts) == args.messages:
                        done.set()

            await pc.setLocalDescription(await pc.createOffer())
            emit({"type": "offer", "sdp": pc.localDescription.sdp})
            answer = await read_msg(reader, "answer", deadline)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        else:
            @pc.on("datachannel")
            def _dc(channel) -> None:
                @channel.on("message")
                def _msg(message) -> None:
                    nonlocal echoed
                    if isinstance(message, str) and message.startswith("ping "):
                        channel.send("pong " + message.split()[1])
                        echoed += 1
                        if echoed == args.messages:
                            done.set()

            offer = await read_msg(reader, "offer", deadline)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            emit({"type": "answer", "sdp": pc.localDescription.sdp})

        if "a=candidate:" not in pc.localDescription.sdp:
            result["error"] = "gathered no candidate (with policy relay: no TURN allocation, see turn_log)"
        else:
            try:
                await asyncio.wait_for(done.wait(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                result["error"] = f"timed out after {args.timeout} s"
        if args.role == "offer":
            result["ok"] = len(rtts) == args.messages
            result["round_trips"] = len(rtts)
            if rtts:
                result["rtt_ms_median"] = round(sorted(rtts)[len(rtts) // 2], 2)
        else:
            result["ok"] = echoed == args.messages
            result["echoed"] = echoed
            # Let the last pong leave before closing.
            await asyncio.sleep(0.5)
    except Exception as exc:  # reported, not raised: the parent wants the diagnosis
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        result["ice_states"] = states
        result["final_ice_state"] = pc.iceConnectionState
        details = ice_details(pc)
        for key, value in snapshot.items():
            if not details.get(key):
                details[key] = value
        result.update(details)
        result["turn_log"] = turn_log.lines[-30:]
        emit(result)
        await pc.close()
    return 0 if result["ok"] else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--role", choices=["offer", "answer"], required=True)
    p.add_argument("--ice-servers", required=True, help="JSON list of iceServers entries")
    p.add_argument("--policy", choices=["relay", "all"], default="relay")
    p.add_argument("--messages", type=int, default=20)
    p.add_argument("--timeout", type=float, default=30.0)
    return asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
