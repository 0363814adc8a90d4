"""Soak: 1,000 connections in 100 rooms editing steadily for a long time. Not a test.

    python bench/soak.py [--minutes 10] [--connections 1000] [--rooms 100]
                         [--edit-interval 5] [--results bench/results/soak.json]

`nox -s soak` installs everything and runs this (`nox -s soak -- --minutes 3`).

The daemon is `python -m civicrealtime` with a generated configuration (development auth,
persistence on: SQLite in a temporary data_dir, connection limits raised above the soak's
1,000 connections from one address, logging at warning, everything else default). The
load is bench/soak_client.mjs (Node.js, ws + yjs from tests/js/node_modules): every
connection edits once per `--edit-interval` seconds, at a random phase, and measures when
each other member of its room receives each edit. With `taskset` available the daemon
runs on core 0 and the client on core 1, and the client's own CPU use is reported, so
that a saturated client cannot pass for a slow daemon.

Recorded, per minute of editing: edits, deliveries expected (each edit times the other
members connected when it was made), deliveries lost (expected - received after a drain;
must be 0), latency percentiles (send to receipt, by the minute the edit was sent), the
daemon's RSS (/proc/<pid>/status VmRSS, at the end of the minute) and CPU. The table is
printed and appended, with the run's parameters and machine, to the results file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CLIENT = BENCH / "soak_client.mjs"
NODE_MODULES = ROOT / "tests" / "js" / "node_modules"
SAMPLE_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(workdir: Path, port: int, http_port: int, connections: int) -> Path:
    path = workdir / "rt.yml"
    path.write_text(
        f"""\
host: 127.0.0.1
port: {port}
data_dir: {json.dumps(str(workdir / "data"))}
auth: {{mode: development}}
http: {{host: 127.0.0.1, port: {http_port}}}
demo: {{enabled: false}}
logging: {{level: warning}}
rooms: {{max_rooms: 1000}}
rate_limiting:
  connections_per_ip: {connections * 2}
  connections_per_user: {connections * 2}
"""
    )
    return path


def _pinned(core: int, command: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core), *command]
    return command


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_listening(proc: subprocess.Popen[bytes], port: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited at start (status {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not listen") from None
            time.sleep(0.05)
        else:
            return


def _machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    node = subprocess.run(["node", "--version"], check=False, capture_output=True, text=True)
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "node": node.stdout.strip(),
        "kernel": platform.release(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not NODE_MODULES.joinpath("ws").exists() or not NODE_MODULES.joinpath("yjs").exists():
        raise SystemExit(f"ws and yjs are needed in {NODE_MODULES}: npm ci --prefix tests/js")
    workdir = Path(tempfile.mkdtemp(prefix="civicrealtime-soak-"))
    port, http_port = _free_port(), _free_port()
    config = _config(workdir, port, http_port, args.connections)
    daemon_log = (workdir / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        _pinned(0, [sys.executable, "-m", "civicrealtime", "--config", str(config)]),
        cwd=workdir,
        stdout=daemon_log,
        stderr=subprocess.STDOUT,
    )
    samples: list[tuple[float, int, float]] = []  # (seconds since editing began, KiB, cpu s)
    try:
        _wait_listening(daemon, port)
        options = {
            "url": f"ws://127.0.0.1:{port}/realtime/records",
            "connections": args.connections,
            "rooms": args.rooms,
            "editInterval": args.edit_interval,
            "seconds": args.minutes * 60,
            "drain": args.drain,
            "out": str(workdir / "client.json"),
        }
        client = subprocess.Popen(
            _pinned(1, ["node", str(CLIENT), json.dumps(options)]),
            stdout=subprocess.PIPE,
            text=True,
        )
        editing = threading.Event()
        began = [0.0]

        def follow() -> None:
            assert client.stdout is not None
            for line in client.stdout:
                message = json.loads(line)
                if message["type"] == "connected":
                    began[0] = time.monotonic()
                    editing.set()
                    print(
                        f"{message['connected']} connections open in "
                        f"{message['connectSeconds']:.1f} s; editing for {args.minutes} min",
                        flush=True,
                    )
                elif message["type"] == "minute":
                    print(f"  minute {message['minute'] + 1}: {message['edits']} edits", flush=True)

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        limit = time.monotonic() + args.minutes * 60 + args.drain + 600
        while client.poll() is None:
            if time.monotonic() > limit:
                client.kill()
                raise SystemExit("the soak client did not finish")
            if editing.is_set():
                samples.append(
                    (time.monotonic() - began[0], _rss_kib(daemon.pid), _cpu_seconds(daemon.pid))
                )
            time.sleep(SAMPLE_SECONDS)
        reader.join(5)
        if client.returncode != 0:
            raise SystemExit(f"the soak client failed (status {client.returncode})")
        report = json.loads((workdir / "client.json").read_text())
        daemon_errors = daemon.poll()
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
        daemon_log.close()
    log_tail = (workdir / "daemon.log").read_text(errors="replace").splitlines()
    errors = [line for line in log_tail if " ERROR " in line or "Traceback" in line]
    shutil.rmtree(workdir, ignore_errors=True)
    assert daemon_errors is None, "the daemon died during the soak"

    rows = []
    for row in report["minutes"]:
        end = row["minute"] * 60
        in_minute = [s for s in samples if end - 60 <= s[0] <= end + SAMPLE_SECONDS]
        rss = max((s[1] for s in in_minute), default=None)
        cpu = None
        if len(in_minute) >= 2:
            cpu = (in_minute[-1][2] - in_minute[0][2]) / (in_minute[-1][0] - in_minute[0][0])
        rows.append({**row, "rss_mib": rss / 1024 if rss else None, "daemon_cpu": cpu})
    rss_series = [(round(t, 1), kib) for t, kib, _ in samples]
    return {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "parameters": {
            "minutes": args.minutes,
            "connections": args.connections,
            "rooms": args.rooms,
            "edit_interval_s": args.edit_interval,
            "drain_s": args.drain,
            "pinned": bool(shutil.which("taskset")),
        },
        "machine": _machine(),
        "connected": report["connected"],
        "connect_seconds": report["connectSeconds"],
        "still_open": report["stillOpen"],
        "reconnects": report["reconnects"],
        "closes": report["closes"],
        "client_cpu": report["clientCpu"],
        "total": report["total"],
        "minutes": rows,
        "rss_kib": rss_series,
        "daemon_errors": errors[:20],
    }


def table(result: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [
        "| minute | edits | deliveries | lost | p50 ms | p95 ms | p99 ms | max ms "
        "| daemon RSS MiB | daemon CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["minutes"]:
        rss = "-" if row["rss_mib"] is None else f"{row['rss_mib']:.1f}"
        cpu = "-" if row["daemon_cpu"] is None else f"{row['daemon_cpu'] * 100:.0f}%"
        lines.append(
            f"| {row['minute']} | {row['edits']:,} | {row['delivered']:,} | {row['lost']} "
            f"| {ms(row['p50_ms'])} | {ms(row['p95_ms'])} | {ms(row['p99_ms'])} "
            f"| {ms(row['max_ms'])} | {rss} | {cpu} |"
        )
    total = result["total"]
    rss = [row["rss_mib"] for row in result["minutes"] if row["rss_mib"] is not None]
    client_cpu = result["client_cpu"]
    lines += [
        "",
        f"total: {total['edits']:,} edits, {total['delivered']:,} of {total['expected']:,} "
        f"deliveries, lost {total['lost']}; connections {result['connected']} "
        f"(still open at the end: {result['still_open']}, reconnects {result['reconnects']}, "
        f"closes {result['closes']})",
    ]
    if len(rss) >= 3:
        lines.append(
            f"daemon RSS: {rss[0]:.1f} MiB after minute 1, {rss[1]:.1f} after minute 2, "
            f"{rss[-1]:.1f} after the last ({rss[-1] - rss[1]:+.1f} MiB after warm-up)"
        )
    if client_cpu:
        lines.append(f"client CPU (one core = 100%): max {max(client_cpu) * 100:.0f}%")
    if result["daemon_errors"]:
        lines.append(f"daemon errors: {result['daemon_errors']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--edit-interval", type=float, default=5.0, help="seconds per edit")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds after the last edit")
    parser.add_argument("--results", type=Path, default=BENCH / "results" / "soak.json")
    args = parser.parse_args()
    result = run(args)
    print()
    print(table(result))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    history = json.loads(args.results.read_text()) if args.results.exists() else []
    history.append(result)
    args.results.write_text(json.dumps(history, indent=1) + "\n")
    print(f"\nappended to {args.results}")
    return 0 if result["total"]["lost"] == 0 and not result["daemon_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
