"""Characters outside the BMP through the daemon, with stock Yjs editors as the oracle.

Issue #14, part 2: Yjs replaces the halves of a surrogate pair that an edit splits with
U+FFFD, yrs did not, and the server's state drifted from its editors. Each scenario runs
`node tests/js/split_clients.mjs` against a real daemon and compares what the editors hold
with what a late joiner gets from the server: right away, after SIGTERM and a restart, and
after SIGKILL and a restart (the log replayed through the same containment).
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import processes
from .interop_support import JS_DIR, NODE, Daemon, needs_node, run_with_tokens

SCRIPT = JS_DIR / "split_clients.mjs"
SCENARIO_TIMEOUT = 120.0

pytestmark = needs_node("y-websocket")

CONFIG = """\
host: 127.0.0.1
port: {port}
auth:
  mode: jwt
snapshots:
  max_updates: 50   # several snapshots during the stress run, and a log tail after them
http:
  port: {http_port}
logging:
  level: info
"""

EDITORS_TEXT = "Avis \ufffdé\ufffd public"


class SplitDaemon(Daemon):
    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.http_port = processes.free_port()
        self.config.write_text(
            CONFIG.format(port=self.port, http_port=self.http_port), encoding="utf-8"
        )

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")

    def restart(self, *, kill: bool) -> None:
        assert self.proc is not None
        if kill:
            # Only once every applied update is in the log: a kill -9 may lose the last
            # flush window, which is not what this test is about.
            deadline = time.monotonic() + 10
            # No event announces it: poll the gauge, under a deadline.
            while self.metric("civicrealtime_store_pending_bytes") != 0:
                assert time.monotonic() < deadline, "the log never caught up"
                time.sleep(0.02)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        else:
            self.stop()
        self.proc, self.returncode = None, None
        self.start()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[SplitDaemon]:
    d = SplitDaemon(tmp_path)
    d.start()
    try:
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(timeout=10)


def run(daemon: SplitDaemon, scenario: str, prefix: str, *extra: str) -> dict[str, Any]:
    assert NODE is not None
    cmd = [NODE, str(SCRIPT), daemon.base_url, scenario, "--prefix", prefix, *extra]
    result = run_with_tokens(cmd, SCENARIO_TIMEOUT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, (
        f"`{' '.join(cmd)}` exited {result.returncode}\n--- stdout ---\n{result.stdout}\n"
        f"--- stderr ---\n{result.stderr}\n--- daemon ---\n{daemon.log_tail()}"
    )
    outcome: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    assert "failure" not in outcome, f"{outcome}\n--- daemon ---\n{daemon.log_tail()}"
    assert outcome["errors"] == [], f"Yjs raised on the server's frames: {outcome['errors']}"
    return outcome


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_six_steps_late_joiner_sees_the_editors_text(daemon: SplitDaemon, kill: bool) -> None:
    prefix = f"split-{uuid.uuid4().hex[:10]}"
    outcome = run(daemon, "six-steps", prefix)
    assert outcome["editors"] == EDITORS_TEXT
    assert outcome["late"] == EDITORS_TEXT
    assert daemon.metric("civicrealtime_text_splits_total") == 1
    assert "text.split room=records:" in daemon.log()
    daemon.restart(kill=kill)
    assert run(daemon, "read", prefix)["late"] == EDITORS_TEXT


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_concurrent_emoji_editing_late_joiner_sees_the_editors_text(
    daemon: SplitDaemon, kill: bool
) -> None:
    prefix = f"split-stress-{uuid.uuid4().hex[:10]}"
    outcome = run(daemon, "stress", prefix, "--seed", "7", "--ops", "400")
    assert outcome["late"] == outcome["editors"]
    assert daemon.metric("civicrealtime_text_splits_total") > 0
    daemon.restart(kill=kill)
    assert run(daemon, "read", prefix)["late"] == outcome["editors"]
