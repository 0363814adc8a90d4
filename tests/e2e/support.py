"""Shared pieces of the browser tests: tool discovery, the daemon subprocess, process cleanup."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ..interop_support import popen_daemon, read_log, tail
from ..processes import free_port

REPO = Path(__file__).resolve().parents[2]
WEB_DEMO = REPO / "web" / "demo"
STATIC_DEMO = REPO / "src" / "civicrealtime" / "http" / "static" / "demo"
E2E_DIR = Path(__file__).resolve().parent

NODE = shutil.which("node")
NODE_MODULES = WEB_DEMO / "node_modules"
INSTALL_HINT = "run `npm ci --prefix web/demo` (nox -s tests does it)"


def chromium_path() -> str | None:
    """$CIVICREALTIME_E2E_CHROMIUM, else Debian's /usr/bin/chromium, else chromium on PATH."""
    for candidate in (os.environ.get("CIVICREALTIME_E2E_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def kill_processes_mentioning(marker: str) -> list[int]:
    """SIGKILL the processes whose command line mentions `marker` (a unique temp path).

    Playwright starts Chromium in its own process group with its profile under $TMPDIR, so a
    driver killed at a deadline can leave it behind; the per-run temp path names exactly ours.
    """
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
    return killed


def run_bounded(
    cmd: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> tuple[int | None, str, str]:
    """Run `cmd`; at the deadline SIGTERM it (Playwright then closes its browser), then SIGKILL.

    Returns (exit code or None on timeout, stdout, stderr).
    """
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return None, out, err
    return proc.returncode, out, err


CONFIG_TEMPLATE = """\
host: 127.0.0.1
port: {ws_port}
shutdown_timeout: 2
auth:
  mode: jwt   # real HS256 tokens; the secret comes from $CIVICREALTIME_JWT_SECRET
rooms:
  cleanup_timeout: 5
http:
  host: 127.0.0.1
  port: {http_port}
demo:
  enabled: true
history:
  version_idle: 0.5
logging:
  level: debug
"""

JWT_SECRET = "demo-e2e-" + "s" * 40
STARTUP_TIMEOUT = 20.0
SIGTERM_TIMEOUT = 10.0


class DemoDaemon:
    """`python -m civicrealtime` with the HTTP port and the demo page on free loopback ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ws_port = free_port()
        self.http_port = free_port()
        self.config = workdir / "realtime.yml"
        self.config.write_text(
            CONFIG_TEMPLATE.format(ws_port=self.ws_port, http_port=self.http_port),
            encoding="utf-8",
        )
        self.stderr_path = workdir / "daemon.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def demo_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/demo/"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return read_log(self.stderr_path)

    def log_tail(self) -> str:
        return tail(self.log())

    def start(self) -> None:
        self.proc = popen_daemon(self.config, self.workdir, JWT_SECRET, self.stderr_path)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            code = self.proc.poll()
            if code is not None:
                pytest.fail(f"daemon exited with code {code} at startup\n{self.log_tail()}")
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(
                    f"daemon did not serve {self.demo_url} and ws port {self.ws_port} within "
                    f"{STARTUP_TIMEOUT:.0f} s\n--- daemon stderr ---\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.demo_url, timeout=1) as response:
                if response.status != 200:
                    return False
            with socket.create_connection(("127.0.0.1", self.ws_port), timeout=1):
                return True
        except OSError:
            return False

    def wait_exit(self, timeout: float = SIGTERM_TIMEOUT) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"daemon did not exit within {timeout:.0f} s\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (if still running), then SIGKILL after SIGTERM_TIMEOUT."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=SIGTERM_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
