"""The records room type through the daemon: seeding, 4004, drafts, and a second type."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from pycrdt import Doc, Text, XmlElement, XmlFragment, XmlText

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.records.handler import RecordsRoomType
from civicrealtime.rooms import RoomType, RoomTypeRegistry

from .conftest import RunningServer, make_config
from .polling import eventually
from .ydoc_client import YClient

FIXTURES = Path(__file__).parent / "records" / "fixtures" / "data"


def copy_data(tmp_path: Path) -> Path:
    target = tmp_path / "civicpress"
    shutil.copytree(FIXTURES, target)
    return target


async def start(nursery: trio.Nursery, tmp_path: Path, **records: Any) -> RunningServer:
    config = make_config(
        data_dir=str(tmp_path / "state"),
        snapshots={"enabled": True, "flush_ms": 20, "max_updates": 1, "interval": 0},
        records=records,
    )
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
    port = await nursery.start(service.run)
    return RunningServer(service=service, port=port, nursery=nursery)


def names(fragment: XmlFragment) -> list[str]:
    return [str(child.tag) for child in fragment.children if isinstance(child, XmlElement)]


async def test_record_room_is_seeded_from_markdown(nursery: trio.Nursery, tmp_path: Path) -> None:
    data = copy_data(tmp_path)
    running = await start(nursery, tmp_path, data_dir=str(data))
    client = await running.client("bylaw-2026-004")
    fragment = client.doc.get("default", type=XmlFragment)
    await client.wait_for(lambda: len(fragment.children) > 3)
    blocks = names(fragment)
    assert blocks[0] == "heading"
    assert "bullet_list" in blocks
    first = fragment.children[0]
    assert isinstance(first, XmlElement)
    assert first.attributes["level"] == 1
    xml = str(fragment)
    assert "civicRef" in xml
    assert "Règlement municipal 2026-04" in xml


async def test_unknown_record_is_refused_with_4004(nursery: trio.Nursery, tmp_path: Path) -> None:
    data = copy_data(tmp_path)
    running = await start(nursery, tmp_path, data_dir=str(data))
    client = await running.client("no-such-record")
    await client.wait_for(lambda: client.closed is not None)
    assert client.closed is not None
    assert client.closed[0] == CloseCode.NOT_FOUND
    assert client.events("error")[0]["error"]["code"] == "ROOM_NOT_FOUND"


async def test_a_new_record_file_is_found_without_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = copy_data(tmp_path)
    running = await start(nursery, tmp_path, data_dir=str(data), refresh_seconds=0.05)
    new = data / "records" / "bylaw" / "2026" / "bylaw-2026-009.md"
    new.write_text("---\nid: bylaw-2026-009\ntitle: New\ntype: bylaw\n---\n\nFresh text.\n")
    await trio.sleep(0.1)  # past refresh_seconds: the next lookup rescans
    client = await running.client("bylaw-2026-009")
    fragment = client.doc.get("default", type=XmlFragment)
    await client.wait_for(lambda: "Fresh text." in str(fragment))


async def test_edit_lands_in_the_draft_and_never_in_the_record(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = copy_data(tmp_path)
    published = data / "records" / "resolution" / "2025" / "res-2025-118.md"
    original = published.read_bytes()
    running = await start(nursery, tmp_path, data_dir=str(data))
    client = await running.client("res-2025-118")
    fragment = client.doc.get("default", type=XmlFragment)
    await client.wait_for(lambda: len(fragment.children) > 0)

    def add_paragraph(doc: Doc[Any]) -> None:
        paragraph = XmlElement("paragraph")
        doc.get("default", type=XmlFragment).children.append(paragraph)
        paragraph.children.append(XmlText("Amendement adopté à l'unanimité ✓"))

    await client.edit(add_paragraph)
    draft = tmp_path / "state" / "drafts" / "resolution" / "res-2025-118.md"
    await eventually(lambda: draft.exists() and "Amendement adopté" in draft.read_text(), 10)
    text = draft.read_text()
    assert text.startswith(original.decode().split("\n---", 1)[0])  # front matter kept
    assert text.rstrip().endswith("Amendement adopté à l'unanimité ✓")
    assert published.read_bytes() == original


async def test_without_data_dir_records_start_empty(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    running = await start(nursery, tmp_path)
    client = await running.client("anything")
    await client.wait_for(lambda: len(client.binary) >= 2)
    assert len(client.doc.get("default", type=XmlFragment).children) == 0
    said = [r for r in caplog.records if "records.no_data_dir" in r.getMessage()]
    assert len(said) == 1


async def test_a_record_with_history_is_not_reseeded(nursery: trio.Nursery, tmp_path: Path) -> None:
    data = copy_data(tmp_path)
    running = await start(nursery, tmp_path, data_dir=str(data))
    client = await running.client("policy-telework")
    fragment = client.doc.get("default", type=XmlFragment)
    await client.wait_for(lambda: len(fragment.children) > 0)
    blocks = len(fragment.children)
    await client.ws.aclose()
    running.service.shutdown()
    await running.service.stopped.wait()
    again = await start(nursery, tmp_path, data_dir=str(data))
    other = await again.client("policy-telework")
    fragment = other.doc.get("default", type=XmlFragment)
    await other.wait_for(lambda: len(fragment.children) > 0)
    assert len(fragment.children) == blocks


class Notes(RoomType):
    """A second room type: no seed, no writeback, its own permissions."""

    def __init__(self) -> None:
        super().__init__("notes")


async def test_a_second_room_type_needs_no_core_change(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    registry = RoomTypeRegistry(
        [RecordsRoomType(data_dir=None, drafts_dir=str(tmp_path / "drafts")), Notes()]
    )
    service = RealtimeService(
        make_config(), authenticator=DevelopmentAuthenticator(), room_types=registry
    )
    port = await nursery.start(service.run)
    a = await YClient.connect(nursery, f"ws://127.0.0.1:{port}/realtime/notes/meeting")
    b = await YClient.connect(nursery, f"ws://127.0.0.1:{port}/realtime/notes/meeting")
    await a.wait_for(lambda: len(a.binary) >= 2)
    await a.edit(lambda d: d.get("t", type=Text).insert(0, "agenda"))
    await b.wait_for(lambda: b.text("t") == "agenda")
    assert b.text_frames[0]["roomId"] == "notes:meeting"
    assert service.room_types.get("notes").view_permission == "notes:view"


def test_records_cli_list_and_show(tmp_path: Path) -> None:
    data = copy_data(tmp_path)
    (tmp_path / "rt.yml").write_text(f"records:\n  data_dir: {data}\ndata_dir: state\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "civicrealtime", "--config", str(tmp_path / "rt.yml"), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    listed = cli("records", "list")
    assert listed.returncode == 0, listed.stderr
    assert "res-2025-118" in listed.stdout
    assert "[archived]" in listed.stdout
    shown = cli("records", "show", "res-2025-118")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("# Résolution 2025-118")
    assert '<!--civic-ref type="attachment" id="att-2025-77" label="Annexe A"-->' in shown.stdout
    missing = cli("records", "show", "nope")
    assert missing.returncode == 1
