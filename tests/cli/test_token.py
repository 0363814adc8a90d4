"""`civicrealtime token`: refuses what the daemon would refuse, never creates a secret."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from civicrealtime import cli
from civicrealtime.auth.secrets import ENV_SECRET

SECRET = "s" * 40


@pytest.fixture
def daemon_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A daemon's directory: its config and the secret it created on first start."""
    monkeypatch.delenv(ENV_SECRET, raising=False)
    monkeypatch.delenv("CIVICREALTIME_CONFIG", raising=False)
    (tmp_path / ".system-data").mkdir()
    (tmp_path / ".system-data" / "jwt-secret").write_text(SECRET + "\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _decode(token: str, **kwargs: object) -> dict[str, object]:
    return jwt.decode(token, SECRET, algorithms=["HS256"], **kwargs)  # type: ignore[arg-type]


def test_a_token_without_role_or_permission_is_refused(
    daemon_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["token", "--user", "eve"]) == 2
    err = capsys.readouterr().err
    assert "--role" in err
    assert "admin, clerk, editor, public" in err


def test_an_unknown_role_is_refused(daemon_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["token", "--user", "eve", "--role", "nonexistent"]) == 2
    captured = capsys.readouterr()
    assert "unknown role 'nonexistent'" in captured.err
    assert captured.out == ""


def test_a_role_from_the_configured_roles_is_accepted(
    daemon_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (daemon_dir / ".system-data" / "realtime.yml").write_text(
        "realtime:\n  auth:\n    roles:\n      reviewer: [records:view]\n"
    )
    assert cli.main(["token", "--user", "eve", "--role", "reviewer"]) == 0
    assert _decode(capsys.readouterr().out.strip())["role"] == "reviewer"
    assert cli.main(["token", "--user", "eve", "--role", "editor"]) == 2


def test_a_ttl_beyond_max_token_lifetime_is_refused(
    daemon_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon would refuse such a token: say so instead of printing it."""
    (daemon_dir / ".system-data" / "realtime.yml").write_text(
        "realtime:\n  auth:\n    max_token_lifetime: 3600\n"
    )
    assert cli.main(["token", "--user", "eve", "--role", "editor", "--ttl", "86400"]) == 2
    captured = capsys.readouterr()
    assert "max_token_lifetime" in captured.err
    assert captured.out == ""
    assert cli.main(["token", "--user", "eve", "--role", "editor", "--ttl", "3600"]) == 0


@pytest.mark.parametrize("ttl", ["-5", "0"])
def test_a_non_positive_ttl_is_refused(
    daemon_dir: Path, capsys: pytest.CaptureFixture[str], ttl: str
) -> None:
    assert cli.main(["token", "--user", "eve", "--role", "editor", "--ttl", ttl]) == 2
    captured = capsys.readouterr()
    assert "--ttl" in captured.err
    assert captured.out == ""


def test_token_never_creates_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(ENV_SECRET, raising=False)
    monkeypatch.delenv("CIVICREALTIME_CONFIG", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.main(["token", "--user", "eve", "--role", "editor"]) == 2
    err = capsys.readouterr().err
    assert "no JWT secret" in err
    assert str(elsewhere / ".system-data" / "jwt-secret") in err
    assert "--config" in err
    assert not (elsewhere / ".system-data").exists()


def test_token_uses_the_daemon_config_and_says_which_secret(
    daemon_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = daemon_dir / ".system-data" / "realtime.yml"
    config.write_text(f"realtime:\n  data_dir: {daemon_dir / '.system-data'}\n")
    monkeypatch.chdir(tmp_path_factory.mktemp("other"))
    monkeypatch.setenv("CIVICREALTIME_CONFIG", str(config))
    assert cli.main(["token", "--user", "eve", "--role", "editor"]) == 0
    captured = capsys.readouterr()
    assert _decode(captured.out.strip())["sub"] == "eve"
    assert f"secret from {daemon_dir / '.system-data' / 'jwt-secret'}" in captured.err
    assert str(config) in captured.err


def test_token_names_the_environment_variable_it_used(
    daemon_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_SECRET, "e" * 40)
    assert cli.main(["token", "--user", "eve", "--role", "public"]) == 0
    captured = capsys.readouterr()
    assert f"${ENV_SECRET}" in captured.err
    claims = jwt.decode(captured.out.strip(), "e" * 40, algorithms=["HS256"])
    assert claims["role"] == "public"


def test_token_carries_the_configured_issuer_and_audience(
    daemon_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (daemon_dir / ".system-data" / "realtime.yml").write_text(
        "realtime:\n  auth:\n    issuer: https://civic.example\n    audience: realtime\n"
    )
    assert cli.main(["token", "--user", "eve", "--role", "editor"]) == 0
    token = capsys.readouterr().out.strip()
    # Verified as the daemon verifies it: issuer and audience required when configured.
    claims = _decode(token, issuer="https://civic.example", audience="realtime")
    assert claims["sub"] == "eve"


def test_development_mode_prints_the_user_id_and_says_why(
    daemon_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (daemon_dir / ".system-data" / "realtime.yml").write_text(
        "realtime:\n  auth:\n    mode: development\n"
    )
    assert cli.main(["token", "--user", "eve", "--role", "editor"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "eve"
    assert "development" in captured.err
