"""Prometheus exposition of the daemon's counters, computed when scraped.

Gauges with a label export every value the label can take, zeros included: a series that
is absent while idle makes `sum(civicrealtime_connections)` empty instead of 0, and
alerts on it never fire. The registry also carries the standard `process_*` metrics and
`civicrealtime_build_info`.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from ..rooms import RoomManager
from ..stats import Stats
from ..transport import RealtimeServer
from ..version import VERSION

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
P = "civicrealtime_"


class DaemonCollector(Collector):
    def __init__(
        self,
        stats: Stats,
        server: RealtimeServer,
        rooms: RoomManager,
        *,
        store_stats: Callable[[], dict[str, float]] | None = None,
        cluster_stats: Callable[[], dict[str, float]] | None = None,
        room_types: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self._stats = stats
        self._server = server
        self._rooms = rooms
        self._room_types = room_types
        self._store_stats = store_stats
        self._cluster_stats = cluster_stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        yield _build_info()
        # Every registered room type, so that an idle daemon exports 0 rather than nothing.
        by_type: dict[str, int] = dict.fromkeys(self._room_types(), 0)
        for connection in self._server.connections.values():
            room_type = connection.room_type
            by_type[room_type] = by_type.get(room_type, 0) + 1
        g = GaugeMetricFamily(P + "connections", "Open connections", labels=["room_type"])
        for room_type, count in sorted(by_type.items()):
            g.add_metric([room_type], count)
        yield g
        rooms = self._rooms.statistics()
        g = GaugeMetricFamily(P + "rooms", "Rooms in memory, by state", labels=["state"])
        # Disjoint, so that sum() is the number of rooms in memory: `rooms.live` counts
        # them all, `rooms.empty` those without members (in their grace period).
        g.add_metric(["live"], rooms.live - rooms.empty)
        g.add_metric(["empty"], rooms.empty)
        # Refused because their stored state is damaged (not in memory; docs/persistence.md).
        g.add_metric(["damaged"], rooms.damaged)
        yield g
        yield _labelled(
            P + "messages_received", "Frames received, by type", "type", s.messages_received
        )
        yield _labelled(P + "messages_sent", "Frames sent, by type", "type", s.messages_sent)
        yield CounterMetricFamily(P + "bytes_received", "Payload bytes received", s.bytes_received)
        yield CounterMetricFamily(P + "bytes_sent", "Payload bytes sent", s.bytes_sent)
        yield CounterMetricFamily(
            P + "updates_applied", "Document changes applied", s.updates_applied
        )
        yield CounterMetricFamily(
            P + "text_splits",
            "Characters outside the BMP an update split, rewritten as two U+FFFD as Yjs does",
            s.text_splits,
        )
        yield CounterMetricFamily(
            P + "fanout_deliveries",
            "Update and awareness frames queued to members",
            s.fanout_deliveries,
        )
        yield _labelled(
            P + "closes", "Close codes sent", "code", {str(k): v for k, v in s.closes.items()}
        )
        yield _labelled(
            P + "close_reasons",
            "Closes sent, by reason code (protocol/closecodes.py; NORMAL for 1000)",
            "reason",
            {k or "NORMAL": v for k, v in s.close_reasons.items()},
        )
        yield _labelled(
            P + "auth_failures", "Refused connections, by reason", "reason", s.auth_failures
        )
        yield CounterMetricFamily(
            P + "rate_limit_slowdowns", "Frames delayed by the rate limit", s.rate_limit_slowdowns
        )
        yield CounterMetricFamily(
            P + "rate_limit_closes", "Connections closed for flooding (4013)", s.rate_limit_closes
        )
        yield CounterMetricFamily(
            P + "slow_consumer_closes",
            "Connections closed for not reading (1013)",
            s.slow_consumer_closes,
        )
        yield _labelled(
            P + "awareness_refused",
            "Awareness changes refused (foreign client ids, presence limits), by reason",
            "reason",
            s.awareness_refused,
        )
        yield CounterMetricFamily(P + "room_crashes", "Room actors that failed", s.room_crashes)
        yield GaugeMetricFamily(
            P + "pending_bytes",
            "Updates held for changes the room never received, bytes",
            rooms.pending_bytes,
        )
        yield CounterMetricFamily(
            P + "pending_dropped_updates",
            "Held updates dropped (over budget, or unresolved after pending_timeout)",
            s.pending_dropped_updates,
        )
        yield CounterMetricFamily(
            P + "pending_dropped_bytes", "Bytes of held updates dropped", s.pending_dropped_bytes
        )
        yield CounterMetricFamily(
            P + "record_file_merges",
            "Changes of published record files merged into their rooms",
            s.record_file_merges,
        )
        yield CounterMetricFamily(
            P + "record_file_failures",
            "Changed published record files that could not be read (nothing merged)",
            s.record_file_failures,
        )
        h = HistogramMetricFamily(P + "hydration_seconds", "Time to load a room")
        cumulative = 0
        buckets = []
        for bound in (*Stats.HYDRATION_BOUNDS, float("inf")):
            cumulative += s.hydration_buckets.get(bound, 0)
            buckets.append((_bound(bound), cumulative))
        h.add_metric([], buckets, sum_value=s.hydration_seconds.total)
        yield h
        # The "saved" acknowledgement (docs/saved.md): arrival of an update to its ack.
        h = HistogramMetricFamily(
            P + "save_ack_seconds", "Time from an update's arrival to its saved acknowledgement"
        )
        cumulative = 0
        buckets = []
        for bound in (*Stats.SAVE_ACK_BOUNDS, float("inf")):
            cumulative += s.save_ack_buckets.get(bound, 0)
            buckets.append((_bound(bound), cumulative))
        h.add_metric([], buckets, sum_value=s.save_ack_seconds.total)
        yield h
        yield CounterMetricFamily(
            P + "saved_updates", "Updates acknowledged to their sender as saved", s.saved_updates
        )
        yield GaugeMetricFamily(
            P + "event_loop_lag_seconds",
            "Latest scheduling delay of the event loop",
            s.loop_lag_seconds,
        )
        yield GaugeMetricFamily(
            P + "event_loop_lag_max_seconds",
            "Largest scheduling delay over the last minute",
            s.loop_lag_max_seconds,
        )
        if self._store_stats is not None:
            yield from _store_metrics(self._store_stats())
        if self._cluster_stats is not None:
            yield from _cluster_metrics(self._cluster_stats())


def build_labels() -> dict[str, str]:
    """What this process runs: the release and the versions that decide its behaviour."""
    return {
        "version": VERSION,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "pycrdt": _installed("pycrdt"),
        "trio": _installed("trio"),
    }


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _build_info() -> GaugeMetricFamily:
    labels = build_labels()
    family = GaugeMetricFamily(
        P + "build_info", "Always 1; the labels say what runs", labels=list(labels)
    )
    family.add_metric(list(labels.values()), 1)
    return family


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def _labelled(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _store_metrics(values: dict[str, float]) -> Iterator[Metric]:
    writes = CounterMetricFamily(P + "store_writes", "Store writes", labels=["kind"])
    failures = CounterMetricFamily(
        P + "store_write_failures", "Store writes that failed", labels=["kind"]
    )
    seconds = SummaryMetricFamily(P + "store_write_seconds", "Store write time", labels=["kind"])
    for kind in ("log", "snapshot"):
        writes.add_metric([kind], values.get(f"{kind}_writes", 0))
        failures.add_metric([kind], values.get(f"{kind}_failures", 0))
        seconds.add_metric(
            [kind],
            count_value=int(values.get(f"{kind}_writes", 0)),
            sum_value=values.get(f"{kind}_seconds", 0.0),
        )
    yield writes
    yield failures
    yield seconds
    yield GaugeMetricFamily(
        P + "store_pending_bytes",
        "Updates received but not yet durable, bytes",
        values.get("pending_bytes", 0),
    )
    yield GaugeMetricFamily(
        P + "oldest_unsaved_seconds",
        "Age of the oldest update received but not yet durable (0 when none)",
        values.get("oldest_unsaved_seconds", 0),
    )


# (statistics key, metric name, help): counters, then gauges.
_CLUSTER_COUNTERS = (
    ("published", "cluster_entries_published", "Entries this node wrote to Redis"),
    ("delivered", "cluster_entries_delivered", "Other nodes' entries handed to rooms here"),
    ("publish_failures", "cluster_publish_failures", "Writes to Redis that failed"),
    ("read_failures", "cluster_read_failures", "Reads from Redis that failed"),
    ("resyncs", "cluster_resyncs", "Rooms reloaded after missing stream entries"),
    ("nodes_gone", "cluster_nodes_gone", "Other nodes whose heartbeat expired"),
    ("dropped_updates", "cluster_dropped_updates", "Updates dropped from a full publish buffer"),
)
_CLUSTER_GAUGES = (
    ("publish_buffer_bytes", "cluster_publish_buffer_bytes", "Bytes waiting to be published"),
    ("publish_buffer_entries", "cluster_publish_buffer_entries", "Entries waiting"),
    ("rooms", "cluster_rooms", "Rooms linked to their Redis stream"),
    ("leases", "cluster_snapshot_leases", "Rooms whose snapshot lease this node holds"),
    ("redis_up", "cluster_redis_up", "1 when Redis answers this node, else 0"),
)


def _cluster_metrics(values: dict[str, float]) -> Iterator[Metric]:
    for key, name, doc in _CLUSTER_COUNTERS:
        yield CounterMetricFamily(P + name, doc, values.get(key, 0))
    for key, name, doc in _CLUSTER_GAUGES:
        yield GaugeMetricFamily(P + name, doc, values.get(key, 0))


def daemon_registry(collector: DaemonCollector) -> CollectorRegistry:
    """The daemon's own registry (never the library's global one, so that several services
    can run in one process): its collector plus the standard `process_*` metrics (CPU, memory,
    open files, start time; read from /proc, so empty where there is none)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
