"""Runs two `aiortc_peer.py` processes (each optionally inside a network namespace), carries
the offer and answer between their pipes, and collects both results. Bounded in time; both
processes are killed whatever happens."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from common import HERE, TestFailure, kill_group


@dataclass
class PeerRun:
    role: str
    netns: str | None
    proc: subprocess.Popen
    lines: "queue.Queue[dict]" = field(default_factory=queue.Queue)
    stderr: list[str] = field(default_factory=list)
    result: dict | None = None


def _pump(run: PeerRun) -> None:
    for raw in run.proc.stdout:
        try:
            run.lines.put(json.loads(raw))
        except json.JSONDecodeError:
            run.stderr.append("stdout: " + raw.rstrip())


def _pump_err(run: PeerRun) -> None:
    for raw in run.proc.stderr:
        if len(run.stderr) < 400:
            run.stderr.append(raw.rstrip())


def _start(role: str, ice_servers: list[dict], policy: str, netns: str | None,
           messages: int, timeout: float, script: str, extra: list[str]) -> PeerRun:
    cmd = [sys.executable, str(HERE / script), "--role", role,
           "--ice-servers", json.dumps(ice_servers), "--policy", policy,
           "--messages", str(messages), "--timeout", str(timeout), *extra]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = PeerRun(role, netns, proc)
    threading.Thread(target=_pump, args=(run,), daemon=True).start()
    threading.Thread(target=_pump_err, args=(run,), daemon=True).start()
    return run


def _next(run: PeerRun, deadline: float) -> dict | None:
    try:
        return run.lines.get(timeout=max(0.01, deadline - time.monotonic()))
    except queue.Empty:
        return None


def run_pair(offer_servers: list[dict], answer_servers: list[dict], policy: str,
             offer_ns: str | None = None, answer_ns: str | None = None,
             messages: int = 20, timeout: float = 30.0,
             answer_script: str = "aiortc_peer.py",
             answer_args: list[str] | None = None,
             answer_policy: str | None = None) -> tuple[dict, dict]:
    """Returns (offerer result, answerer result). The offerer is always aiortc; the answerer
    is `answer_script` (aiortc_peer.py, or browser_peer.py for a browser), with `answer_args`
    added to its command line (browser_peer.py: `--browser firefox`, `--trust CA.pem`) and
    `answer_policy` (default: `policy`). Raises TestFailure if a peer broke down before
    producing a result (not if ICE merely failed: the results say that)."""
    offerer = _start("offer", offer_servers, policy, offer_ns, messages, timeout, "aiortc_peer.py", [])
    answerer = _start("answer", answer_servers, answer_policy or policy, answer_ns, messages, timeout,
                      answer_script, answer_args or [])
    deadline = time.monotonic() + timeout + 20  # gathering, DTLS, result lines
    try:
        for src, dst, kind in ((offerer, answerer, "offer"), (answerer, offerer, "answer")):
            msg = _next(src, deadline)
            while msg is not None and msg.get("type") not in (kind, "result"):
                msg = _next(src, deadline)
            if msg is None or msg.get("type") == "result":
                src.result = msg
                raise TestFailure(f"the {src.role}er produced no {kind}: {msg}\n"
                                  + "\n".join(src.stderr[-30:]))
            dst.proc.stdin.write(json.dumps(msg) + "\n")
            dst.proc.stdin.flush()
        for run in (offerer, answerer):
            while run.result is None:
                msg = _next(run, deadline)
                if msg is None:
                    raise TestFailure(f"the {run.role}er gave no result in time\n"
                                      + "\n".join(run.stderr[-30:]))
                if msg.get("type") == "result":
                    run.result = msg
        return offerer.result, answerer.result
    finally:
        for run in (offerer, answerer):
            try:
                run.proc.stdin.close()
            except OSError:
                pass
            try:
                run.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                kill_group(run.proc)


def describe(result: dict | None) -> str:
    if not result:
        return "  (no result)"
    keys = ["role", "ok", "error", "final_ice_state", "ice_states", "selected_pair",
            "local_candidates", "remote_candidates", "round_trips", "echoed", "rtt_ms_median",
            "turn_log"]
    return "\n".join(f"  {k}: {json.dumps(result[k])}" for k in keys if k in result)
