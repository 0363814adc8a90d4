"""Stock clients against the daemon on its embedded defaults: they must just work.

A stock y-websocket client parses binary frames only (issue 14): a text control frame
kills it under Node, and a binary-only channel under pycrdt's `Provider` stops at it. The
daemon runs as `python -m civicrealtime` with a configuration that only moves its ports to
free loopback ones; every other key, `protocol.control_frames` included, is the default.
The browser's stock provider is checked in tests/e2e/test_stock_provider.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
import trio
from pycrdt import Doc, Provider, Text, TransactionEvent
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from civicrealtime.auth.minting import mint_token

from .processes import free_port, stop, terminate, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
JS_DIR = ROOT / "tests" / "js"
README_CLIENT = JS_DIR / "readme_client.mjs"
NODE = shutil.which("node")
NODE_SECONDS = 40.0  # the script stops itself after 20 s; this is the backstop

JWT_SECRET = "stock-clients-" + "k" * 40
# Only the ports move (the defaults, 3001 and 3002, may be taken on a shared machine).
CONFIG = "host: 127.0.0.1\nport: {port}\nhttp:\n  port: 0\n"


@attrs.define
class Daemon:
    port: int
    proc: subprocess.Popen[str]
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")[-6000:]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("stock-clients")
    port = free_port()
    config = workdir / "realtime.yml"
    config.write_text(CONFIG.format(port=port), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICREALTIME_")}
    env["CIVICREALTIME_JWT_SECRET"] = JWT_SECRET
    stderr = workdir / "daemon.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "civicrealtime", "--config", str(config)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    try:
        wait_for_port(port, proc)
        yield Daemon(port=port, proc=proc, stderr=stderr)
        assert terminate(proc) == 0
    finally:
        stop(proc)


def token(user: str) -> str:
    """What `civicrealtime token --user USER --role editor --room 'records:*'` mints."""
    return mint_token(JWT_SECRET.encode(), user=user, role="editor", rooms=("records:*",))


# -- the README's example under Node ----------------------------------------------------------

needs_node = (
    pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules").is_dir(),
        reason="run `npm ci --prefix tests/js` (nox -s tests does it)",
    ),
)


def _snippet(text: str, anchor: str) -> str:
    """The `new WebsocketProvider(...)` call in `text` after `anchor`, up to its `})`."""
    start = text.index("new WebsocketProvider(", text.index(anchor))
    return text[start : text.index("})", start) + 2]


def test_the_script_runs_the_readme_snippet_verbatim() -> None:
    readme = _snippet((ROOT / "README.md").read_text(encoding="utf-8"), "point a `y-websocket`")
    script = _snippet(README_CLIENT.read_text(encoding="utf-8"), "README.md, ")
    # The only differences allowed: the port, and the WebSocket class Node 20 needs.
    protocols = "  protocols: [`auth.${token}`],\n"
    expected = readme.replace(
        "'ws://localhost:3001/realtime/records'", "`ws://localhost:${port}/realtime/records`"
    ).replace(protocols, protocols + "  WebSocketPolyfill: WebSocket,\n")
    assert script == expected


@pytest.mark.interop
@needs_node[0]
@needs_node[1]
def test_readme_snippet_under_node_syncs_two_providers_without_an_error(daemon: Daemon) -> None:
    """Two Node processes, one provider each: both texts meet, nothing errs, no text frame."""
    assert NODE is not None
    tag = uuid.uuid4().hex[:8]
    marks = {"alice": f"<alice {tag}>", "bob": f"<bob {tag}>"}
    procs = {
        user: subprocess.Popen(
            [NODE, str(README_CLIENT), str(daemon.port), token(user), mine, theirs],
            cwd=JS_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for user, mine, theirs in (
            ("alice", marks["alice"], marks["bob"]),
            ("bob", marks["bob"], marks["alice"]),
        )
    }
    results = {}
    try:
        for user, proc in procs.items():
            out, err = proc.communicate(timeout=NODE_SECONDS)
            results[user] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for user, (code, out, err) in results.items():
        report = (
            f"{user}: exit {code}\n--- stdout ---\n{out}\n--- stderr ---\n{err}\n"
            f"--- daemon stderr ---\n{daemon.log()}"
        )
        assert code == 0, report
        assert err == "", report  # not even a console warning
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["problems"] == [], report
        assert summary["frames"]["text"] == 0, report
        assert summary["frames"]["binary"] >= 2, report  # sync step 1 and step 2 at least
        assert summary["subprotocol"].startswith("auth."), report
        assert marks["alice"] in summary["text"], report
        assert marks["bob"] in summary["text"], report


# -- pycrdt's Provider --------------------------------------------------------------------------


class WebSocketChannel:
    """pycrdt's `Channel` over a trio-websocket client connection.

    The y-websocket protocol is binary, and `Channel.recv` returns bytes; like the adapters
    pycrdt-websocket ships (which read binary messages only), a text frame is an error here.
    Theirs turn that error into the end of the stream, so the provider stops syncing and
    says nothing; this one lets it out, so the test says why.
    """

    def __init__(self, ws: WebSocketConnection, path: str) -> None:
        self._ws = ws
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> WebSocketChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        await self._ws.send_message(message)

    async def recv(self) -> bytes:
        message = await self._ws.get_message()
        if not isinstance(message, bytes):
            raise TypeError(f"a text frame on a y-websocket channel: {message[:80]!r}")
        return message


async def _until(doc: Doc, predicate: Callable[[], bool], what: str) -> None:
    """Wait, re-checking after each change of `doc`, until `predicate()` holds."""
    changed = trio.Event()

    def wake(_: TransactionEvent) -> None:
        changed.set()

    subscription = doc.observe(wake)
    try:
        with trio.fail_after(10):
            while not predicate():
                await changed.wait()
                changed = trio.Event()
    except trio.TooSlowError:
        raise AssertionError(f"timed out waiting for {what}") from None
    finally:
        doc.unobserve(subscription)


async def test_pycrdt_provider_syncs_edits_and_sees_the_other_sides_edit(daemon: Daemon) -> None:
    url = f"ws://127.0.0.1:{daemon.port}/realtime/records/pycrdt-{uuid.uuid4().hex[:8]}"
    first, second = Doc(), Doc()
    text_1, text_2 = first.get("text", type=Text), second.get("text", type=Text)
    async with (
        open_websocket_url(url, subprotocols=[f"auth.{token('ada')}"]) as ws_1,
        open_websocket_url(url, subprotocols=[f"auth.{token('grace')}"]) as ws_2,
        Provider(first, WebSocketChannel(ws_1, url)) as provider_1,
        Provider(second, WebSocketChannel(ws_2, url)) as provider_2,
    ):
        with trio.fail_after(10):
            await provider_1.synced.wait()
            await provider_2.synced.wait()
        text_1 += "Ada writes. "
        await _until(second, lambda: "Ada writes. " in str(text_2), "Ada's edit at Grace's")
        text_2 += "Grace answers."
        await _until(first, lambda: "Grace answers." in str(text_1), "Grace's edit at Ada's")
        assert str(text_1) == str(text_2) == "Ada writes. Grace answers."
