"""The release as pip sees it: the wheel ships the licence, the dependencies are ranges,
PostgreSQL and clustering are extras, and constraints.txt pins a set inside those ranges."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from civicrealtime.version import VERSION

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LICENSE = REPO / "LICENSE"


def test_the_licence_is_the_full_agpl_text() -> None:
    text = LICENSE.read_text()
    assert text.lstrip().startswith("GNU AFFERO GENERAL PUBLIC LICENSE")
    assert "Version 3, 19 November 2007" in text
    assert "13. Remote Network Interaction; Use with the GNU General Public License." in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert PYPROJECT["project"]["license"] == "AGPL-3.0-or-later"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """Built from a copy of the sources (no build/ or egg-info left in the tree), without
    build isolation: setuptools comes from the test environment, nothing is downloaded."""
    pytest.importorskip("setuptools", minversion="77")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (built,) = out.glob("civicrealtime-*.whl")
    assert built.name == f"civicrealtime-{VERSION}-py3-none-any.whl"
    return zipfile.ZipFile(built)


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    return email.message_from_bytes(wheel.read(f"civicrealtime-{VERSION}.dist-info/METADATA"))


def test_the_wheel_ships_the_licence(wheel: zipfile.ZipFile) -> None:
    shipped = [n for n in wheel.namelist() if ".dist-info/" in n and n.endswith("/LICENSE")]
    assert len(shipped) == 1, wheel.namelist()
    assert wheel.read(shipped[0]) == LICENSE.read_bytes()
    assert _metadata(wheel)["License-Expression"] == "AGPL-3.0-or-later"


def test_dependencies_are_ranges_and_the_stores_are_extras(wheel: zipfile.ZipFile) -> None:
    metadata = _metadata(wheel)
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    runtime = [r for r in requirements if r.marker is None]
    assert runtime, requirements
    for requirement in runtime:
        assert all(s.operator != "==" for s in requirement.specifier), requirement
        assert requirement.specifier, f"{requirement} has no lower bound"
    names = {r.name.lower() for r in runtime}
    assert not names & {"psycopg", "coredis", "tqdm"}, names
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"postgres", "cluster", "progress"} <= extras

    def in_extra(name: str, extra: str) -> bool:
        return any(
            r.name.lower() == name and r.marker is not None and r.marker.evaluate({"extra": extra})
            for r in requirements
        )

    assert in_extra("psycopg", "postgres")
    assert in_extra("coredis", "cluster")
    assert in_extra("civicrealtime", "cluster")  # clustering needs the PostgreSQL store
    assert in_extra("tqdm", "progress")


def test_type_stubs_and_tools_are_pinned() -> None:
    dev = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]]
    for requirement in dev:
        if requirement.name.startswith("types-") or requirement.name in ("mypy", "ruff"):
            assert [s.operator for s in requirement.specifier] == ["=="], requirement


def test_constraints_pin_every_dependency_inside_its_range() -> None:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    project = PYPROJECT["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        declared += [Requirement(r) for r in extra]
    for requirement in declared:
        name = requirement.name.lower().replace("_", "-")
        if name == "civicrealtime":
            continue
        assert name in pins, f"{name} is not in constraints.txt (nox -s lock)"
        assert requirement.specifier.contains(pins[name]), (requirement, pins[name])
    assert "nox" in pins  # the README's bootstrap installs it with these constraints


def test_the_wheel_ships_the_client_helper(wheel: zipfile.ZipFile) -> None:
    """`/client/civicrealtime.js` is served from the installed package (docs/saved.md)."""
    name = "civicrealtime/http/static/client/civicrealtime.js"
    assert name in wheel.namelist()
    shipped = REPO / "src" / name
    assert wheel.read(name) == shipped.read_bytes()
