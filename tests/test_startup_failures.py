"""Every start-up failure is one log line (component, address or path, OS error, setting to
change) and a documented exit code (docs/operations.md, "Exit codes")."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import processes

# The documented exit codes (docs/operations.md), spelled out: they are an interface.
EXIT_CONFIG = 2
EXIT_LISTEN = 3
EXIT_FILE = 4
EXIT_STORE = 5

# As root, file modes and privileged ports do not apply: the daemon runs without the
# capabilities that bypass them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
# CAP_NET_BIND_SERVICE), as a service account would.
_UNPRIVILEGED = ["-dac_override", "-dac_read_search", "-net_bind_service"]


def _unprivileged_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv (util-linux) to drop capabilities")
    return [setpriv, "--bounding-set", ",".join(_UNPRIVILEGED)]


def _serve(
    workdir: Path,
    config_text: str,
    *,
    env: dict[str, str] | None = None,
    unprivileged: bool = False,
) -> tuple[int, list[str]]:
    """Run the daemon, which must fail at start: its exit code and its ERROR lines."""
    (workdir / "rt.yml").write_text(config_text)
    prefix = _unprivileged_prefix() if unprivileged else []
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "civicrealtime", "--config", "rt.yml"],
        cwd=workdir,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, errors


def _one_line(errors: list[str], *parts: str) -> str:
    assert len(errors) == 1, errors
    for part in parts:
        assert part in errors[0], (part, errors[0])
    return errors[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


PORTS_ZERO = "realtime:\n  host: 127.0.0.1\n  port: 0\n  http:\n    port: 0\n"


def test_websocket_port_in_use(tmp_path: Path, busy_port: int) -> None:
    code, errors = _serve(tmp_path, PORTS_ZERO, env={"CIVICREALTIME_PORT": str(busy_port)})
    assert code == EXIT_LISTEN
    _one_line(
        errors,
        "WebSocket port",
        f"127.0.0.1:{busy_port}",
        "Address already in use",
        "EADDRINUSE",
        "$CIVICREALTIME_PORT",
    )


def test_operations_port_in_use(tmp_path: Path, busy_port: int) -> None:
    """Three nodes on one host each failed like this: the ops port defaults to 3002."""
    code, errors = _serve(tmp_path, PORTS_ZERO, env={"CIVICREALTIME_HTTP_PORT": str(busy_port)})
    assert code == EXIT_LISTEN
    _one_line(
        errors,
        "operations port",
        f"127.0.0.1:{busy_port}",
        "EADDRINUSE",
        "http.port",
        "$CIVICREALTIME_HTTP_PORT",
    )


def _privileged_port() -> int:
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start <= 1:
        pytest.skip("net.ipv4.ip_unprivileged_port_start lets anyone bind any port here")
    return start - 1


def test_privileged_port_is_refused_with_the_way_out(tmp_path: Path) -> None:
    port = _privileged_port()
    code, errors = _serve(
        tmp_path, PORTS_ZERO, env={"CIVICREALTIME_PORT": str(port)}, unprivileged=True
    )
    assert code == EXIT_LISTEN
    _one_line(errors, "WebSocket port", f":{port}", "Permission denied", "EACCES", "port")


def test_data_dir_without_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    config = PORTS_ZERO + f"  data_dir: {locked}/state\n"
    # The generated secret is the first file the daemon writes there.
    code, errors = _serve(tmp_path, config, unprivileged=True)
    assert code == EXIT_FILE
    _one_line(errors, "auth:", str(locked), "Permission denied", "data_dir")
    # With the secret from the environment, the SQLite store is the first.
    code, errors = _serve(
        tmp_path, config, env={"CIVICREALTIME_JWT_SECRET": "s" * 40}, unprivileged=True
    )
    assert code == EXIT_STORE
    _one_line(errors, "store:", f"{locked}/state/realtime.sqlite3", "Permission denied", "data_dir")


def test_unreadable_key_and_admin_token_files(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n")
    key.chmod(0o000)
    code, errors = _serve(
        tmp_path, PORTS_ZERO + f"  auth:\n    public_key_file: {key}\n", unprivileged=True
    )
    assert code == EXIT_FILE
    _one_line(errors, "auth:", str(key), "Permission denied", "auth.public_key_file")
    token = tmp_path / "admin-token"
    token.write_text("t" * 32)
    token.chmod(0o000)
    code, errors = _serve(
        tmp_path, PORTS_ZERO + f"    admin_token_file: {token}\n", unprivileged=True
    )
    assert code == EXIT_FILE
    _one_line(errors, "operations port", str(token), "EACCES", "http.admin_token_file")


def test_a_key_file_that_is_no_key_fails_at_start(tmp_path: Path) -> None:
    """Not at the first connection, where it would only show as refused tokens."""
    key = tmp_path / "key.pem"
    key.write_text("this is not a PEM file\n")
    code, errors = _serve(tmp_path, PORTS_ZERO + f"  auth:\n    public_key_file: {key}\n")
    assert code == EXIT_CONFIG
    _one_line(errors, "auth:", str(key), "auth.public_key_file", "auth.algorithms")


def test_unreachable_postgresql(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    closed = processes.free_port()  # nothing listens there once the probe socket is closed
    url = f"postgresql://postgres:hunter2@127.0.0.1:{closed}/civic"
    code, errors = _serve(tmp_path, PORTS_ZERO + f"  snapshots:\n    database_url: {url}\n")
    assert code == EXIT_STORE
    line = _one_line(
        errors, "store:", f"127.0.0.1:{closed}", "Connection refused", "snapshots.database_url"
    )
    assert "hunter2" not in line


def test_a_missing_records_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-data"
    config = PORTS_ZERO + f"  records:\n    data_dir: {missing}\n"
    code, errors = _serve(tmp_path, config)
    assert code == EXIT_FILE
    _one_line(errors, "records:", str(missing), "does not exist", "records.data_dir")
