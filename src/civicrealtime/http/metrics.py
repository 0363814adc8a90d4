"""Prometheus exposition of the daemon's counters, computed when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from ..rooms import RoomManager
from ..server import RealtimeServer
from ..stats import Stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
P = "civicrealtime_"


class DaemonCollector(Collector):
    def __init__(
        self,
        stats: Stats,
        server: RealtimeServer,
        rooms: RoomManager,
        store_stats: Callable[[], dict[str, float]] | None = None,
        cluster_stats: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self._stats = stats
        self._server = server
        self._rooms = rooms
        self._store_stats = store_stats
        self._cluster_stats = cluster_stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        by_type: dict[str, int] = {}
        for connection in self._server.connections.values():
            room_type = connection.room_type
            by_type[room_type] = by_type.get(room_type, 0) + 1
        g = GaugeMetricFamily(P + "connections", "Open connections", labels=["room_type"])
        for room_type, count in sorted(by_type.items()):
            g.add_metric([room_type], count)
        yield g
        rooms = self._rooms.statistics()
        g = GaugeMetricFamily(P + "rooms", "Rooms in memory", labels=["state"])
        g.add_metric(["live"], rooms.live)
        g.add_metric(["empty"], rooms.empty)
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
        yield CounterMetricFamily(P + "room_crashes", "Room actors that failed", s.room_crashes)
        h = HistogramMetricFamily(P + "hydration_seconds", "Time to load a room")
        cumulative = 0
        buckets = []
        for bound in (*Stats.HYDRATION_BOUNDS, float("inf")):
            cumulative += s.hydration_buckets.get(bound, 0)
            buckets.append((_bound(bound), cumulative))
        h.add_metric([], buckets, sum_value=s.hydration_seconds.total)
        yield h
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


def exposition(collector: DaemonCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
