"""Interop: the stock JavaScript y-websocket client against the real daemon.

The daemon runs as a subprocess (`python -m civicrealtime --config ...`) on a free loopback
port; each scenario is `node tests/js/interop.mjs <url> <scenario>` (see that file for what
each scenario checks). Needs Node.js and `npm ci --prefix tests/js`.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .interop_support import JS_DIR, LOG_TAIL, NODE, Daemon, needs_node, run_with_tokens

SCRIPT = JS_DIR / "interop.mjs"

SCENARIO_TIMEOUT = 60.0  # the script stops itself after 30 s; this is the backstop

pytestmark = needs_node("y-websocket")


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
        result = run_with_tokens(cmd, SCENARIO_TIMEOUT)
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
