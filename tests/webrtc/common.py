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
import shutil
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


def free_port_block(host: str = "127.0.0.1", ipv6: bool = False) -> int:
    """The first port of a block of 64 free UDP ports, with free TCP ports at +0 (TURN over
    TCP), +3 (the admin listener) and +4 (TURN over TLS), at a random place in 20000-32767;
    with `ipv6`, free on ::1 too. Bounded: tries every block once."""
    hosts = [host] + (["::1"] if ipv6 else [])
    blocks = (AREA_END - AREA_START) // BLOCK
    start = random.randrange(blocks)
    for i in range(blocks):
        base = AREA_START + ((start + i) % blocks) * BLOCK
        if all(_udp_free(h, p) for h in hosts for p in range(base, base + BLOCK)) and \
                all(_tcp_free(h, base + k) for h in hosts for k in (0, 3, 4)):
            return base
    raise TestFailure(f"no free block of {BLOCK} ports on {', '.join(hosts)}")


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _udp_free(host: str, port: int) -> bool:
    with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _tcp_free(host: str, port: int) -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def credentials(tern: Path, secret: str, name: str, uri: str, ttl: int = 600,
                transport: str | None = None, tls_port: int | None = None) -> dict:
    """The `iceServers` entry `tern credentials` prints (its JSON line). With `transport`
    (udp, tcp or tls) a `turn:HOST:PORT` uri becomes that transport's one URL (`tls`:
    `turns:HOST:TLS_PORT?transport=tcp`)."""
    args = [str(tern), "credentials", "--secret", secret, "--ttl", str(ttl), "--name", name, "--uri", uri]
    if transport:
        args += ["--transports", transport]
    if tls_port:
        args += ["--tls-port", str(tls_port)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
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


class Pki:
    """A test CA and a leaf it signs (key usage serverAuth, SANs as given), as PEM files in a
    temporary directory removed by `remove()`; `tern_args` turns TLS on in tern. Made with the
    `cryptography` package, which the venv has as a dependency of aiortc."""

    def __init__(self, dns: list[str], ips: list[str]):
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self.dir = Path(tempfile.mkdtemp(prefix="tern-webrtc-pki-"))
        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=60)

        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(name("tern webrtc test CA")).issuer_name(name("tern webrtc test CA"))
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(start).not_valid_after(end)
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        leaf = (x509.CertificateBuilder().subject_name(name((dns or ips)[0])).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        self.ca = self.dir / "ca.pem"
        self.cert = self.dir / "cert.pem"
        self.key = self.dir / "key.pem"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))

    def tern_args(self, tls_port: int) -> list[str]:
        return ["--cert", str(self.cert), "--pkey", str(self.key), "--tls-listening-port", str(tls_port)]

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Tern:
    """`tern serve` as a child process (optionally inside a network namespace), debug log to a
    file, stopped (SIGINT, then SIGKILL) by `stop()`; use it as a context manager."""

    def __init__(self, tern: Path, listen_ip: str, port: int, min_port: int, max_port: int,
                 secret: str, realm: str, extra: list[str] | None = None,
                 netns: str | None = None, admin: str | None = None):
        self.bin = tern
        self.admin = admin or f"127.0.0.1:{port + 3}"
        self.listen = (listen_ip, port)
        self.log_path = Path(tempfile.mkstemp(prefix="tern-webrtc-", suffix=".log")[1])
        args = [
            str(tern), "serve",
            "--listening-ip", listen_ip, "--listening-port", str(port),
            "--min-port", str(min_port), "--max-port", str(max_port),
            "--use-auth-secret", "--static-auth-secret", secret, "--realm", realm,
            "--admin-listen", self.admin,
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

    def require_allocations(self, usernames: list[str], transport: str | None = None,
                            family: str | None = None) -> None:
        """Fails unless tern logged an allocation for each REST username (`<expiry>:<name>`),
        and, with `transport` (udp, tcp or tls), only ones that came over that transport, and,
        with `family` (ipv4, ipv6, ipv4+ipv6), only ones relayed in that family."""
        created = [l for l in self.log_text().splitlines() if "allocation created" in l]
        for user in usernames:
            mine = [l for l in created if f"username={user}" in l or f'username="{user}"' in l]
            if not mine:
                raise TestFailure(f"tern logged no allocation for {user}; allocations: {created}")
            for key, want in (("transport", transport), ("family", family)):
                if want:
                    wrong = [l for l in mine if f"{key}={want} " not in l and f'{key}="{want}"' not in l]
                    if wrong:
                        raise TestFailure(f"tern logged allocations for {user} not with {key}={want}: {wrong}")

    def metrics(self) -> dict[str, float]:
        """tern's /metrics from its admin port, as {series (name and labels): value}."""
        import urllib.request
        host, port = self.admin.rsplit(":", 1)
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                out[series] = float(value)
        return out

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
