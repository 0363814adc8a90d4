"""docs/deploy/civicrealtime.service checked by systemd's own tools, offline.

`tests/deploy/install-system-tools.sh` installs systemd (for systemd-analyze) when run as
root with apt-get; without systemd-analyze these tests are skipped. Neither needs a
running systemd: `verify` and `security --offline` read the unit file only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from civicrealtime.config import RealtimeConfig

UNIT = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "civicrealtime.service"
DOCUMENTED_EXEC = "/opt/civicrealtime/venv/bin/civicrealtime"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze not found: run tests/deploy/install-system-tools.sh as root "
    "(installs Debian's systemd) to check the unit file",
)


def settings(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of the unit, by key (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([A-Za-z]+)=(.*)", line.strip())
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match is not None, f"write {value!r} as plain seconds or minutes"
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def unit_for_this_machine(tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart names this venv's console script.

    `systemd-analyze verify` fails when ExecStart's binary does not exist, and the
    documented /opt/civicrealtime/venv is not installed here; the console script of the
    environment running the tests is the same entry point (`civicrealtime`), so the copy
    checks everything else in the file exactly as written.
    """
    script = Path(sys.executable).parent / "civicrealtime"
    if not script.exists():
        pytest.skip(f"no console script at {script}: install the package (pip install -e .)")
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={DOCUMENTED_EXEC} " in text
    copy = tmp_path / UNIT.name  # verify wants the unit's own name
    copy.write_text(text.replace(f"ExecStart={DOCUMENTED_EXEC} ", f"ExecStart={script} "))
    return copy


def test_unit_runs_the_daemon_as_documented() -> None:
    unit = settings(UNIT.read_text(encoding="utf-8"))
    assert unit["ExecStart"] == [f"{DOCUMENTED_EXEC} --config /etc/civicrealtime/realtime.yml"]
    assert unit["User"] == ["civicrealtime"]
    assert unit["WorkingDirectory"] == ["/var/lib/civicrealtime"]
    assert unit["ReadWritePaths"] == ["/var/lib/civicrealtime"]
    assert unit["EnvironmentFile"] == ["/etc/civicrealtime/civicrealtime.env"]
    assert unit["Restart"] == ["on-failure"]
    # An invalid configuration exits 2, an unusable file 4; restarting in a loop helps nobody.
    assert unit["RestartPreventExitStatus"] == ["2 4"]
    assert unit["KillSignal"] == ["SIGTERM"]
    # systemd must not SIGKILL the daemon while it closes connections with 4503.
    defaults = RealtimeConfig()
    graceful = defaults.shutdown_timeout + defaults.connection.close_timeout
    (stop_timeout,) = unit["TimeoutStopSec"]
    assert seconds(stop_timeout) > graceful
    for hardening in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices"):
        assert unit[hardening] == ["yes"], hardening
    assert unit["ProtectSystem"] == ["strict"]


@needs_systemd_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    copy = unit_for_this_machine(tmp_path)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and unparsable values ("..., ignoring"): any line
    # about our file is a mistake in it.
    problems = [line for line in result.stderr.splitlines() if copy.name in line]
    assert problems == []


@needs_systemd_analyze
def test_systemd_analyze_security_rates_it_ok(tmp_path: Path) -> None:
    """systemd's exposure score, 0 (locked down) to 10 (unprotected): "OK" is below 2."""
    assert SYSTEMD_ANALYZE is not None
    copy = unit_for_this_machine(tmp_path)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0 and "--offline" in result.stderr:
        pytest.skip(f"this systemd-analyze has no --offline (systemd 250+): {result.stderr}")
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) < 2.0, result.stdout
