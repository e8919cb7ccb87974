"""Shared pieces of the WebRTC-stack tests: starting tern, minting credentials with
`tern credentials`, loopback port blocks, bounded subprocess handling, and the diagnosis a
failing test prints (what the client saw, and the TURN error codes in tern's debug log).

Network rule: tern listens on loopback or on addresses inside network namespaces the test
created; nothing here sends anywhere else.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKSPACE = HERE.parent.parent

# Loopback port area shared with the Rust harness (tests/src/ports.rs): below Linux's
# ephemeral range, so client sockets never take a relay port.
AREA_START, AREA_END, BLOCK = 20_000, 32_768, 64


class TestFailure(Exception):
    """A check failed; the message is the diagnosis."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def default_tern() -> Path:
    env = os.environ.get("TERN_BIN")
    return Path(env) if env else WORKSPACE / "target" / "debug" / "tern"


def free_port_block(host: str = "127.0.0.1") -> int:
    """The first port of a block of 64 free UDP ports (and a free TCP port at +3 for the
    admin listener), at a random place in 20000-32767. Bounded: tries every block once."""
    blocks = (AREA_END - AREA_START) // BLOCK
    start = random.randrange(blocks)
    for i in range(blocks):
        base = AREA_START + ((start + i) % blocks) * BLOCK
        if all(_udp_free(host, p) for p in range(base, base + BLOCK)) and _tcp_free(host, base + 3):
            return base
    raise TestFailure(f"no free block of {BLOCK} ports on {host}")


def _udp_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _tcp_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def credentials(tern: Path, secret: str, name: str, uri: str, ttl: int = 600) -> dict:
    """The `iceServers` entry `tern credentials` prints (its JSON line)."""
    out = subprocess.run(
        [str(tern), "credentials", "--secret", secret, "--ttl", str(ttl), "--name", name, "--uri", uri],
        capture_output=True, text=True, timeout=20, check=False,
    )
    if out.returncode != 0:
        raise TestFailure(f"`tern credentials` failed ({out.returncode}): {out.stderr}")
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            entry = json.loads(line)
            if not entry.get("username") or not entry.get("credential") or not entry.get("urls"):
                raise TestFailure(f"`tern credentials` printed an incomplete entry: {line}")
            return entry
    raise TestFailure(f"`tern credentials` printed no JSON iceServers entry:\n{out.stdout}")


class Tern:
    """`tern serve` as a child process (optionally inside a network namespace), debug log to a
    file, stopped (SIGINT, then SIGKILL) by `stop()`; use it as a context manager."""

    def __init__(self, tern: Path, listen_ip: str, port: int, min_port: int, max_port: int,
                 secret: str, realm: str, extra: list[str] | None = None,
                 netns: str | None = None, admin: str | None = None):
        self.listen = (listen_ip, port)
        self.log_path = Path(tempfile.mkstemp(prefix="tern-webrtc-", suffix=".log")[1])
        args = [
            str(tern), "serve",
            "--listening-ip", listen_ip, "--listening-port", str(port),
            "--min-port", str(min_port), "--max-port", str(max_port),
            "--use-auth-secret", "--static-auth-secret", secret, "--realm", realm,
            "--admin-listen", admin or f"127.0.0.1:{port + 3}",
            "--relay-threads", "1",
        ] + (extra or [])
        if netns:
            args = ["ip", "netns", "exec", netns] + args
        self.command = shlex.join(args)
        self.keep_log = False  # set by diagnosis(): a failure's log stays for reading
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "debug")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, limit: float = 15.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure(f"tern exited at start ({self.proc.returncode})\n"
                                  f"command: {self.command}\n{self.log_text()}")
            if "tern listening" in self.log_text():
                return
            time.sleep(0.05)
        raise TestFailure(f"tern did not start within {limit} s\ncommand: {self.command}\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def turn_errors(self) -> list[str]:
        """Log lines of failed requests (error codes), without the routine first 401."""
        lines = []
        for line in self.log_text().splitlines():
            if re.search(r"\b(4\d\d|5\d\d|300)\b", line) and ("error" in line.lower() or "code" in line):
                lines.append(line)
        return lines

    def require_allocations(self, usernames: list[str]) -> None:
        """Fails unless tern logged an allocation for each REST username (`<expiry>:<name>`)."""
        created = [l for l in self.log_text().splitlines() if "allocation created" in l]
        for user in usernames:
            if not any(f"username={user}" in l or f'username="{user}"' in l for l in created):
                raise TestFailure(f"tern logged no allocation for {user}; allocations: {created}")

    def allocation_lines(self) -> list[str]:
        return [l for l in self.log_text().splitlines() if "allocation" in l.lower()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            # Signal the whole session: with `ip netns exec` tern is a child of it.
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self._log.close()
        if not self.keep_log:
            self.log_path.unlink(missing_ok=True)

    def diagnosis(self) -> str:
        self.keep_log = True
        errs = self.turn_errors()
        text = self.log_text().splitlines()
        return (
            f"tern command: {self.command}\n"
            f"TURN error responses in tern's debug log ({len(errs)}):\n  " + "\n  ".join(errs[-20:] or ["(none)"]) +
            "\nallocation log lines:\n  " + "\n  ".join(self.allocation_lines()[-10:] or ["(none)"]) +
            f"\nlast lines of tern's log ({self.log_path}):\n  " + "\n  ".join(text[-25:])
        )

    def __enter__(self) -> "Tern":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def kill_group(proc: subprocess.Popen) -> None:
    """Ends a child started with start_new_session=True, and everything it started."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue
