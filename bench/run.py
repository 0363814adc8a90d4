"""Benchmark civicrealtime against the reference y-websocket servers, side by side, in one run.

    python bench/run.py [--quick] [--servers a,b] [--workloads a,b] [--no-profile] ...

`nox -s bench` installs everything and runs this (`nox -s bench -- --quick`). Each server
runs pinned to one core (`taskset -c 0`), freshly started for every workload; the load
generator (bench/node/generator.mjs, Node.js + ws + yjs) runs on the other core and reports
its own load. Results go to bench/results/<timestamp>.json (and .md); the markdown table is
printed at the end. Servers:

- civicrealtime: `python -m civicrealtime` with a generated configuration: JWT auth (HS256,
  $CIVICREALTIME_JWT_SECRET, an editor token minted with `civicrealtime.auth.minting`),
  persistence on (SQLite in a temporary data_dir), the HTTP/metrics port on, rate and
  connection limits raised above the bench's own rates, everything else default;
- y-websocket-server: @y/websocket-server 0.1.1 (bench/peers/node), in-memory;
- pycrdt-websocket: pycrdt-websocket 0.16.5 under Hypercorn (bench/peers/python), in-memory.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
GENERATOR = BENCH / "node" / "generator.mjs"
NODE_PEER = (
    BENCH / "peers" / "node" / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"
)
PYCRDT_RUNNER = BENCH / "peers" / "python" / "pycrdt_server.py"
DEFAULT_PEERS_PYTHON = BENCH / ".venv-peers" / "bin" / "python"

SERVERS = ("civicrealtime", "civicrealtime-nosnap", "y-websocket-server", "pycrdt-websocket")
WORKLOADS = ("fanout", "rooms", "storm", "saturation", "cold")
STORM_ROOM = "storm"


def workload_config(name: str, quick: bool, scale: float) -> dict[str, Any]:
    d = lambda full, short: max(1.0, round((short if quick else full) * scale, 1))  # noqa: E731
    if name == "fanout":
        return dict(mode="steady", rooms=1, per_room=50, rate=10, duration=d(20, 5), drain_ms=10000)
    if name == "rooms":
        return dict(
            mode="steady", rooms=100, per_room=10, rate=1, duration=d(20, 5), drain_ms=10000
        )
    if name == "storm":
        return dict(mode="storm", joiners=50, rounds=1 if quick else 3, document_bytes=1_300_000)
    if name == "saturation":
        return dict(
            mode="saturation",
            rooms=10,
            per_room=10,
            start_rate=5 if not quick else 10,
            step_duration=d(5, 2),
            p99_limit_ms=250,
            resolution=1.2 if not quick else 1.5,
            max_steps=14 if not quick else 6,
            drain_ms=5000,
        )
    raise ValueError(name)


# -- servers ---------------------------------------------------------------------------------


def pin(args: argparse.Namespace, core: int) -> list[str]:
    """`taskset` to one core; on a shared machine also a higher priority (root only)."""
    prefix = ["taskset", "-c", str(core)]
    if args.nice:
        prefix += ["nice", "-n", str(args.nice)]
    return prefix


def boost(args: argparse.Namespace, pid: int) -> None:
    """Give a process started with `start_new_session` (its own autogroup) our niceness.

    With the kernel's autogroups (sched_autogroup_enabled), niceness only ranks processes
    of one session: against other sessions' work it is the autogroup's niceness that
    counts. Each measured process runs in a session of its own, so this touches nothing
    else, and the autogroup disappears with it.
    """
    if not args.nice:
        return
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as f:
        f.write(str(args.nice))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server process, pinned to the server core, with its log in the work directory."""

    path_prefix = "/"

    def __init__(self, name: str, work: Path, args: argparse.Namespace) -> None:
        self.name = name
        self.work = work
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path: Path | None = None

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        raise NotImplementedError

    def start(self, label: str) -> None:
        self.port = free_port()
        cmd, env, cwd = self.command()
        self.log_path = self.work / f"{self.name}-{label}.log"
        log = self.log_path.open("wb")
        pinned = [*pin(self.args, self.args.server_core), *cmd]
        self.proc = subprocess.Popen(
            pinned,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        boost(self.args, self.proc.pid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log_path}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{self.name} did not listen within 30 s: see {self.log_path}")
        time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client_config(self, token: str, subprotocol: bool) -> dict[str, Any]:
        assert self.proc is not None
        return {
            "name": self.name,
            "base_url": f"ws://127.0.0.1:{self.port}",
            "path_prefix": self.path_prefix,
            "token": token,
            "subprotocol": subprotocol,
            "pid": self.proc.pid,
            "clk_tck": os.sysconf("SC_CLK_TCK"),
            "core": self.args.server_core,
            "generator_core": self.args.generator_core,
        }

    def version(self) -> str:
        return ""


class Civicrealtime(Server):
    path_prefix = "/realtime/records/"

    def __init__(self, name: str, work: Path, args: argparse.Namespace) -> None:
        super().__init__(name, work, args)
        self.secret = secrets.token_urlsafe(48)
        self.data_dir = work / "civicrealtime-data"
        self.fresh_data = True
        # civicrealtime-nosnap: the same daemon with `snapshots.enabled: false`, so the
        # cost of durability shows next to the peers, which keep nothing.
        self.snapshots = not name.endswith("-nosnap")

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        if self.fresh_data and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.work / "civicrealtime.yml"
        # Only what the bench must change; everything else is the daemon's default
        # (persistence on, metrics port on, connection_cleanup, queues, timeouts).
        config.write_text(
            json.dumps(
                {
                    "realtime": {
                        "host": "127.0.0.1",
                        "port": self.port,
                        "data_dir": str(self.data_dir),
                        "rooms": {"max_rooms": 1000},
                        "rate_limiting": {
                            "messages_per_second": 100000,
                            "burst": 100000,
                            "connections_per_ip": 100000,
                            "connections_per_user": 100000,
                        },
                        "auth": {"mode": "jwt"},
                        "snapshots": {"enabled": self.snapshots, "storage": "database"},
                        "http": {"enabled": True, "host": "127.0.0.1", "port": 0},
                    }
                },
                indent=2,
            )
        )
        env = {"CIVICREALTIME_JWT_SECRET": self.secret}
        return [self.args.python, "-m", "civicrealtime", "--config", str(config)], env, self.work

    def token(self) -> str:
        sys.path.insert(0, str(ROOT / "src"))
        from civicrealtime.auth.minting import mint_token  # noqa: PLC0415 (after the path)

        return mint_token(
            self.secret.encode(), user="bench", role="editor", name="bench", ttl_seconds=6 * 3600
        )

    def version(self) -> str:
        return "civicrealtime " + git_head()


class NodePeer(Server):
    def command(self) -> tuple[list[str], dict[str, str], Path]:
        env = {"HOST": "127.0.0.1", "PORT": str(self.port)}
        return ["node", str(NODE_PEER)], env, BENCH / "peers" / "node"

    def version(self) -> str:
        pkg = NODE_PEER.parent.parent / "package.json"
        return "@y/websocket-server " + json.loads(pkg.read_text())["version"]


class PycrdtPeer(Server):
    def command(self) -> tuple[list[str], dict[str, str], Path]:
        python = str(self.args.peers_python)
        return [python, str(PYCRDT_RUNNER), "127.0.0.1", str(self.port)], {}, BENCH

    def version(self) -> str:
        out = subprocess.run(
            [
                str(self.args.peers_python),
                "-c",
                "import importlib.metadata as m;"
                "print(m.version('pycrdt-websocket'), m.version('pycrdt'), m.version('hypercorn'))",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if len(out) != 3:
            return "pycrdt-websocket (unknown)"
        return f"pycrdt-websocket {out[0]} (pycrdt {out[1]}, hypercorn {out[2]})"


SERVER_CLASSES = {
    "civicrealtime": Civicrealtime,
    "civicrealtime-nosnap": Civicrealtime,
    "y-websocket-server": NodePeer,
    "pycrdt-websocket": PycrdtPeer,
}


# -- generator -------------------------------------------------------------------------------


def run_generator(
    work: Path, args: argparse.Namespace, client: dict[str, Any], workload: dict[str, Any], tag: str
) -> dict[str, Any]:
    cfg_path = work / f"gen-{client['name']}-{workload['name']}.json"
    cfg_path.write_text(json.dumps({"server": client, "workload": workload, "tag": tag}))
    cmd = [*pin(args, args.generator_core), "node", str(GENERATOR), str(cfg_path)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    boost(args, proc.pid)
    try:
        stdout, stderr = proc.communicate(timeout=args.generator_timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sys.stderr.write(stderr)
    if proc.returncode != 0 or not stdout.strip():
        raise RuntimeError(f"generator failed ({proc.returncode}): {stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


# -- profile ---------------------------------------------------------------------------------


def find_py_spy(args: argparse.Namespace) -> str | None:
    here = Path(args.python).parent / "py-spy"
    if here.exists():
        return str(here)
    return shutil.which("py-spy")


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")

CATEGORIES = (
    ("wsproto (frame encode/decode)", ("wsproto/",)),
    ("trio-websocket (send_message, reader, locks)", ("trio_websocket/",)),
    (
        "trio socket send/recv (syscalls, wrappers)",
        ("trio/_socket", "trio/_highlevel_socket", "trio/_core/_io"),
    ),
    ("trio scheduler, cancel scopes, locks, channels", ("trio/",)),
    ("civicrealtime outbound queue and flusher", ("civicrealtime/transport/outbound.py",)),
    (
        "civicrealtime transport (server, reader, writer, direct writes)",
        ("civicrealtime/transport/",),
    ),
    ("civicrealtime room actor", ("civicrealtime/rooms/",)),
    ("civicrealtime protocol decode/encode", ("civicrealtime/protocol/",)),
    ("civicrealtime persistence", ("civicrealtime/persistence/",)),
    (
        "civicrealtime stats/metrics/limits",
        ("civicrealtime/stats.py", "civicrealtime/limits.py", "civicrealtime/http/"),
    ),
    ("pycrdt (CRDT apply/encode)", ("pycrdt/",)),
    ("sqlite3", ("sqlite3/",)),
    ("logging", ("logging/", "civicrealtime/logs.py")),
    ("other civicrealtime", ("civicrealtime/",)),
)


# Threads waiting (worker threads of trio.to_thread, the epoll wait): not CPU.
IDLE_LEAVES = (
    "WorkerThread._work ",
    "EpollIOManager.get_events ",
    "Condition.wait ",
    "Event.wait ",
)


OTHER = "other (interpreter start-up, stdlib)"


def categorize(file: str) -> str:
    for label, needles in CATEGORIES:
        if any(n in file for n in needles):
            return label
    return OTHER


def summarize_profile(raw: Path) -> dict[str, Any]:
    """Self and inclusive time by function and by component, from py-spy's raw output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    total = 0
    idle_samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            f
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        names = []
        for f in frames:
            m = _FRAME.match(f)
            file = m["file"] if m else f
            func = m["func"] if m else f
            short = "/".join(file.split("/")[-2:])
            names.append((f"{func} ({short})", file))
        leaf_name, _ = names[-1]
        if any(leaf_name.startswith(idle) for idle in IDLE_LEAVES):
            idle_samples += count
            continue
        total += count
        own[leaf_name] += count
        # Standard library and helpers (contextlib, outcome, attrs) count for their caller.
        component = OTHER
        for _, file in reversed(names):
            component = categorize(file)
            if component != OTHER:
                break
        cats[component] += count
        for name in {n for n, _ in names}:
            incl[name] += count
    pct = lambda c: round(100 * c / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "idle_samples_excluded": idle_samples,
        "by_component_self_pct": {k: pct(v) for k, v in cats.most_common()},
        "top_self_pct": {k: pct(v) for k, v in own.most_common(25)},
        "top_inclusive_pct": {k: pct(v) for k, v in incl.most_common(40)},
    }


def profile_civicrealtime(
    work: Path, args: argparse.Namespace, results_stem: Path, tag: str
) -> dict[str, Any] | None:
    py_spy = find_py_spy(args)
    if py_spy is None:
        print("py-spy not found: no profile (install it in the bench environment)", file=sys.stderr)
        return None
    server = Civicrealtime("civicrealtime", work, args)
    server.start("profile")
    raw = results_stem.with_name(f"{results_stem.name}-profile-{args.profile_workload}.txt")
    try:
        assert server.proc is not None
        wl = args.profile_workload
        workload = {"name": f"{wl}-profile", **workload_config(wl, args.quick, args.scale)}
        spy = subprocess.Popen(
            [
                *pin(args, args.generator_core),
                py_spy,
                "record",
                "--pid",
                str(server.proc.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "-o",
                str(raw),
                "--duration",
                str(int(workload["duration"] + 15)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)
        result = run_generator(
            work, args, server.client_config(server.token(), True), workload, tag + "p"
        )
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=30)
    finally:
        server.stop()
    if not raw.exists():
        print(f"py-spy produced no profile: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
        return None
    summary = summarize_profile(raw)
    summary["raw_file"] = str(raw.relative_to(ROOT)) if raw.is_relative_to(ROOT) else str(raw)
    summary["workload"] = args.profile_workload
    summary["under_profiler"] = {
        "cpu_ms_per_1000_deliveries": result.get("cpu_ms_per_1000_deliveries"),
        "latency_ms": result.get("latency_ms"),
    }
    return summary


# -- the run ---------------------------------------------------------------------------------


def hydration_ms(log_path: Path, room: str) -> float | None:
    text = log_path.read_text(errors="replace")
    found = re.findall(
        rf"room\.hydrated room=records:{re.escape(room)} source=store .*?load_ms=([\d.]+)", text
    )
    return float(found[-1]) if found else None


def run_server(name: str, work: Path, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    server = SERVER_CLASSES[name](name, work, args)
    token = server.token() if isinstance(server, Civicrealtime) else secrets.token_urlsafe(32)
    out: dict[str, Any] = {"version": server.version(), "workloads": {}}
    # Does the server accept the `auth.<token>` subprotocol offer (a browser needs it echoed)?
    server.start("probe")
    try:
        probe = run_generator(
            work, args, server.client_config(token, True), {"name": "probe", "mode": "probe"}, tag
        )
    finally:
        server.stop()
    subprotocol = bool(probe.get("subprotocol_accepted"))
    out["subprotocol_offered"] = subprotocol
    if not subprotocol:
        out["note"] = (
            f"rejects a handshake offering a subprotocol ({probe.get('error')}); clients offer none"
        )
    for wl in args.workloads:
        if wl == "cold":
            continue
        workload = {"name": wl, **workload_config(wl, args.quick, args.scale)}
        print(f"== {name} / {wl}", file=sys.stderr)
        if isinstance(server, Civicrealtime):
            server.fresh_data = True
        server.start(wl)
        try:
            result = run_generator(
                work, args, server.client_config(token, subprotocol), workload, tag
            )
        except Exception as exc:  # noqa: BLE001 (one failed workload must not lose the others)
            result = {"error": str(exc)[-1500:]}
        finally:
            server.stop()
        result["params"] = workload
        out["workloads"][wl] = result
        if (
            wl == "storm"
            and "cold" in args.workloads
            and isinstance(server, Civicrealtime)
            and server.snapshots
            and "error" not in result
        ):
            out["workloads"]["cold"] = cold_load(
                server, args, token=token, subprotocol=subprotocol, tag=tag, storm=result
            )
    return out


def cold_load(
    server: Civicrealtime,
    args: argparse.Namespace,
    *,
    token: str,
    subprotocol: bool,
    tag: str,
    storm: dict[str, Any],
) -> dict[str, Any]:
    """Restart on the storm's data dir; one client opens the stored 1.3 MB room."""
    server.fresh_data = False
    room = f"{tag}-storm"
    runs = []
    for i in range(1 if args.quick else 3):
        server.start(f"cold{i}")
        try:
            workload = {
                "name": "cold",
                "mode": "cold",
                "room": room,
                "min_bytes": int(storm["document_bytes"] * 0.98),
            }
            got = run_generator(
                work_dir(server), args, server.client_config(token, subprotocol), workload, tag
            )
        finally:
            server.stop()
        assert server.log_path is not None
        got["hydration_ms"] = hydration_ms(server.log_path, room)
        runs.append(got)
    server.fresh_data = True
    loads = sorted(r["hydration_ms"] for r in runs if r.get("hydration_ms") is not None)
    syncs = sorted(r["time_to_full_sync_ms"] for r in runs)
    return {
        "runs": runs,
        "document_bytes": storm["document_bytes"],
        "hydration_ms_median": loads[len(loads) // 2] if loads else None,
        "time_to_full_sync_ms_median": syncs[len(syncs) // 2],
    }


def work_dir(server: Server) -> Path:
    return server.work


# -- report ----------------------------------------------------------------------------------


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ratio(a: Any, b: Any) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}"


def markdown(report: dict[str, Any]) -> str:
    servers = report["servers"]
    names = [n for n in SERVERS if n in servers]
    lines: list[str] = []
    add = lines.append
    add(
        "| workload | server | deliveries/s | latency p50 / p95 / p99 / max (ms) | lost "
        "| server CPU ms per 1,000 deliveries | peak RSS MB | RSS MB per idle conn "
        "| RSS MB per room | generator CPU / loop p99 ms |"
    )
    add("|---|---|---:|---|---:|---:|---:|---:|---:|---|")
    for wl in ("fanout", "rooms", "saturation"):
        for n in names:
            r = servers[n]["workloads"].get(wl)
            if r is None:
                continue
            if "error" in r:
                add(f"| {wl} | {n} | error: {r['error'][:80]} |||||||||")
                continue
            lat = r["latency_ms"]
            dps = (
                r["max_sustained_deliveries_per_s"] if wl == "saturation" else r["deliveries_per_s"]
            )
            gen = r["generator"]
            latency = " / ".join(
                fmt(lat[k], 2 if k != "max" else 1) for k in ("p50", "p95", "p99", "max")
            )
            busy = " (!)" if gen["cpu_fraction"] > 0.8 else ""
            add(
                f"| {wl} | {n} | {fmt(dps)} | {latency} | {fmt(r['lost'])} "
                f"| {fmt(r['cpu_ms_per_1000_deliveries'], 2)} | {fmt(r['rss_mb']['peak'])} "
                f"| {fmt(r['rss_per_idle_connection_mb'], 3)} | {fmt(r['rss_per_room_mb'], 2)} "
                f"| {fmt(gen['cpu_fraction'] * 100, 0)}%{busy}"
                f" / {fmt(gen['loop_delay_ms']['p99'], 1)} |"
            )
    add("")
    add(
        "| join storm (50 joiners, document) | server | all synced: median / worst round (ms) "
        "| per joiner p50 / p99 (ms) | server CPU ms per join | peak RSS MB | verified |"
    )
    add("|---|---|---:|---|---:|---:|---|")
    for n in names:
        r = servers[n]["workloads"].get("storm")
        if r is None:
            continue
        if "error" in r:
            add(f"| storm | {n} | error: {r['error'][:80]} |||||")
            continue
        lat = r["latency_ms"]
        add(
            f"| {fmt(r['document_bytes'])} B | {n} "
            f"| {fmt(r['all_synced_ms_median'])} / {fmt(r['all_synced_ms_worst'])} "
            f"| {fmt(lat['p50'])} / {fmt(lat['p99'])} | {fmt(r['cpu_ms_per_join'], 2)} "
            f"| {fmt(r['rss_mb']['peak'])} | {r['document_verified']} |"
        )
    cold = servers.get("civicrealtime", {}).get("workloads", {}).get("cold")
    if cold:
        add("")
        add(
            f"Cold load (civicrealtime, restarted, {fmt(cold['document_bytes'])} B room "
            f"from SQLite): hydration {fmt(cold['hydration_ms_median'])} ms (median), "
            f"first full sync {fmt(cold['time_to_full_sync_ms_median'])} ms."
        )
    if "civicrealtime" in servers:
        add("")
        add(
            "| ratio civicrealtime / peer | vs y-websocket-server | vs pycrdt-websocket "
            "| snapshots off vs y-websocket-server |"
        )
        add("|---|---:|---:|---:|")
        mine = servers["civicrealtime"]["workloads"]
        nosnap = servers.get("civicrealtime-nosnap", {}).get("workloads", {})
        for wl, key, label in (
            (
                "fanout",
                "cpu_ms_per_1000_deliveries",
                "fan-out: CPU per delivery (≤ 1.0 is the target)",
            ),
            ("fanout", "deliveries_per_s", "fan-out: deliveries/s"),
            ("rooms", "cpu_ms_per_1000_deliveries", "1,000 conns / 100 rooms: CPU per delivery"),
            ("rooms", "deliveries_per_s", "1,000 conns / 100 rooms: deliveries/s"),
            (
                "saturation",
                "cpu_ms_per_1000_deliveries",
                "saturation (best step): CPU per delivery",
            ),
            (
                "saturation",
                "max_sustained_deliveries_per_s",
                "saturation: max deliveries/s sustained (≥ 1.0 is the target)",
            ),
            ("storm", "cpu_ms_per_join", "join storm: CPU per join"),
            ("storm", "all_synced_ms_median", "join storm: all synced (median round)"),
        ):
            cells = []
            for peer in ("y-websocket-server", "pycrdt-websocket"):
                a = mine.get(wl, {}).get(key)
                b = servers.get(peer, {}).get("workloads", {}).get(wl, {}).get(key)
                cells.append(ratio(a, b))
            cells.append(
                ratio(
                    nosnap.get(wl, {}).get(key),
                    servers.get("y-websocket-server", {}).get("workloads", {}).get(wl, {}).get(key),
                )
            )
            add(f"| {label} | {cells[0]} | {cells[1]} | {cells[2]} |")
    notes = [
        f"- {n}: {servers[n].get('error') or servers[n]['note']}"
        for n in names
        if servers[n].get("note") or servers[n].get("error")
    ]
    if notes:
        add("")
        lines.extend(notes)
    return "\n".join(lines)


def git_head() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() + (" (+ uncommitted changes in src/)" if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    def cmd(*c: str) -> str:
        return subprocess.run(c, capture_output=True, text=True, check=False).stdout.strip()

    model = re.search(r"Model name:\s*(.*)", cmd("lscpu"))
    return {
        "nproc": os.cpu_count(),
        "cpu": model[1].strip() if model else platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": cmd("node", "--version"),
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="a smoke run (about a minute)")
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--scale", type=float, default=1.0, help="multiply every load duration")
    p.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the py-spy profile"
    )
    p.add_argument(
        "--profile-workload", default="fanout", choices=("fanout", "rooms", "saturation")
    )
    p.add_argument(
        "--python", default=sys.executable, help="the interpreter that runs civicrealtime"
    )
    p.add_argument("--peers-python", type=Path, default=DEFAULT_PEERS_PYTHON)
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--generator-core", type=int, default=1)
    p.add_argument(
        "--nice",
        type=int,
        default=-15 if os.geteuid() == 0 else 0,
        help="niceness of the server and the generator (default -15 as root: other work on a "
        "shared machine then takes little of their cores; 0 to leave it)",
    )
    p.add_argument("--generator-timeout", type=float, default=600)
    p.add_argument("--out", type=Path, default=BENCH / "results")
    p.add_argument("--label", default="", help="a note stored with the results (what was run)")
    args = p.parse_args()
    args.peers_python = args.peers_python.absolute()
    args.servers = [s for s in args.servers.split(",") if s]
    args.workloads = [w for w in args.workloads.split(",") if w]
    for s in args.servers:
        if s not in SERVERS:
            p.error(f"unknown server {s!r}")
    for w in args.workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}")
    if shutil.which("taskset") is None:
        p.error("taskset not found (util-linux)")

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / stamp
    work = Path(tempfile.mkdtemp(prefix=f"civicrealtime-bench-{stamp}-"))
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    report: dict[str, Any] = {
        "timestamp": stamp,
        "command": command.strip(),
        "commit": git_head(),
        "machine": machine(),
        "quick": args.quick,
        "label": args.label,
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "servers": {},
        "work_dir": str(work),
    }
    started = time.monotonic()
    tag = f"b{stamp[-7:-1]}"
    for name in args.servers:
        print(f"=== {name}", file=sys.stderr)
        try:
            report["servers"][name] = run_server(name, work, args, tag)
        except Exception as exc:  # noqa: BLE001 (the other servers still run)
            report["servers"][name] = {"error": str(exc), "workloads": {}}
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    if args.profile and "civicrealtime" in args.servers:
        print(f"=== profile: civicrealtime {args.profile_workload} under py-spy", file=sys.stderr)
        report["profile"] = profile_civicrealtime(work, args, stem, tag)
    report["wall_s"] = round(time.monotonic() - started, 1)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    stem.with_suffix(".md").write_text(table + "\n")
    print(table)
    if report.get("profile"):
        prof = report["profile"]
        print(
            f"\nProfile (civicrealtime {prof['workload']}, self time by component, "
            "% of busy samples):"
        )
        for k, v in prof["by_component_self_pct"].items():
            print(f"  {v:5.1f}%  {k}")
    print(f"\nresults: {stem.with_suffix('.json')}  (logs: {work})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
