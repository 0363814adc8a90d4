"""Daemon processes of one cluster, and a private Redis server, for the cluster tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REDIS_URL, free_port

STARTUP_TIMEOUT = 20.0
SIGTERM_TIMEOUT = 15.0
LOG_TAIL = 6000
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
ADMIN_TOKEN = "cluster-admin-token-" + "x" * 20


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        code = proc.poll()
        if code is not None:
            pytest.fail(f"{what} exited with code {code} before listening\n{tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"{what} did not listen on port {port} in time\n{tail(log)}")
        time.sleep(0.05)


def tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"<no {path.name}>"
    return f"--- {path} ---\n" + (text if len(text) <= LOG_TAIL else "…" + text[-LOG_TAIL:])


class Node:
    """One `python -m civicrealtime` with clustering on (development auth)."""

    def __init__(
        self,
        workdir: Path,
        *,
        name: str,
        prefix: str,
        pg_url: str,
        redis_url: str = REDIS_URL,
        **overrides: Any,
    ) -> None:
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.http_port = free_port()
        (self.workdir / "admin-token").write_text(ADMIN_TOKEN, encoding="utf-8")
        config: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "shutdown_timeout": 3,
            "auth": {"mode": "development"},
            "rooms": {"cleanup_timeout": 5},
            "http": {
                "port": self.http_port,
                "admin_token_file": str(self.workdir / "admin-token"),
            },
            "demo": {"enabled": False},
            "snapshots": {"database_url": pg_url, "flush_ms": 50},
            "cluster": {
                "enabled": True,
                "redis_url": redis_url,
                "node_id": name,
                "key_prefix": prefix,
                "heartbeat_interval": 0.5,
                "presence_ttl": 2.0,
                "redis_timeout": 2.0,
            },
            "logging": {"level": "info"},
        }
        for key, value in overrides.items():
            if isinstance(value, dict):
                config[key] = {**config.get(key, {}), **value}
            else:
                config[key] = value
        self.config = self.workdir / "realtime.yml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log = self.workdir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/realtime"

    def url(self, room: str) -> str:
        return f"{self.base_url}/records/{room}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Node:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICREALTIME_")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "civicrealtime", "--config", str(self.config)],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.proc, f"node {self.name}", self.log)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM; returns the exit code (killed after SIGTERM_TIMEOUT)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=SIGTERM_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


class PrivateRedis:
    """A throwaway redis-server on a free loopback port (it may be stopped and restarted)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log = workdir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.proc, "redis-server", self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # as abrupt as a crash: nothing saved
            self.proc.wait(timeout=10)
        self.proc = None
