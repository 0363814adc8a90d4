"""Sessions: `nox -s tests` (the whole suite, as CI runs it), lint, typecheck, serve, lock.

Every session runs on the Python that runs nox (3.11 to 3.13: Debian 12 has 3.11, Ubuntu
24.04 3.12), in its own virtualenv under .nox/, and installs the exact versions of
constraints.txt. See the README for running nox itself from a venv.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

# The tested working set (pip -c): pyproject.toml has the ranges, this the versions.
CONSTRAINTS = ("-c", "constraints.txt")


def _install_js(session: nox.Session) -> None:
    """The real JavaScript client (yjs + y-websocket) for the interop tests."""
    if shutil.which("npm") is None:
        session.warn("npm not found: the JavaScript interop tests will be skipped")
        return
    session.run("npm", "ci", "--prefix", "tests/js", "--no-audit", "--no-fund", external=True)


def _install_browser(session: nox.Session) -> None:
    """The demo's build and e2e driver (npm), and Debian's Chromium for the browser tests."""
    if shutil.which("npm") is not None:
        session.run("npm", "ci", "--prefix", "web/demo", "--no-audit", "--no-fund", external=True)
    if os.path.exists("/usr/bin/chromium"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        session.run("apt-get", "update", "-qq", external=True, silent=True)
        session.run(
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "chromium",
            external=True,
            silent=True,
        )
    else:
        session.warn("no /usr/bin/chromium: the browser tests will be skipped")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, integration and JavaScript interop tests."""
    session.install(*CONSTRAINTS, "-e", ".[test]")
    _install_js(session)
    _install_browser(session)
    # nginx, systemd-analyze and promtool for the deployment tests, when root with apt-get.
    session.run("sh", "tests/deploy/install-system-tools.sh", external=True)
    # The suite, plus a small fuzz budget (the maintainers' run is `nox -s fuzz`).
    session.run("pytest", "tests", "fuzz", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Property-based fuzzing with a large budget: `nox -s fuzz -- 10000` (examples).

    Arguments after the budget go to pytest (`nox -s fuzz -- 10000 -s` prints the summaries).
    """
    session.install(*CONSTRAINTS, "-e", ".[test]")
    budget = session.posargs[0] if session.posargs else "1000"
    extra = session.posargs[1:]
    session.run(
        "pytest", "fuzz", "-p", "no:randomly", *extra, env={"CIVICREALTIME_FUZZ_EXAMPLES": budget}
    )


@nox.session
def faults(session: nox.Session) -> None:
    """kill -9 at random moments: no update acknowledged as saved is lost (docs/saved.md).

    `nox -s faults -- 70` (the default) is 70 kills per store over SQLite, PostgreSQL and
    files, 210 in all; further arguments go to pytest. Prints acked, lost-after-ack (must
    be 0) and lost-before-ack per store. PostgreSQL at $CIVICREALTIME_TEST_PG.
    """
    session.install(*CONSTRAINTS, "-e", ".[test]")
    kills = session.posargs[0] if session.posargs else "70"
    session.run(
        "pytest",
        "tests/faults/test_saved_kill.py",
        "-s",
        "-p",
        "no:randomly",
        *session.posargs[1:],
        env={"CIVICREALTIME_SAVED_KILLS": kills},
    )


@nox.session
def lint(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", "src", "tests", "fuzz", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "fuzz", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, "-e", ".[dev]")
    session.run("mypy")


@nox.session
def serve(session: nox.Session) -> None:
    """Run the daemon from a fresh environment (the README's first command)."""
    session.install(*CONSTRAINTS, "-e", ".[progress]")
    session.run("python", "-m", "civicrealtime", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark against the peers (docs/benchmarks.md): `nox -s bench -- --quick`."""
    session.install(*CONSTRAINTS, "-e", ".", "trio-websocket", "py-spy==0.4.3")
    for prefix in ("bench/node", "bench/peers/node"):
        session.run("npm", "ci", "--prefix", prefix, "--no-audit", "--no-fund", external=True)
    # The Python peer lives in its own venv: it is never a dependency of the project.
    peers = os.path.join("bench", ".venv-peers")
    if not os.path.exists(os.path.join(peers, "bin", "python")):
        session.run("python", "-m", "venv", peers)
    session.run(
        os.path.join(peers, "bin", "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "-r",
        "bench/peers/python/requirements.txt",
        external=True,
    )
    if shutil.which("taskset") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        session.run("apt-get", "update", "-qq", external=True)
        session.run("apt-get", "install", "-y", "-qq", "util-linux", external=True)
    session.run(
        "python",
        "bench/run.py",
        "--peers-python",
        os.path.join(peers, "bin", "python"),
        *session.posargs,
    )


@nox.session
def soak(session: nox.Session) -> None:
    """Soak benchmark, not a test: `nox -s soak -- --minutes 10` (1,000 connections, 100 rooms).

    Needs Node.js (ws and yjs from tests/js); see bench/soak.py and docs/soak.md.
    """
    session.install(*CONSTRAINTS, "-e", ".")
    _install_js(session)
    session.run("python", "bench/soak.py", *session.posargs)


@nox.session
def lock(session: nox.Session) -> None:
    """Write constraints.txt afresh: the newest versions pyproject.toml's ranges allow.

    `nox -s lock`, then `nox -s tests lint typecheck`, then commit pyproject.toml and
    constraints.txt together (docs/operations.md, "Upgrading the dependencies").
    """
    session.install("--upgrade", "--upgrade-strategy", "eager", "pip")
    session.install(
        "--upgrade", "--upgrade-strategy", "eager", "setuptools>=77", "nox", "-e", ".[test,dev]"
    )
    frozen = session.run(
        "python", "-m", "pip", "freeze", "--all", "--exclude-editable", silent=True
    )
    assert isinstance(frozen, str)
    # Only `name==version` lines: pip may print warnings into the same output. Neither pip
    # nor the project itself belongs in the constraints.
    pin = re.compile(r"^(?!pip==|civicrealtime==)[A-Za-z0-9][A-Za-z0-9._-]*==\S+$")
    pins = sorted(
        (line for line in frozen.splitlines() if pin.match(line)),
        key=lambda line: line.split("==")[0].lower(),  # as pip freeze orders them
    )
    path = Path("constraints.txt")
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    path.write_text("\n".join([*header, *pins]) + "\n")
    session.log(f"constraints.txt: {len(pins)} packages")
