"""PostgreSQL (`civicrealtime[postgres]`) and clustering (`[cluster]`) are optional: a
configuration that needs one not installed is refused, saying what to install.

Each case runs in a fresh interpreter where importing the package fails, as in a venv
where the extra was not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from . import processes

POSTGRES = "postgresql://postgres@127.0.0.1:{port}/civic"


def _without(module: str, tmp_path: Path, config: str, *args: str) -> tuple[int, str]:
    (tmp_path / "rt.yml").write_text(config)
    code = (
        f"import sys; sys.modules[{module!r}] = None; from civicrealtime.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "--config", "rt.yml", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stderr


@pytest.mark.parametrize("args", [(), ("snapshots", "list"), ("records", "show", "x")])
def test_postgresql_without_psycopg(tmp_path: Path, args: tuple[str, ...]) -> None:
    url = POSTGRES.format(port=processes.free_port())
    config = f"port: 0\nhttp:\n  port: 0\nsnapshots:\n  database_url: {url}\n"
    code, stderr = _without("psycopg", tmp_path, config, *args)
    assert code == 2
    assert "snapshots.database_url" in stderr
    assert "pip install 'civicrealtime[postgres]'" in stderr
    assert "'psycopg'" in stderr


def test_clustering_without_coredis(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")  # the shared store comes first
    url = POSTGRES.format(port=processes.free_port())
    config = (
        f"port: 0\nhttp:\n  port: 0\nsnapshots:\n  database_url: {url}\ncluster:\n  enabled: true\n"
    )
    code, stderr = _without("coredis", tmp_path, config)
    assert code == 2
    assert "cluster.enabled" in stderr
    assert "pip install 'civicrealtime[cluster]'" in stderr
    assert "'coredis'" in stderr


def test_the_default_sqlite_daemon_needs_neither(tmp_path: Path) -> None:
    """Only the configuration that asks for an extra needs it."""
    for module in ("psycopg", "coredis", "tqdm"):
        code, stderr = _without(module, tmp_path, "enabled: false\n")
        assert code == 0, stderr
        code, stderr = _without(module, tmp_path, "data_dir: state\n", "snapshots", "list")
        assert code == 0, stderr
