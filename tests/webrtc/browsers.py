"""The headless browsers of the WebRTC-stack tests, Chromium and Firefox, behind one interface:
find the binary, read its version, and run it on a local page with a fresh profile that is
removed afterwards, optionally inside a network namespace and optionally with a fresh NSS
database that trusts a test CA.

The two differ in what they need:
- Chromium: one `--user-data-dir`; on Linux it reads locally trusted CAs from
  `$HOME/.pki/nssdb`, so trusting a CA means a fresh HOME.
- Firefox (Debian's `firefox-esr`): `--headless --no-remote --profile DIR`; the profile's
  `user.js` turns on loopback ICE candidates (`media.peerconnection.ice.loopback`: without it
  Firefox drops every candidate on 127.0.0.0/8) and turns off the background services that
  would reach outside addresses (updates, telemetry, safe browsing, captive-portal checks,
  remote settings, DNS-over-HTTPS, OCSP). The profile itself holds the NSS database
  (`certutil -d sql:PROFILE`), so that is where a test CA goes. Firefox makes no `turns:`
  connection to an IP literal: a TLS ICE server needs a host name that the certificate names.

Nothing here contacts anything but the page URL it is given (a 127.0.0.1 page server).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from common import TestFailure, kill_group

KINDS = ("chromium", "firefox")

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--disable-breakpad", "--no-pings",
    "--no-default-browser-check", "--metrics-recording-only", "--mute-audio",
    "--no-proxy-server",
]

# Firefox's profile preferences. The first block is what the tests need; the rest keeps a
# fresh profile from reaching any outside address (the network rule) and from showing
# first-run pages.
FIREFOX_PREFS = {
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.navigator.permission.disabled": True,
    "app.update.auto": False,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "browser.aboutwelcome.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.ping-centre.telemetry": False,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.search.geoip.url": "",
    "browser.search.update": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.tabs.warnOnClose": False,
    "browser.translations.enable": False,
    "browser.uitour.enabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "dom.push.connection.enabled": False,
    "dom.push.serverURL": "",
    "extensions.blocklist.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.update.enabled": False,
    "geo.provider.network.url": "",
    "identity.fxaccounts.enabled": False,
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-manager.url": "",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.http.speculative-parallel-limit": 0,
    "network.prefetch-next": False,
    "network.trr.mode": 5,
    "security.OCSP.enabled": 0,
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "startup.homepage_welcome_url": "",
    "toolkit.startup.max_resumed_crashes": -1,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.unified": False,
}


def _user_js(prefs: dict) -> str:
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "".join(f'user_pref("{k}", {value(v)});\n' for k, v in prefs.items())


def nss_db(db: Path, ca: Path | None) -> None:
    """A fresh NSS database in `db` (created) trusting `ca` for TLS servers, or nothing
    without `ca`. Made with `certutil` from libnss3-tools."""
    certutil = shutil.which("certutil")
    if not certutil:
        raise TestFailure("certutil not found (apt-get install libnss3-tools)")
    db.mkdir(parents=True, exist_ok=True)
    steps = [["-N", "--empty-password"]]
    if ca:
        steps.append(["-A", "-n", "tern-test-ca", "-t", "C,,", "-i", str(ca)])
    for args in steps:
        out = subprocess.run([certutil, *args, "-d", f"sql:{db}"], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise TestFailure(f"certutil {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")


class Browser:
    """One installed browser: `kind` is chromium or firefox, `binary` its path."""

    def __init__(self, kind: str, binary: str):
        self.kind = kind
        self.binary = binary
        self._version: str | None = None

    @property
    def name(self) -> str:
        return "Chromium" if self.kind == "chromium" else "Firefox"

    @property
    def version(self) -> str:
        """What `--version` prints, e.g. `Chromium 131.0.6778.85 built on Debian ...` or
        `Mozilla Firefox 128.5.0esr`."""
        if self._version is None:
            out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, timeout=30,
                                 env=dict(os.environ, MOZ_HEADLESS="1"))
            # Debian's chromium wrapper may complain on stderr; the version is on stdout.
            lines = [l for l in out.stdout.splitlines() if l.strip()] or \
                [l for l in out.stderr.splitlines() if l.strip()]
            self._version = lines[-1].strip() if lines else self.kind
        return self._version

    @property
    def short_version(self) -> str:
        """The version without Debian's build note: `Chromium 131.0.6778.85`."""
        return self.version.split(" built")[0].replace("Mozilla ", "")

    @contextmanager
    def open(self, url: str, netns: str | None = None, trust: Path | None = None,
             fresh_nss: bool = False) -> Iterator[subprocess.Popen]:
        """Runs the browser headless on `url` with a fresh profile (inside `netns` if given),
        its output going to a temporary file that `output(proc)` reads. With `trust` (a CA
        PEM) or `fresh_nss`, the browser's NSS database is a fresh one trusting only `trust`.
        Kills the browser and removes the profile on exit."""
        scratch = Path(tempfile.mkdtemp(prefix=f"tern-{self.kind}-"))
        env = dict(os.environ)
        if self.kind == "chromium":
            profile = scratch / "profile"
            cmd = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url]
            if trust or fresh_nss:
                home = scratch / "home"
                nss_db(home / ".pki" / "nssdb", trust)
                env["HOME"] = str(home)
        else:
            profile = scratch / "profile"
            profile.mkdir()
            (profile / "user.js").write_text(_user_js(FIREFOX_PREFS))
            if trust or fresh_nss:
                nss_db(profile, trust)
            # Firefox's own HOME, so nothing from the caller's ~/.mozilla is read or written.
            (scratch / "home").mkdir()
            env.update(HOME=str(scratch / "home"), MOZ_HEADLESS="1", MOZ_CRASHREPORTER_DISABLE="1")
            cmd = [self.binary, "--headless", "--no-remote", "--profile", str(profile), url]
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        out = tempfile.TemporaryFile()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
        proc.tern_output = out  # type: ignore[attr-defined]
        try:
            yield proc
        finally:
            kill_group(proc)
            shutil.rmtree(scratch, ignore_errors=True)

    @staticmethod
    def output(proc: subprocess.Popen) -> str:
        """What the browser printed so far (its last lines are a failure's diagnosis)."""
        out = proc.tern_output  # type: ignore[attr-defined]
        out.seek(0)
        return out.read().decode(errors="replace")


def find_browser(kind: str) -> Browser | None:
    """The installed `kind` (chromium or firefox), or None. `CHROMIUM_BIN` and `FIREFOX_BIN`
    name other binaries."""
    names = {"chromium": ("CHROMIUM_BIN", "chromium", "chromium-browser", "google-chrome"),
             "firefox": ("FIREFOX_BIN", "firefox-esr", "firefox")}[kind]
    for name in (os.environ.get(names[0]), *names[1:]):
        if name and shutil.which(name):
            return Browser(kind, shutil.which(name))
    return None


def install_hint(kind: str) -> str:
    return {"chromium": "apt-get install chromium", "firefox": "apt-get install firefox-esr"}[kind]
