"""What the interop tests share: Node.js discovery, the record fixtures, running a script.

Each interop test starts a daemon (`processes.spawn`, or `popen_daemon` when it keeps the
daemon's log) and Node.js scripts of tests/js that print what they saw as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from civicrealtime.auth.minting import mint_token

from . import processes

TESTS = Path(__file__).resolve().parent
JS_DIR = TESTS / "js"
RECORD_FIXTURES = TESTS / "records" / "fixtures" / "data"
NODE = shutil.which("node")
LOG_TAIL = 6000  # characters of the daemon's stderr quoted in failure messages
# The daemon's host, port and configuration come from its file only.
DAEMON_ENV_OVERRIDES = ("CIVICREALTIME_HOST", "CIVICREALTIME_PORT", "CIVICREALTIME_CONFIG")


def needs_node(package: str) -> list[pytest.MarkDecorator]:
    """The marks of a test that runs tests/js with `package` installed there."""
    return [
        pytest.mark.interop,
        pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
        pytest.mark.skipif(
            not (JS_DIR / "node_modules" / package).is_dir(),
            reason="run `npm ci --prefix tests/js` (nox -s tests does it)",
        ),
    ]


def copy_record_fixtures(tmp_path: Path) -> Path:
    """A CivicPress data directory of its own (the daemon writes drafts beside it)."""
    data = tmp_path / "civicpress"
    shutil.copytree(RECORD_FIXTURES, data)
    return data


def records_config(port: int, data: Path, *, http: str = "  port: 0\n", records: str = "") -> str:
    """A daemon serving `data`'s records, snapshotting (and writing drafts) after each update."""
    return (
        f"host: 127.0.0.1\nport: {port}\nhttp:\n{http}"
        f"records:\n  data_dir: {data}\n{records}"
        "snapshots:\n  max_updates: 1\n  interval: 0\n  flush_ms: 20\n"
    )


def spawn_records_daemon(
    tmp_path: Path, secret: str, *, http: str = "  port: 0\n", records: str = ""
) -> tuple[subprocess.Popen[str], int, Path]:
    """A daemon on a copy of the record fixtures: (its process, its WebSocket port, the copy)."""
    data = copy_record_fixtures(tmp_path)
    port = processes.free_port()
    daemon = processes.spawn(
        tmp_path,
        records_config(port, data, http=http, records=records),
        port=port,
        env={"CIVICREALTIME_JWT_SECRET": secret},
    )
    return daemon, port, data


def run_node_json(script: str, *args: str, timeout: float = 60) -> Any:
    """`node tests/js/<script> args...`, which must exit 0; its first stdout line, as JSON."""
    assert NODE is not None
    result = subprocess.run(
        [NODE, str(JS_DIR / script), *args],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout.splitlines()[0])


def wait_for_file(
    path: Path,
    done: Callable[[str], bool],
    failure: Callable[[], str],
    seconds: float = 15,
) -> str:
    """Poll `path` until `done(text)`, under a deadline: no event announces a file write."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and done(text := path.read_text(encoding="utf-8"))):
        assert time.monotonic() < deadline, failure()
        time.sleep(0.05)
    return text


def read_log(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "<no daemon stderr>"


def tail(text: str) -> str:
    return text if len(text) <= LOG_TAIL else "…" + text[-LOG_TAIL:]


def popen_daemon(
    config: Path, workdir: Path, secret: str, stderr_path: Path
) -> subprocess.Popen[bytes]:
    """`python -m civicrealtime --config <config>` with its output in files of `workdir`."""
    env = dict(os.environ)
    env["CIVICREALTIME_JWT_SECRET"] = secret
    for var in DAEMON_ENV_OVERRIDES:
        env.pop(var, None)
    with (workdir / "daemon.stdout").open("wb") as out, stderr_path.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "civicrealtime", "--config", str(config)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )


# The stock y-websocket client against a daemon that keeps its log (test_interop_js.py,
# test_interop_split.py).
STARTUP_TIMEOUT = 15.0  # seconds for the daemon to accept TCP connections
SIGTERM_TIMEOUT = 10.0  # seconds for the daemon to exit after SIGTERM

CONFIG_TEMPLATE = """\
host: 127.0.0.1
port: {port}
auth:
  mode: jwt   # real HS256 verification; the secret comes from $CIVICREALTIME_JWT_SECRET
rooms:
  cleanup_timeout: 5
http:
  port: 0
logging:
  level: debug
"""


# The secret the daemon verifies with; each scenario's users get a token signed with it.
JWT_SECRET = "interop-" + "x" * 40
USERS = ("alice", "bob", "carol", "dave", "probe", "lonely")


def tokens() -> str:
    return json.dumps(
        {
            user: mint_token(JWT_SECRET.encode(), user=user, role="editor", rooms=("records:*",))
            for user in USERS
        }
    )


class Daemon:
    """One `python -m civicrealtime` subprocess with its stderr kept in a file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = processes.free_port()
        self.config = workdir / "realtime.yml"
        self.config.write_text(CONFIG_TEMPLATE.format(port=self.port), encoding="utf-8")
        self.stderr_path = workdir / "daemon.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/realtime"

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
                self.returncode = code
                pytest.fail(
                    f"daemon exited with code {code} before accepting connections\n"
                    f"--- daemon stderr ---\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                self.returncode = self.proc.wait()
                pytest.fail(
                    f"daemon did not accept TCP connections on 127.0.0.1:{self.port} "
                    f"within {STARTUP_TIMEOUT:.0f} s\n--- daemon stderr ---\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM; the daemon must exit with code 0 within SIGTERM_TIMEOUT seconds."""
        proc = self.proc
        if proc is None or self.returncode is not None:
            return
        code = proc.poll()
        if code is not None:
            self.returncode = code
            pytest.fail(
                f"daemon had already exited (code {code}) before SIGTERM\n"
                f"--- daemon stderr ---\n{self.log_tail()}"
            )
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            code = proc.wait(timeout=SIGTERM_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.returncode = proc.wait()
            pytest.fail(
                f"daemon did not exit within {SIGTERM_TIMEOUT:.0f} s of SIGTERM (killed with "
                f"SIGKILL)\n--- daemon stderr ---\n{self.log_tail()}"
            )
        self.returncode = code
        elapsed = time.monotonic() - t0
        assert code == 0, (
            f"daemon exited with code {code} after SIGTERM (expected 0)\n"
            f"--- daemon stderr ---\n{self.log_tail()}"
        )
        print(f"daemon exited 0 {elapsed:.2f} s after SIGTERM")


def run_with_tokens(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """A tests/js script given every user's token in $INTEROP_TOKENS; the caller checks it."""
    return subprocess.run(
        cmd,
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "INTEROP_TOKENS": tokens()},
    )
