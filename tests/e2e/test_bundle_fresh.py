"""The demo bundle committed in the package is what web/demo builds today.

`pip install` ships src/civicrealtime/http/static/demo/ as committed (no npm at install time),
so a change to web/demo/src, package-lock.json or build.mjs must come with a rebuild:

    npm ci --prefix web/demo && npm run build --prefix web/demo

This test rebuilds into a temp dir and compares every file byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import INSTALL_HINT, NODE, NODE_MODULES, STATIC_DEMO, WEB_DEMO, run_bounded

REBUILD = "npm ci --prefix web/demo && npm run build --prefix web/demo"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
    pytest.mark.skipif(
        not (NODE_MODULES / "esbuild").is_dir(), reason=f"no esbuild: {INSTALL_HINT}"
    ),
]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_committed_bundle_is_fresh(tmp_path: Path) -> None:
    assert NODE is not None
    out = tmp_path / "demo"
    code, stdout, stderr = run_bounded(
        [NODE, str(WEB_DEMO / "build.mjs"), "--outdir", str(out)],
        cwd=WEB_DEMO,
        timeout=180,
    )
    assert code == 0, f"the build failed (exit {code})\n{stdout}\n{stderr}"
    built, committed = _files(out), _files(STATIC_DEMO)
    assert sorted(committed) == sorted(built), (
        f"the committed files differ from the built ones; run `{REBUILD}`\n"
        f"  committed: {sorted(committed)}\n  built:     {sorted(built)}"
    )
    stale = [name for name in built if built[name] != committed[name]]
    assert not stale, f"stale in src/civicrealtime/http/static/demo/: {stale}; run `{REBUILD}`"
