"""The stock y-websocket provider in headless Chromium, on the daemon's defaults (issue 14).

A page that embeds the stock provider as the README shows (no control subprotocol, no
wrapper around the WebSocket) must sync with another such page and log no error: the
daemon sends it binary y-protocols frames only. Driven by `tests/e2e/stock_provider.mjs`
(Node + playwright-core and esbuild from web/demo, driving the system's Chromium).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from civicrealtime.auth.minting import mint_token

from .support import (
    E2E_DIR,
    INSTALL_HINT,
    JWT_SECRET,
    NODE,
    NODE_MODULES,
    REPO,
    DemoDaemon,
    chromium_path,
    kill_processes_mentioning,
    run_bounded,
)

CHROMIUM = chromium_path()
DRIVER = E2E_DIR / "stock_provider.mjs"
RUN_TIMEOUT = 90.0  # the driver stops itself after 60 s; this is the backstop

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
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoDaemon]:
    d = DemoDaemon(tmp_path_factory.mktemp("stock-provider-daemon"))
    try:
        d.start()
        yield d
    finally:
        d.stop()


def _token(user: str) -> str:
    return mint_token(JWT_SECRET.encode(), user=user, role="editor", rooms=("records:*",))


def test_stock_provider_in_chromium_syncs_without_a_console_error(daemon: DemoDaemon) -> None:
    assert NODE is not None and CHROMIUM is not None
    # Chromium's profile goes under $TMPDIR, in a short path (its singleton socket lives there).
    with tempfile.TemporaryDirectory(prefix="crstock-", dir="/tmp") as tmp:
        cmd = [
            NODE,
            str(DRIVER),
            "--ws",
            f"ws://127.0.0.1:{daemon.ws_port}/realtime",
            "--room",
            f"stock-{uuid.uuid4().hex[:8]}",
            "--token-a",
            _token("ada"),
            "--token-b",
            _token("grace"),
            "--chromium",
            CHROMIUM,
        ]
        env = {"TMPDIR": tmp, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1", "PATH": "/usr/bin:/bin"}
        try:
            code, out, err = run_bounded(cmd, cwd=REPO, env=env, timeout=RUN_TIMEOUT)
        finally:
            leftovers = kill_processes_mentioning(str(Path(tmp)))
    report = f"--- stdout ---\n{out}\n--- stderr ---\n{err}\n--- daemon ---\n{daemon.log_tail()}"
    assert code == 0, report
    assert "PASS stock-provider" in out, report
    assert not leftovers, f"browser processes outlived the driver: {leftovers}"
