"""Daemon subprocesses for the tests that need a real process (signals, kill -9, the CLI)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

STARTUP_SECONDS = 15.0
STOP_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    workdir: Path,
    config_text: str,
    *,
    port: int,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[str]:
    """`python -m civicrealtime --config <workdir>/rt.yml`, returned once it listens."""
    config = workdir / "rt.yml"
    config.write_text(config_text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "civicrealtime", "--config", str(config)],
        cwd=workdir,
        env={**os.environ, **(env or {})},
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_port(port, proc)
    return proc


def wait_for_port(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if proc.poll() is not None:
            pytest.fail(f"daemon exited early:\n{proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            if time.monotonic() > deadline:
                stop(proc)
                pytest.fail(f"daemon did not listen on {port} within {STARTUP_SECONDS:.0f} s")
            time.sleep(0.05)
        else:
            return


def terminate(proc: subprocess.Popen[str]) -> int:
    """SIGTERM, and the exit code (SIGKILL after STOP_SECONDS, then the test fails)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail(f"daemon did not exit within {STOP_SECONDS:.0f} s of SIGTERM")


def stop(proc: subprocess.Popen[str]) -> None:
    """Make sure the process is gone (for `finally` blocks)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
