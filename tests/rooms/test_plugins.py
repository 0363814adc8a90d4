"""Room types enabled by configuration (`room_types`), from a module or an entry point.

The `notes` example (examples/notes) is imported from its source directory; the entry
point path uses a distribution written to a temporary directory on `sys.path`, which
`importlib.metadata` finds as it finds an installed plugin package.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from pycrdt import Text

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.auth.revocation import Revocations
from civicrealtime.auth.token_auth import TokenAuthenticator
from civicrealtime.config import ConfigError, RealtimeConfig, structure
from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.rooms import RoomType, RoomTypeRegistry
from civicrealtime.rooms.plugins import ENTRY_POINT_GROUP, role_grants
from civicrealtime.startup import RoomTypeSetupError

from ..conftest import RunningServer, StartServer, make_config
from ..ydoc_client import YClient

ROOT = Path(__file__).resolve().parents[2]
NOTES_SRC = ROOT / "examples" / "notes" / "src"
SECRET = b"p" * 48


@pytest.fixture
def notes_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(NOTES_SRC))


def notes_config(tmp_path: Path, **settings: Any) -> dict[str, Any]:
    entry = {
        "handler": "civicrealtime_notes:NotesRoomType",
        "options": {"directory": str(tmp_path / "notes")},
        **settings,
    }
    return {"notes": entry}


def token(role: str, user: str = "u") -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 600, "role": role}
    return jwt.encode(claims, SECRET, "HS256")


async def start_with_tokens(start_server: StartServer, config: RealtimeConfig) -> RunningServer:
    auth = TokenAuthenticator(
        config.auth, hmac_secret=SECRET, keys=None, introspector=None, revocations=Revocations()
    )
    running: RunningServer = await start_server(config, authenticator=auth)
    return running


# --- configuration: the shape of room_types --------------------------------------------------


@pytest.mark.parametrize(
    ("room_types", "problem"),
    [
        ({"records": {}}, "room_types.records: records rooms are built in"),
        ({"Notes": {}}, "room_types: 'Notes' is not a room type name"),
        (
            {"notes": {"handlr": "x:y"}},
            "room_types.notes.handlr: unknown key; did you mean 'handler'",
        ),
        ({"notes": {"handler": "not a reference"}}, "room_types.notes.handler: 'not a reference'"),
        ({"notes": {"options": ["directory"]}}, "room_types.notes.options: ['directory']"),
        ({"notes": {"roles": {"public": "write"}}}, "room_types.notes.roles.public: 'write'"),
        ({"notes": {"roles": {"intern": "view"}}}, "room_types.notes.roles.intern: unknown role"),
        ({"notes": "x:y"}, "room_types.notes: expected a mapping of keys"),
    ],
)
def test_room_types_are_validated_with_their_key_path(room_types: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        structure({"room_types": room_types})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_roles_of_a_room_type_must_be_defined_by_auth_roles() -> None:
    config = structure(
        {"auth": {"roles": {"staff": []}}, "room_types": {"notes": {"roles": {"staff": "edit"}}}}
    )
    assert config.room_types["notes"].roles == {"staff": "edit"}
    with pytest.raises(ConfigError, match=r"roles.editor: unknown role: auth.roles defines staff"):
        structure(
            {"auth": {"roles": {"staff": []}}, "room_types": {"n": {"roles": {"editor": "view"}}}}
        )


# --- building the room types -------------------------------------------------------------


def service_for(room_types: dict[str, Any], **overrides: Any) -> RealtimeService:
    return RealtimeService(
        make_config(room_types=room_types, **overrides), authenticator=DevelopmentAuthenticator()
    )


@pytest.mark.usefixtures("notes_importable")
def test_a_configured_type_is_registered_with_its_permissions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="civicrealtime")
    service = service_for(notes_config(tmp_path))
    assert (
        "room_type.enabled name=notes view=notes:read edit=notes:write "
        "roles=admin:edit,clerk:edit,editor:edit,public:view"
    ) in caplog.messages
    notes = service.room_types.get("notes")
    assert type(notes).__name__ == "NotesRoomType"
    assert (notes.view_permission, notes.edit_permission) == ("notes:read", "notes:write")
    assert service.room_types.names() == {"records", "notes"}
    # The default access: the CivicPress roles, with the type's own permission names.
    roles = service.config.auth.roles
    assert roles["editor"] == ("records:view", "records:edit", "notes:read", "notes:write")
    assert roles["public"] == ("records:view", "notes:read")


@pytest.mark.usefixtures("notes_importable")
def test_role_grants_follow_the_configuration(tmp_path: Path) -> None:
    config = make_config(
        room_types=notes_config(tmp_path, roles={"public": "edit", "editor": "view"})
    )
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
    grants = role_grants(config, service.room_types)
    assert grants["public"] == ("records:view", "notes:read", "notes:write")
    assert grants["editor"] == ("records:view", "records:edit", "notes:read")
    # Not named: nothing in notes rooms.
    assert grants["clerk"] == ("records:view", "records:edit")
    # `roles: {}`: no role grants anything; auth.roles is unchanged.
    closed = make_config(room_types=notes_config(tmp_path, roles={}))
    assert RealtimeService(closed, authenticator=DevelopmentAuthenticator()).config == closed


def test_a_plain_type_needs_no_code() -> None:
    """The base class is a factory: a plain Yjs room type from configuration alone."""
    service = service_for({"scratch": {"handler": "civicrealtime.rooms:RoomType"}})
    assert service.room_types.get("scratch").view_permission == "scratch:view"
    assert "scratch:edit" in service.config.auth.roles["clerk"]


@pytest.mark.parametrize(
    ("handler", "options", "message"),
    [
        (
            "no_such_module_xyz:Factory",
            {},
            "room_types.t.handler: cannot import 'no_such_module_xyz'",
        ),
        (
            "civicrealtime.rooms:Missing",
            {},
            "room_types.t.handler: 'civicrealtime.rooms' has no attribute 'Missing'",
        ),
        (
            "civicrealtime.rooms.plugins:ENTRY_POINT_GROUP",
            {},
            "room_types.t.handler: civicrealtime.rooms.plugins:ENTRY_POINT_GROUP is a str, not a "
            "RoomType class",
        ),
        (
            "builtins:str",
            {},
            "room_types.t.handler: builtins:str returned str, not a civicrealtime.rooms.RoomType",
        ),
        (
            "civicrealtime.rooms:RoomType",
            {"colour": "blue"},
            "room_types.t.options: civicrealtime.rooms:RoomType does not accept them",
        ),
        (
            "no-such-plugin",
            {},
            f"room_types.t.handler: no entry point 'no-such-plugin' in the group "
            f"{ENTRY_POINT_GROUP}",
        ),
        (None, {}, "room_types.t.handler: no entry point 't'"),
    ],
)
def test_a_type_that_cannot_be_built_stops_the_start_with_one_line(
    handler: str | None, options: dict[str, Any], message: str
) -> None:
    settings: dict[str, Any] = {"options": options}
    if handler is not None:
        settings["handler"] = handler
    with pytest.raises(RoomTypeSetupError) as caught:
        service_for({"t": settings})
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


@pytest.mark.usefixtures("notes_importable")
def test_a_factory_failure_and_a_wrong_name_are_reported(tmp_path: Path) -> None:
    with pytest.raises(
        RoomTypeSetupError,
        match=r"room_types.notes: civicrealtime_notes:"
        r"NotesRoomType failed: ValueError: only_existing needs a directory",
    ):
        service_for(
            {
                "notes": {
                    "handler": "civicrealtime_notes:NotesRoomType",
                    "options": {"only_existing": True},
                }
            }
        )
    # A factory must build the type it is asked for: the name is the URL segment.
    module = tmp_path / "misnamed_plugin.py"
    module.write_text(
        "from civicrealtime.rooms import RoomType\ndef make(name):\n    return RoomType('other')\n"
    )
    # A module whose own code fails while it is imported: one line too, not a traceback.
    (tmp_path / "failing_plugin.py").write_text("raise RuntimeError('no licence key')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(RoomTypeSetupError, match="built a room type named 'other', not 'n'"):
            service_for({"n": {"handler": "misnamed_plugin:make"}})
        with pytest.raises(
            RoomTypeSetupError,
            match=r"room_types\.n\.handler: cannot import 'failing_plugin' .*RuntimeError: no "
            "licence key",
        ):
            service_for({"n": {"handler": "failing_plugin:make"}})
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("misnamed_plugin", None)


# --- the entry point path ----------------------------------------------------------------


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A plugin package as pip would install it: a module and its dist-info on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "fake_plugin_pkg.py").write_text(
        "from civicrealtime.rooms import RoomType\n"
        "class Board(RoomType):\n"
        "    def __init__(self, name, *, colour='white'):\n"
        "        super().__init__(name, view_permission=f'{name}:look')\n"
        "        self.colour = colour\n"
    )
    info = site / "fake_plugin_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nboard = fake_plugin_pkg:Board\nbroken = fake_plugin_pkg:Nope\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("fake_plugin_pkg", None)


@pytest.mark.usefixtures("fake_distribution")
def test_an_installed_entry_point_is_found_by_the_room_type_name() -> None:
    service = service_for({"board": {"options": {"colour": "green"}}})
    board = service.room_types.get("board")
    assert type(board).__name__ == "Board"
    assert board.colour == "green"  # type: ignore[attr-defined]
    assert service.config.auth.roles["public"] == ("records:view", "board:look")


@pytest.mark.usefixtures("fake_distribution")
def test_an_entry_point_can_serve_another_name_and_fail_clearly() -> None:
    service = service_for({"whiteboard": {"handler": "board"}})
    assert service.room_types.get("whiteboard").view_permission == "whiteboard:look"
    with pytest.raises(
        RoomTypeSetupError,
        match=r"cannot load the entry point 'broken' "
        r"\(fake_plugin_pkg:Nope\): AttributeError",
    ):
        service_for({"b": {"handler": "broken"}})
    with pytest.raises(RoomTypeSetupError, match=r"no entry point 'bored' .*\(board, broken\)"):
        service_for({"bored": {}})


def test_a_configured_name_taken_by_the_callers_registry_is_refused() -> None:
    registry = RoomTypeRegistry([RoomType("records"), RoomType("scratch")])
    with pytest.raises(RoomTypeSetupError, match=r"room_types\.scratch: a room type of this name"):
        RealtimeService(
            make_config(room_types={"scratch": {"handler": "civicrealtime.rooms:RoomType"}}),
            authenticator=DevelopmentAuthenticator(),
            room_types=registry,
        )


def test_installing_a_plugin_enables_nothing(fake_distribution: Path) -> None:
    assert service_for({}).room_types.names() == {"records"}


# --- through the server ------------------------------------------------------------------


@pytest.mark.usefixtures("notes_importable")
async def test_roles_from_the_config_decide_who_views_and_edits_notes(
    start_server: StartServer, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "agenda.txt").write_text("1. budget\n")
    config = make_config(
        auth={"mode": "jwt", "leeway": 0},
        room_types=notes_config(tmp_path, roles={"clerk": "edit", "public": "view"}),
    )
    running = await start_with_tokens(start_server, config)
    url = running.url("agenda", room_type="notes")
    clerk = await YClient.connect(running.nursery, url, token=token("clerk", "c"))
    await clerk.wait_for(lambda: clerk.text("content") == "1. budget\n")
    viewer = await YClient.connect(running.nursery, url, token=token("public", "p"))
    await viewer.wait_for(lambda: viewer.text("content") == "1. budget\n")
    await clerk.edit(lambda d: d.get("content", type=Text).insert(0, "Agenda\n"))
    await viewer.wait_for(lambda: viewer.text("content").startswith("Agenda\n"))
    await viewer.edit(lambda d: d.get("content", type=Text).insert(0, "vandal "))
    await viewer.wait_for(lambda: bool(viewer.events("error")))
    assert viewer.events("error")[0]["error"]["code"] == "PERMISSION_DENIED"
    assert not clerk.text("content").startswith("vandal")
    # `editor` is not among this type's roles: its records permissions do not open notes.
    editor = await YClient.connect(running.nursery, url, token=token("editor", "e"))
    await editor.wait_for(lambda: editor.closed is not None)
    assert editor.closed is not None
    assert editor.closed[0] == CloseCode.PERMISSION_DENIED


def test_check_config_reports_a_handler_that_cannot_be_imported(tmp_path: Path) -> None:
    path = tmp_path / "rt.yml"
    path.write_text("room_types:\n  notes:\n    handler: no_such_notes_pkg:NotesRoomType\n")
    result = subprocess.run(
        [sys.executable, "-m", "civicrealtime", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "room_types.notes.handler: cannot import 'no_such_notes_pkg'" in result.stderr
