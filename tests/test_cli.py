"""The command line, run as a newcomer would: `python -m civicrealtime ...` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from . import processes


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "civicrealtime", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_check_config_prints_the_effective_configuration(tmp_path: Path) -> None:
    path = tmp_path / "rt.yml"
    path.write_text("realtime:\n  port: 3999\n  rooms:\n    max_rooms: 3\n")
    result = _run(["check-config", str(path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert "port: 3999" in result.stdout
    assert "max_rooms: 3" in result.stdout


def test_check_config_without_a_file_shows_defaults(tmp_path: Path) -> None:
    result = _run(["check-config"], tmp_path)
    assert result.returncode == 0
    assert "embedded defaults" in result.stdout
    assert "port: 3001" in result.stdout


def test_invalid_config_exits_2_with_the_key_path(tmp_path: Path) -> None:
    path = tmp_path / "rt.yml"
    path.write_text("realtime:\n  rooms:\n    max_room: 3\n")
    for args in (["check-config", str(path)], ["--config", str(path)]):
        result = _run(args, tmp_path)
        assert result.returncode == 2
        assert "rooms.max_room: unknown key; did you mean 'max_rooms'?" in result.stderr


def test_disabled_daemon_says_so_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "rt.yml"
    path.write_text("enabled: false\n")
    result = _run(["--config", str(path)], tmp_path)
    assert result.returncode == 0
    assert "enabled=false" in result.stderr


def test_daemon_serves_on_defaults_then_stops_on_sigterm(tmp_path: Path) -> None:
    """The README's first command: no file, embedded defaults (port from the environment)."""
    port = processes.free_port()
    env = {
        **os.environ,
        "CIVICREALTIME_PORT": str(port),
        "CIVICREALTIME_HOST": "127.0.0.1",
        "CIVICREALTIME_HTTP_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "civicrealtime"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        processes.wait_for_port(port, proc)
        assert processes.terminate(proc) == 0
    finally:
        processes.stop(proc)
    log = proc.stderr.read() if proc.stderr else ""
    assert "using embedded defaults" in log
    assert f"port={port}" in log
    assert "server.stopped" in log
