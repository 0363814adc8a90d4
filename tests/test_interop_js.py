"""Interop: the stock JavaScript y-websocket client against the real daemon.

The daemon runs as a subprocess (`python -m civicrealtime --config ...`) on a free loopback
port; each scenario is `node tests/js/interop.mjs <url> <scenario>` (see that file for what
each scenario checks). Needs Node.js and `npm ci --prefix tests/js`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from civicrealtime.auth.minting import mint_token

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "interop.mjs"
NODE = shutil.which("node")

STARTUP_TIMEOUT = 15.0  # seconds for the daemon to accept TCP connections
SCENARIO_TIMEOUT = 60.0  # the script stops itself after 30 s; this is the backstop
SIGTERM_TIMEOUT = 10.0  # seconds for the daemon to exit after SIGTERM
LOG_TAIL = 6000  # characters of the daemon's stderr quoted in failure messages

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules").is_dir(),
        reason="run `npm ci --prefix tests/js` (nox -s tests does it)",
    ),
]

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


def _tokens() -> str:
    return json.dumps(
        {
            user: mint_token(JWT_SECRET.encode(), user=user, role="editor", rooms=("records:*",))
            for user in USERS
        }
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Daemon:
    """One `python -m civicrealtime` subprocess with its stderr kept in a file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.config = workdir / "realtime.yml"
        self.config.write_text(CONFIG_TEMPLATE.format(port=self.port), encoding="utf-8")
        self.stdout_path = workdir / "daemon.stdout"
        self.stderr_path = workdir / "daemon.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/realtime"

    def log(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "<no daemon stderr>"

    def log_tail(self) -> str:
        text = self.log()
        return text if len(text) <= LOG_TAIL else "…" + text[-LOG_TAIL:]

    def start(self) -> None:
        env = dict(os.environ)
        env["CIVICREALTIME_JWT_SECRET"] = JWT_SECRET
        # Host and port come from the config file only.
        for var in ("CIVICREALTIME_HOST", "CIVICREALTIME_PORT", "CIVICREALTIME_CONFIG"):
            env.pop(var, None)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "civicrealtime", "--config", str(self.config)],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
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


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("civicrealtime-interop"))
    try:
        d.start()
        yield d
    finally:
        # Normally test_daemon_exits_cleanly_on_sigterm has stopped it already.
        d.stop()


def _run_scenario(
    daemon: Daemon, scenario: str, prefix: str | None = None
) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    prefix = prefix or f"pytest-{scenario}-{uuid.uuid4().hex[:10]}"
    cmd = [NODE, str(SCRIPT), daemon.base_url, scenario, "--prefix", prefix]
    try:
        result = subprocess.run(
            cmd,
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "INTEROP_TOKENS": _tokens()},
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(
            f"{' '.join(cmd)} did not finish within {SCENARIO_TIMEOUT:.0f} s\n"
            f"--- stdout ---\n{out}\n--- stderr ---\n{err}\n"
            f"--- daemon stderr ---\n{daemon.log_tail()}"
        )
    print(result.stdout)
    assert result.returncode == 0, (
        f"scenario {scenario!r} failed: `{' '.join(cmd)}` exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n"
        f"--- daemon stderr ---\n{daemon.log_tail()}"
    )
    return result


@pytest.mark.parametrize(
    "scenario",
    ["converge", "late-joiner", "rejoin", "rooms", "awareness-echo", "awareness-reconnect"],
)
def test_js_client_scenario(daemon: Daemon, scenario: str) -> None:
    _run_scenario(daemon, scenario)


def test_js_client_awareness_removal(
    daemon: Daemon, record_property: pytest.RecordProperty
) -> None:
    """Clean leave and abrupt drop both remove the peer's awareness state within 1 s."""
    result = _run_scenario(daemon, "awareness")
    match = re.search(
        r"AWARENESS_REMOVAL_MS clean_leave=([\d.]+) abrupt_drop=([\d.]+)", result.stdout
    )
    assert match, f"no timing line in the script's output:\n{result.stdout}"
    clean, abrupt = float(match.group(1)), float(match.group(2))
    record_property("awareness_removal_clean_leave_ms", clean)
    record_property("awareness_removal_abrupt_drop_ms", abrupt)
    assert clean <= 1000.0
    assert abrupt <= 1000.0


def test_js_document_survives_a_daemon_restart(tmp_path: Path) -> None:
    """Edits through the JS client, SIGTERM, a new daemon on the same store, a new client."""
    own = Daemon(tmp_path)
    prefix = f"pytest-persist-{uuid.uuid4().hex[:10]}"
    try:
        own.start()
        _run_scenario(own, "persist-write", prefix)
        own.stop()
        own.proc, own.returncode = None, None
        own.start()
        _run_scenario(own, "persist-read", prefix)
    finally:
        own.stop()
    assert "source=store" in own.log()


def test_daemon_exits_cleanly_on_sigterm(daemon: Daemon) -> None:
    """Runs last in this module: SIGTERM after the scenarios; exit code 0 within 10 s."""
    daemon.stop()
    log = daemon.log()
    at = log.find("Traceback (most recent call last)")
    assert at < 0, (
        f"the daemon logged a traceback during the interop run:\n"
        f"{log[max(0, at - 2000) : at + LOG_TAIL]}"
    )
