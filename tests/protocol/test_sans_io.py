"""The protocol layer is sans-IO: importing it pulls in no networking.

Each check runs in a fresh interpreter, so that what this test process imported does not
count. pycrdt itself imports anyio (for its own providers), so anyio is not checked; the
networking stacks the daemon uses (trio, trio-websocket, wsproto, h11) are.
"""

from __future__ import annotations

import json
import subprocess
import sys

NETWORKING = ["trio", "trio_websocket", "wsproto", "h11"]
PROTOCOL_MODULES = [
    "varint",
    "messages",
    "awareness",
    "updates",
    "control",
    "routing",
    "session",
    "events",
    "closecodes",
    "errors",
    "ystructs",
    "document",
]

# Makes `civicrealtime` a bare namespace for its sub-packages without running its
# `__init__` (which assembles the whole daemon), so that only the protocol layer's own
# imports are measured.
BARE_PACKAGE = """
import importlib.util, sys, types
spec = importlib.util.find_spec("civicrealtime")
package = types.ModuleType("civicrealtime")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["civicrealtime"] = package
"""


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def loaded_after(statement: str, *, bare_package: bool = False) -> dict[str, bool]:
    prelude = BARE_PACKAGE if bare_package else ""
    code = (
        f"{prelude}\n{statement}\nimport json, sys\n"
        f"print(json.dumps({{m: m in sys.modules for m in {NETWORKING!r}}}))"
    )
    return json.loads(run(code))


def test_protocol_modules_import_no_networking() -> None:
    statement = "\n".join(f"import civicrealtime.protocol.{m}" for m in PROTOCOL_MODULES)
    loaded = loaded_after("import civicrealtime.protocol\n" + statement, bare_package=True)
    assert loaded == dict.fromkeys(NETWORKING, False)


def test_the_check_can_see_trio() -> None:
    # Guards the test above against a harness that could never observe an import.
    assert loaded_after("import trio", bare_package=True)["trio"] is True


def test_import_civicrealtime_protocol_does_not_import_trio() -> None:
    out = run(
        "import civicrealtime.protocol, sys; "
        "print('trio' in sys.modules, 'trio_websocket' in sys.modules)"
    )
    assert out == "False False"
