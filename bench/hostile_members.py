"""Issue #20's attacks by a member, measured against a daemon subprocess.

    python bench/hostile_members.py

Each attack runs against a fresh daemon (development auth, defaults otherwise) while a
bystander in another room pings and times the round trips. Prints, per attack: what the
attacker got back, the bystander's round trips, the daemon's CPU time and largest
event-loop lag (its own /metrics; wall clock, so a busy machine inflates it), and its RSS
growth.

1. One awareness frame of 1,000,000 entries (6.7 MiB), then the attacker leaves.
2. Ten connections send pings as fast as they can until they are closed (40 s at most).
3. A reader that never reads, fed 8 MiB awareness frames' worth of edits (1 MiB updates).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio
from pycrdt import Text
from trio_websocket import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import processes
from tests.faults.support import RawClient, rss_kib
from tests.ydoc_client import YClient

from civicrealtime.protocol import messages
from civicrealtime.protocol.varint import encode_var_uint


def _million() -> bytes:
    # Distinct client ids, clock 1, state "{}": the 6.7 MiB frame.
    body = b"".join(encode_var_uint(i) + b"\x01\x02{}" for i in range(1, 1_000_001))
    return messages.encode_awareness(encode_var_uint(1_000_000) + body)


def _lag_max(http_port: int) -> float:
    body = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5).text
    found = re.search(r"^civicrealtime_event_loop_lag_max_seconds (\S+)$", body, re.M)
    return float(found.group(1)) if found else float("nan")


async def _bystander_pings(url: str, stop: trio.Event, worst: list[float]) -> None:
    async with trio.open_nursery() as nursery:
        bystander = await YClient.connect(nursery, url, token="bystander")
        await bystander.wait_for(lambda: len(bystander.binary) >= 2)
        while not stop.is_set():
            pongs = sum(1 for f in bystander.text_frames if f.get("type") == "pong")
            started = trio.current_time()
            await bystander.ws.send_message('{"type":"ping"}')
            await bystander.wait_for(
                lambda p=pongs: (
                    sum(1 for f in bystander.text_frames if f.get("type") == "pong") > p
                ),
                within=60,
            )
            worst.append(trio.current_time() - started)
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


def run(name: str, attack: object, extra_config: str = "") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = processes.free_port()
        config = (
            f"host: 127.0.0.1\nport: {port}\nhttp: {{port: 0}}\nauth: {{mode: development}}\n"
            "logging: {level: info}\nrate_limiting: {connections_per_user: 100}\n" + extra_config
        )
        proc = processes.spawn(workdir, config, port=port)
        try:
            http_port = _http_port_from(proc)
            HTTP_PORT[0] = http_port
            before = rss_kib(proc.pid)
            cpu_before = _cpu_seconds(proc.pid)
            peak = [before]
            base = f"ws://127.0.0.1:{port}/realtime/records/"

            async def main() -> str:
                stop = trio.Event()
                worst: list[float] = []
                async with trio.open_nursery() as nursery:

                    async def sample_rss() -> None:
                        while not stop.is_set():
                            peak.append(rss_kib(proc.pid))
                            await trio.sleep(0.05)

                    nursery.start_soon(_bystander_pings, base + "bystander", stop, worst)
                    nursery.start_soon(sample_rss)
                    assert callable(attack)
                    outcome = await attack(base + "victim")
                    stop.set()
                rtt = max(worst) * 1000 if worst else float("nan")
                median = sorted(worst)[len(worst) // 2] * 1000 if worst else float("nan")
                return (
                    f"{outcome}; bystander RTT median {median:.1f} ms, worst {rtt:.1f} ms "
                    f"over {len(worst)} pings"
                )

            outcome = trio.run(main)
            lag = _lag_max(http_port) * 1000
            cpu = _cpu_seconds(proc.pid) - cpu_before
            print(
                f"{name}: {outcome}; daemon CPU {cpu:.1f} s, loop lag max {lag:.0f} ms; "
                f"RSS +{(max(peak) - before) / 1024:.0f} MiB at peak"
            )
        finally:
            processes.terminate(proc)
            processes.stop(proc)


def _http_port_from(proc: object) -> int:
    # The daemon logs to stderr (a pipe): read what is there without waiting for EOF.
    stderr = getattr(proc, "stderr", None)
    assert stderr is not None
    os.set_blocking(stderr.fileno(), False)
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        chunk = stderr.read()
        if chunk:
            text += chunk
        found = re.search(r"http\.listening host=\S+ port=(\d+)", text)
        if found:
            return int(found.group(1))
        time.sleep(0.05)
    raise RuntimeError(text)


async def huge_frame(url: str) -> str:
    frame = _million()
    async with trio.open_nursery() as nursery:
        watcher = await YClient.connect(nursery, url, token="editor")
        attacker = await YClient.connect(nursery, url, token="viewer")
        await attacker.wait_for(lambda: len(attacker.binary) >= 2)
        started = trio.current_time()
        await attacker.ws.send_message(frame)
        await attacker.wait_for(lambda: bool(attacker.events("error")), within=60)
        answered = trio.current_time() - started
        await attacker.ws.aclose()
        await trio.sleep(0.5)
        states = len(watcher.awareness)
        nursery.cancel_scope.cancel()
    error = attacker.events("error")[0]["error"]
    return (
        f"{len(frame) / 2**20:.1f} MiB frame answered in {answered * 1000:.0f} ms with "
        f"{error['code']} ({error['message']}); watcher holds {states} states"
    )


async def ping_flood(url: str) -> str:
    closes: list[float] = []
    sent = [0]

    async def flooder(index: int) -> None:
        async with trio.open_nursery() as nursery:
            client = await YClient.connect(nursery, url, token=f"pinger{index}")
            started = trio.current_time()
            with trio.move_on_after(40):
                try:
                    while client.closed is None:
                        await client.ws.send_message('{"type":"ping"}')
                        sent[0] += 1
                except ConnectionClosed:
                    pass
                await client.wait_for(lambda: client.closed is not None, within=40)
            if client.closed is not None:
                closes.append(trio.current_time() - started)
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for index in range(10):
            nursery.start_soon(flooder, index)
    slowest = max(closes) if closes else float("nan")
    return (
        f"{sent[0]} pings sent; {len(closes)}/10 flooders closed 4013, "
        f"the last after {slowest:.1f} s"
    )


HTTP_PORT = [0]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(http_port: int, name: str) -> float:
    body = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5).text
    found = re.search(rf"^{name} (\S+)$", body, re.M)
    return float(found.group(1)) if found else 0.0


async def slow_reader(url: str) -> str:
    port = int(url.split(":")[2].split("/", maxsplit=1)[0])
    async with trio.open_nursery() as nursery:
        writer = await YClient.connect(nursery, url, token="writer")
        await writer.wait_for(lambda: len(writer.binary) >= 2)
        stuck = await RawClient.connect(port, "/realtime/records/victim", rcvbuf=4096)
        await trio.sleep(0.2)
        started = trio.current_time()
        sent = 0
        while _metric(HTTP_PORT[0], "civicrealtime_slow_consumer_closes_total") == 0:
            sent += 1
            if sent > 30:
                break
            chunk = str(sent % 10) * 2**20
            await writer.edit(lambda d, c=chunk: d.get("t", type=Text).insert(0, c))
            answers = len(writer.binary)
            await writer.send_step1()
            await writer.wait_for(lambda a=answers: len(writer.binary) > a, within=30)
        took = trio.current_time() - started
        await stuck.stream.aclose()
        nursery.cancel_scope.cancel()
    return f"closed as a slow consumer after {sent} MiB of edits ({took:.1f} s)"


if __name__ == "__main__":
    run("1M-entry awareness frame", huge_frame)
    run("10-connection ping flood", ping_flood)
    run("never-reading client, 1 MiB updates", slow_reader)
