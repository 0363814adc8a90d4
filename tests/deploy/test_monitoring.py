"""deploy/prometheus/alerts.yml and deploy/grafana/civicrealtime.json against the daemon.

Every metric name the alert rules and the dashboard query must be one the daemon exports
(from a running service with a store; the cluster's families from the same collector with
cluster statistics, as a cluster node exports them). With Debian's promtool (package
`prometheus`, installed by tests/deploy/install-system-tools.sh) the rules file and every
dashboard query are also parsed by Prometheus itself; without it those tests skip, and the
structure checks here still run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from civicrealtime.http.metrics import DaemonCollector

from ..conftest import RunningServer, StartServer, make_config

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "civicrealtime.json"
PROMTOOL = shutil.which("promtool")
# Series Prometheus makes itself for every target, not exported by the daemon.
SCRAPE_SERIES = {"up"}
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
# Words of PromQL that look like names: operators and modifiers (functions and aggregations
# are recognised by the parenthesis after them).
KEYWORDS = {"and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool"}
DURATION = re.compile(r"^\d+[smhdwy]$")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: run tests/deploy/install-system-tools.sh as root (installs "
    "Debian's `prometheus` package) to check the rules and the dashboard with Prometheus",
)


def series_names(exposition: str) -> set[str]:
    """Every series name the exposition's families can produce, from their TYPE lines."""
    names: set[str] = set()
    for family, kind in re.findall(r"^# TYPE (\w+) (\w+)$", exposition, re.MULTILINE):
        base = family.removesuffix("_total") if kind == "counter" else family
        names.update(base + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, templates
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges, Grafana's [$__rate_interval]
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][\w:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group() in KEYWORDS:
            continue  # a function or an aggregation, or an operator
        names.add(match.group())
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard: its panels' targets and its variables."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [
        target["expr"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]
    for variable in dashboard["templating"]["list"]:
        # label_values(metric, label): the metric is what matters.
        match = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["definition"])
        assert match is not None, variable["definition"]
        queries.append(match.group(1))
    return queries


@pytest.fixture
async def exported(start_server: StartServer, tmp_path: Path) -> set[str]:
    """Series names a daemon with a store exports, plus those of a cluster node."""
    config = make_config(data_dir=str(tmp_path), snapshots={"enabled": True})
    running: RunningServer = await start_server(config)
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{running.service.http_port}/metrics")
    names = series_names(response.text)
    service = running.service
    # The same collector on a cluster node also has the cluster's families.
    cluster = DaemonCollector(service.stats, service.server, service.rooms, cluster_stats=dict)
    for family in cluster.collect():
        kind = family.type
        names.update(family.name + suffix for suffix in SUFFIXES.get(kind, ("",)))
    assert "civicrealtime_store_pending_bytes" in names  # the store's families are there
    assert "civicrealtime_cluster_redis_up" in names
    return names


def test_metric_names_are_found_in_promql() -> None:
    """The extraction itself, so that a name it misses cannot slip through the checks."""
    assert metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job="x", i=~"$i"}[$__rate_interval])))'
        " > 2 and on (instance) b_total unless c == bool 10e6"
    ) == {"a_bucket", "b_total", "c"}
    assert metric_names("sum by (reason) (increase(x_total[5m])) > 20") == {"x_total"}
    assert metric_names('up{job="civicrealtime"} == 0') == {"up"}
    assert metric_names("rate(a[1m]) / on (kind) rate(b[1m])") == {"a", "b"}


async def test_alert_rules_use_only_exported_metrics(exported: set[str]) -> None:
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    assert used, "no metric found in the rules"
    assert used - exported - SCRAPE_SERIES == set(), f"not exported by the daemon: {ALERTS}"


async def test_dashboard_uses_only_exported_metrics(exported: set[str]) -> None:
    used = {name for query in dashboard_queries() for name in metric_names(query)}
    assert used - exported - SCRAPE_SERIES == set(), f"not exported by the daemon: {DASHBOARD}"
    # Every family the daemon exports has a panel, process_* aside (CPU and memory do).
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    daemon = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in exported}
    missing = {n for n in daemon if n.startswith("civicrealtime_")} - shown
    assert missing == set(), "exported but on no panel of the dashboard"


def test_alert_rules_structure() -> None:
    """What promtool would refuse, and what an operator needs: checked with or without it."""
    seen: set[str] = set()
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        name = rule["alert"]
        assert re.fullmatch(r"Civicrealtime[A-Z]\w+", name) and name not in seen, name
        seen.add(name)
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), name
        assert rule["expr"].count("(") == rule["expr"].count(")"), name
        if "for" in rule:
            assert DURATION.match(rule["for"]), name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    # The doc's proposals all ship.
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    proposed = set(re.findall(r"\b(Civicrealtime[A-Z]\w+)", operations))
    assert proposed <= seen, proposed - seen


def test_dashboard_structure() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in dashboard["panels"]:
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(ALERTS)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, as a recording rule promtool parses."""
    assert PROMTOOL is not None
    recorded = [
        {
            "record": f"dashboard:query_{index}",
            "expr": query.replace("$__rate_interval", "5m").replace("$instance", ".*"),
        }
        for index, query in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
