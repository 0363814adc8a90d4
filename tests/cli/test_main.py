"""The command line, run as a newcomer would: `python -m civicrealtime ...` in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .. import processes


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


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_during_shutdown_is_ignored(tmp_path: Path, second: int) -> None:
    """Ctrl-C twice (or a terminal and a supervisor both signalling): still a clean exit 0.

    The second signal reached trio's default SIGINT handler once the first was received,
    and the shutdown ended in a KeyboardInterrupt traceback.
    """
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
    seen: list[str] = []
    try:
        processes.wait_for_port(port, proc)
        proc.send_signal(signal.SIGINT)
        # The second once the daemon has acted on the first: the shutdown is under way.
        assert proc.stderr is not None
        while not any("server.signal" in line for line in seen):
            line = proc.stderr.readline()
            assert line, "the daemon exited before it logged the first signal"
            seen.append(line)
        proc.send_signal(second)
        code = proc.wait(timeout=processes.STOP_SECONDS)
    finally:
        processes.stop(proc)
    log = "".join(seen) + (proc.stderr.read() if proc.stderr else "")
    assert code == 0, log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    assert "server.stopped" in log


def test_version(tmp_path: Path) -> None:
    from civicrealtime.version import VERSION  # noqa: PLC0415

    result = _run(["--version"], tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"civicrealtime {VERSION}"


def test_config_is_accepted_after_the_subcommand_too(tmp_path: Path) -> None:
    path = tmp_path / "rt.yml"
    path.write_text("enabled: false\nport: 3999\n")
    served = _run(["serve", "--config", str(path)], tmp_path)
    assert served.returncode == 0, served.stderr
    assert "enabled=false" in served.stderr
    checked = _run(["check-config", "--config", str(path)], tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "port: 3999" in checked.stdout
    # After a nested action too, and the later one wins, as with any option.
    listed = _run(
        ["--config", "elsewhere.yml", "snapshots", "list", "--config", str(path)], tmp_path
    )
    assert listed.returncode == 0, listed.stderr


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rt.yml"
    path.write_text("realtime:\n  port: 3001\n  host: [oops\n")
    result = _run(["check-config", str(path)], tmp_path)
    assert result.returncode == 2
    assert f'in "{path}", line' in result.stderr
    assert "<unicode string>" not in result.stderr


def test_a_missing_records_directory_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-data"
    path = tmp_path / "rt.yml"
    path.write_text(f"records:\n  data_dir: {missing}\n")
    checked = _run(["check-config", str(path)], tmp_path)
    assert checked.returncode != 0
    assert f"{missing} does not exist" in checked.stderr
    assert "records.data_dir" in checked.stderr
    listed = _run(["--config", str(path), "records", "list"], tmp_path)
    assert listed.returncode == 2
    assert "0 records" not in listed.stdout
    assert f"records.data_dir {missing} is not a directory" in listed.stderr


def test_records_list_has_column_headers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    record = data / "records" / "bylaw" / "2026" / "bylaw-2026-001.md"
    record.parent.mkdir(parents=True)
    record.write_text("---\ntitle: Parking\ntype: bylaw\n---\n\n# Parking\n")
    path = tmp_path / "rt.yml"
    path.write_text(f"records:\n  data_dir: {data}\n")
    listed = _run(["--config", str(path), "records", "list"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == ["id", "type", "title"]
    assert row.split() == ["bylaw-2026-001", "bylaw", "Parking"]


def test_export_and_import_arguments_have_help(tmp_path: Path) -> None:
    for action in ("export", "import"):
        result = _run(["snapshots", action, "--help"], tmp_path)
        assert result.returncode == 0
        arguments = result.stdout.split("positional arguments:")[1]
        room, file = (
            next(line for line in arguments.splitlines() if line.strip().startswith(name))
            for name in ("room", "file")
        )
        assert "records:abc123" in room
        assert len(file.split()) > 1, file  # `file` followed by its description
