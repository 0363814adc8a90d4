"""The demo page in headless Chromium against the real daemon (HTTP port + WebSocket port).

The daemon runs as `python -m civicrealtime` with `http:` and `demo:` on free loopback ports
and real JWT verification; each scenario is one run of `tests/e2e/demo_e2e.mjs` (Node +
playwright-core from web/demo, driving the system's Chromium; nothing is downloaded). See that
file for what each scenario does. The shutdown scenario sends SIGTERM to the daemon, so it
runs last.

The side-by-side screenshot of the carets scenario goes to docs/images/demo-two-windows.png
when that file is missing or CIVICREALTIME_UPDATE_SCREENSHOT=1, else to the test's temp dir.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import (
    E2E_DIR,
    INSTALL_HINT,
    NODE,
    NODE_MODULES,
    REPO,
    STATIC_DEMO,
    DemoDaemon,
    chromium_path,
    kill_processes_mentioning,
    run_bounded,
)

CHROMIUM = chromium_path()
DRIVER = E2E_DIR / "demo_e2e.mjs"
SCENARIO_TIMEOUT = 120.0  # the driver stops itself after 90 s; this is the backstop
SCREENSHOT = REPO / "docs" / "images" / "demo-two-windows.png"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
    pytest.mark.skipif(
        not (NODE_MODULES / "playwright-core").is_dir(),
        reason=f"no playwright-core: {INSTALL_HINT}",
    ),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium: apt-get install -y chromium, or set CIVICREALTIME_E2E_CHROMIUM",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("civicrealtime.http") is None,
        reason="civicrealtime.http (the HTTP port serving /demo/) is not in this build",
    ),
    pytest.mark.skipif(
        not (STATIC_DEMO / "demo.js").is_file(),
        reason="the demo bundle is not built: npm run build --prefix web/demo",
    ),
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoDaemon]:
    d = DemoDaemon(tmp_path_factory.mktemp("demo-daemon"))
    try:
        d.start()
        yield d
    finally:
        d.stop()


def _drive(daemon: DemoDaemon, scenario: str, *extra: str) -> str:
    # Playwright puts Chromium's fresh profile under $TMPDIR: one directory per run, with a
    # short path (Chromium's singleton socket lives there; unix socket paths are short).
    with tempfile.TemporaryDirectory(prefix="cre2e-", dir=_short_tmp()) as tmp:
        return _drive_in(daemon, scenario, Path(tmp), extra)


def _short_tmp() -> str | None:
    return "/tmp" if os.path.isdir("/tmp") else None


def _drive_in(daemon: DemoDaemon, scenario: str, browser_tmp: Path, extra: tuple[str, ...]) -> str:
    assert NODE is not None and CHROMIUM is not None
    env = {
        **os.environ,
        "TMPDIR": str(browser_tmp),
        "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    }
    cmd = [
        NODE,
        str(DRIVER),
        "--base",
        daemon.demo_url,
        "--scenario",
        scenario,
        "--chromium",
        CHROMIUM,
        *extra,
    ]
    t0 = time.monotonic()
    try:
        code, out, err = run_bounded(cmd, cwd=REPO, env=env, timeout=SCENARIO_TIMEOUT)
    finally:
        leftovers = kill_processes_mentioning(str(browser_tmp))
    elapsed = time.monotonic() - t0
    print(out)
    report = (
        f"--- stdout ---\n{out}\n--- stderr ---\n{err}\n--- daemon stderr ---\n{daemon.log_tail()}"
    )
    if code is None:
        pytest.fail(f"scenario {scenario} did not finish within {SCENARIO_TIMEOUT:.0f} s\n{report}")
    assert code == 0, f"scenario {scenario} failed (exit {code})\n{report}"
    assert f"PASS {scenario}" in out, report
    assert not leftovers, f"browser processes outlived the driver: {leftovers}"
    print(f"scenario {scenario}: {elapsed:.1f} s")
    return out


def test_two_editors_converge(daemon: DemoDaemon) -> None:
    """(a) Ada and Grace type at the same time in the same record and converge."""
    _drive(daemon, "converge")


def test_each_page_shows_the_others_caret(daemon: DemoDaemon, tmp_path: Path) -> None:
    """(b) Carets labelled with the other's name, both ways; the side-by-side screenshot."""
    update = os.environ.get("CIVICREALTIME_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists()
    target = SCREENSHOT if update else tmp_path / SCREENSHOT.name
    target.parent.mkdir(parents=True, exist_ok=True)
    _drive(daemon, "carets", "--screenshot", str(target), "--record", "budget-2026")
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_offline_page_catches_up(daemon: DemoDaemon) -> None:
    """(c) One page disconnects, both keep typing, it reconnects: both texts on both pages."""
    _drive(daemon, "offline")


def test_viewer_is_read_only(daemon: DemoDaemon) -> None:
    """(d) A viewer's keystrokes and even a forced local edit never reach the editor page."""
    _drive(daemon, "viewer")


def test_saved_indicator_through_a_store_outage(daemon: DemoDaemon) -> None:
    """(f) "Saving… N s", "Saved"; "Not saved: the server cannot store changes" while the
    SQLite store refuses writes (triggers from another connection); "Saved" after."""
    (database,) = daemon.workdir.glob("**/realtime.sqlite3")
    outage = [sys.executable, str(E2E_DIR / "store_outage.py"), str(database)]
    out = _drive(
        daemon,
        "saved",
        "--fail-cmd",
        json.dumps([*outage, "fail"]),
        "--recover-cmd",
        json.dumps([*outage, "recover"]),
    )
    assert "Not saved: the server cannot store changes" in out


def test_saved_is_true_through_kill_9(tmp_path: Path) -> None:
    """(g) Its own daemon: SIGKILL from the driver, restarted here on the same store and
    ports; what the page showed as saved is there, and the page saves the rest."""
    own = DemoDaemon(tmp_path)
    own.start()
    outcome: dict[str, Any] = {}

    def drive() -> None:
        try:
            outcome["out"] = _drive(own, "kill", "--daemon-pid", str(own.pid))
        except BaseException as exc:  # handed to the test's thread below
            outcome["error"] = exc

    driver = threading.Thread(target=drive)
    try:
        driver.start()
        first = own.proc
        assert first is not None
        deadline = time.monotonic() + SCENARIO_TIMEOUT
        while first.poll() is None and driver.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if first.poll() is not None:
            own.start()  # the same config: same ports, same store
        driver.join(SCENARIO_TIMEOUT)
    finally:
        own.stop()
    if "error" in outcome:
        raise outcome["error"]
    assert "out" in outcome, "the driver did not finish"


def test_a_clerk_compares_and_restores_from_the_history_panel(daemon: DemoDaemon) -> None:
    _drive(daemon, "history")


def test_badge_says_reconnecting_on_sigterm(daemon: DemoDaemon) -> None:
    """(e) Runs last: "connected", then SIGTERM -> close 4503 -> "reconnecting"; exit 0."""
    _drive(daemon, "shutdown", "--daemon-pid", str(daemon.pid))
    code = daemon.wait_exit()
    assert code == 0, f"daemon exited {code} after SIGTERM\n{daemon.log_tail()}"
    log = daemon.log()
    at = log.find("Traceback (most recent call last)")
    assert at < 0, f"the daemon logged a traceback:\n{log[max(0, at - 2000) : at + 6000]}"
