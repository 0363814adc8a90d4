"""/metrics and the version in /health: zeros while idle, disjoint room states, process_*
and build info. The names the shipped alerts and dashboard use are checked in
tests/deploy/test_monitoring.py."""

from __future__ import annotations

import platform
import tomllib
from importlib import metadata
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from civicrealtime.rooms import MemoryOnly, RoomType, RoomTypeRegistry
from civicrealtime.version import VERSION

from .conftest import RunningServer, StartServer
from .polling import eventually
from .ydoc_client import YClient

ROOT = Path(__file__).resolve().parents[1]


def http(running: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.service.http_port}", timeout=5)


async def scrape(running: RunningServer) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value}."""
    async with http(running) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def two_types() -> RoomTypeRegistry:
    return RoomTypeRegistry(
        [RoomType(name="records", hooks=MemoryOnly()), RoomType(name="notes", hooks=MemoryOnly())]
    )


async def test_idle_daemon_exports_zero_for_every_labelled_gauge(
    start_server: StartServer,
) -> None:
    running = await start_server(room_types=two_types())
    samples = await scrape(running)
    assert samples["civicrealtime_connections"] == {
        (("room_type", "notes"),): 0.0,
        (("room_type", "records"),): 0.0,
    }
    assert samples["civicrealtime_rooms"] == {
        (("state", "damaged"),): 0.0,
        (("state", "empty"),): 0.0,
        (("state", "live"),): 0.0,
    }


async def test_room_states_are_disjoint(start_server: StartServer) -> None:
    running = await start_server(room_types=two_types())
    staying = await running.client("staying")
    leaving = await YClient.connect(running.nursery, running.url("leaving", "notes"))
    await staying.wait_for(lambda: len(staying.binary) >= 1)
    await leaving.wait_for(lambda: len(leaving.binary) >= 1)
    await leaving.ws.aclose()
    # The room it left stays in memory for its grace period (rooms.cleanup_timeout: 30 s).
    await eventually(lambda: not running.service.rooms.get("notes:leaving").room.members)
    samples = await scrape(running)
    assert samples["civicrealtime_rooms"] == {
        (("state", "damaged"),): 0.0,
        (("state", "empty"),): 1.0,
        (("state", "live"),): 1.0,
    }
    # `damaged` rooms are refused, never in memory: live + empty is what memory holds.
    in_memory = sum(v for k, v in samples["civicrealtime_rooms"].items() if k[0][1] != "damaged")
    assert in_memory == len(list(running.service.rooms))
    assert samples["civicrealtime_connections"] == {
        (("room_type", "notes"),): 0.0,
        (("room_type", "records"),): 1.0,
    }


async def test_process_metrics_and_build_info(start_server: StartServer) -> None:
    running = await start_server()
    samples = await scrape(running)
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert name in samples, name
    assert samples["process_resident_memory_bytes"][()] > 0
    [(labels, value)] = samples["civicrealtime_build_info"].items()
    assert value == 1.0
    info = dict(labels)
    assert info["version"] == VERSION
    assert info["python"] == platform.python_version()
    assert info["pycrdt"] == metadata.version("pycrdt")
    assert info["trio"] == metadata.version("trio")


async def test_health_names_the_version(start_server: StartServer) -> None:
    running = await start_server()
    async with http(running) as client:
        health = (await client.get("/health")).json()
    assert health["version"] == VERSION


def test_version_is_the_packaged_one() -> None:
    """pyproject.toml takes its version from civicrealtime/version.py: one place."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "civicrealtime.version.VERSION"}
