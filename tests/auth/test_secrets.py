from __future__ import annotations

import stat
from pathlib import Path

import pytest

from civicrealtime.auth.secrets import SecretError, resolve_secret


def test_generated_once_with_mode_0600(tmp_path: Path) -> None:
    first = resolve_secret(None, tmp_path / "data", {}, create=True)
    assert first.created
    path = tmp_path / "data" / "jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = resolve_secret(None, tmp_path / "data", {}, create=True)
    assert not second.created
    assert second.value == first.value


def test_environment_wins_then_file(tmp_path: Path) -> None:
    file = tmp_path / "secret"
    file.write_text("f" * 40 + "\n")
    env = {"CIVICREALTIME_JWT_SECRET": "e" * 40}
    assert resolve_secret(str(file), tmp_path, env, create=True).value == b"e" * 40
    found = resolve_secret(str(file), tmp_path, {}, create=True)
    assert (found.value, found.source) == (b"f" * 40, str(file))


def test_short_or_missing_secrets_are_errors(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="shorter"):
        resolve_secret(None, tmp_path, {"CIVICREALTIME_JWT_SECRET": "short"}, create=True)
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(SecretError, match="shorter"):
        resolve_secret(str(short), tmp_path, {}, create=True)
    with pytest.raises(SecretError, match="cannot read"):
        resolve_secret(str(tmp_path / "missing"), tmp_path, {}, create=True)
    with pytest.raises(SecretError, match="no JWT secret"):
        resolve_secret(None, tmp_path / "empty", {}, create=False)
