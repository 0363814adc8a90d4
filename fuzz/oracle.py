"""Yjs as the oracle: the fuzzer's clients' documents live in a Node process running Yjs.

`YjsOracle` runs `tests/js/yjs_peer.mjs` and talks to it one JSON line at a time (one
request, one answer, under a deadline). It holds one `Y.Doc` per fuzz client (`YjsPeer`):
every frame the daemon sends that client is read there by y-protocols, every edit is made
there with the Yjs API (UTF-16 offsets, y-prosemirror's diff for editor edits), and the
server's state (a late joiner's step 2, or the rows of its store) is decoded there too.

The process is always reaped: `close` ends its stdin, waits, then kills it; a request that
gets no answer within its deadline kills it and raises `OracleError`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import attrs

SCRIPT = Path(__file__).resolve().parent.parent / "tests" / "js" / "yjs_peer.mjs"
DEADLINE = 20.0
# A frame Yjs could not read is reported in full, up to this many bytes (base64).
FRAME_REPORT_BYTES = 8192


class OracleError(Exception):
    """Yjs refused something (a frame, an update), or the Node process failed."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def frame_report(frame: bytes) -> str:
    """A frame as a failure report carries it: whole (base64) unless it is very large."""
    if len(frame) <= FRAME_REPORT_BYTES:
        return f"{len(frame)} bytes, base64 {b64(frame)}"
    head = b64(frame[:FRAME_REPORT_BYTES])
    return f"{len(frame)} bytes, the first {FRAME_REPORT_BYTES} in base64 {head}"


class YjsOracle:
    def __init__(self) -> None:
        # Node's stderr goes to a file: a pipe nobody reads would block it once full.
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            ["node", str(SCRIPT)],
            cwd=SCRIPT.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
        )
        self._answers: queue.Queue[bytes] = queue.Queue()
        self._lock = threading.Lock()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, name="yjs-oracle", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._answers.put(line)
        self._answers.put(b"")  # end of stream

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def call(self, op_name: str, within: float = DEADLINE, **fields: Any) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            request = {"id": self._next_id, "cmd": op_name, **fields}
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps(request).encode() + b"\n")
                self._proc.stdin.flush()
            except OSError as exc:
                raise OracleError(f"the Yjs process is gone: {self._stderr()}") from exc
            answer = self._answer(op_name, within)
            if not answer["ok"]:
                raise OracleError(answer["error"])
            return answer

    def _answer(self, op_name: str, within: float) -> dict[str, Any]:
        """The answer to the request just sent: the next line (the script prints nothing
        else on stdout; a line that is not its answer is a failure, and the stream is then
        closed, since it could no longer be trusted)."""
        deadline = time.monotonic() + within
        try:
            line = self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.close()
            raise OracleError(f"no answer from Yjs within {within} s to {op_name}") from None
        if not line:
            raise OracleError(f"the Yjs process ended: {self._stderr()}")
        try:
            answer: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            self.close()
            raise OracleError(f"not an answer from Yjs: {line[:2000]!r}") from None
        if answer.get("id") != self._next_id:
            self.close()
            raise OracleError(f"answer out of order: {answer!r}")
        return answer

    def _stderr(self) -> str:
        self.close()
        self._errors.seek(0)
        return self._errors.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        """End the process: EOF on stdin (it exits by itself), then SIGKILL if it lingers."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            # A broken pipe: the process is gone already.
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._reader.join(5)
        self._errors.close()

    # -- documents ---------------------------------------------------------------------------

    def peer(self, name: str, client_id: int) -> YjsPeer:
        self.call("new", name=name, client_id=client_id)
        return YjsPeer(self, name)

    def view(self, *updates: bytes) -> str:
        """The document a fresh Yjs client builds from `updates` (canonical JSON)."""
        state: str = self.call("view", updates=[b64(u) for u in updates])["state"]
        return state

    def contains(self, state: bytes, update: bytes) -> bool:
        """Whether applying `update` to `state` changes nothing, in Yjs."""
        return bool(self.call("contains", state=b64(state), update=b64(update))["contains"])

    def reset(self) -> None:
        self.call("reset")


@attrs.define(eq=False)
class Received:
    kind: str  # step1, step2, update, awareness, auth, query-awareness
    reply: bytes | None  # y-protocols' answer (a step 2 to a step 1)
    updates: list[bytes]  # the client's own updates Yjs made meanwhile, to send


class YjsPeer:
    """One client's Y.Doc in the oracle; `state_vector` is its latest known state vector."""

    def __init__(self, oracle: YjsOracle, name: str) -> None:
        self.oracle = oracle
        self.name = name
        self.state_vector: dict[int, int] = {}
        # The first request (an edit, a frame) after which Yjs's document differs from what
        # its updates carry (a Yjs defect, see `diverged` in the script); None until then.
        self.self_diverged: str | None = None

    def _call(self, op_name: str, **fields: Any) -> dict[str, Any]:
        answer = self.oracle.call(op_name, name=self.name, **fields)
        if answer.get("self_diverged") and self.self_diverged is None:
            self.self_diverged = f"{op_name} {fields.get('op', '(a frame from the daemon)')}"
        if "sv" in answer:
            self.state_vector = {int(k): v for k, v in answer["sv"].items()}
        return answer

    def step1(self) -> bytes:
        """y-websocket's sync step 1: this document's state vector."""
        return base64.b64decode(self._call("step1")["frame"])

    def receive(self, frame: bytes) -> Received:
        """Read a frame from the daemon. Raises `OracleError` when Yjs cannot read or apply
        it."""
        answer = self._call("receive", frame=b64(frame))
        reply = answer["reply"]
        return Received(
            kind=answer["kind"],
            reply=base64.b64decode(reply) if reply is not None else None,
            updates=[base64.b64decode(u) for u in answer["updates"]],
        )

    def edit(self, op: tuple[Any, ...]) -> list[bytes]:
        """Make the edit in one transaction; the updates to send (none if it did nothing).
        Sets `self_diverged` when Yjs changed the document beyond what the updates carry."""
        answer = self._call("edit", op=list(op))
        return [base64.b64decode(u) for u in answer["updates"]]

    def state(self) -> tuple[str, bool]:
        """The document as Yjs encodes it for others (canonical JSON), and whether the
        client's own copy differs (it holds half of a surrogate pair, see the script)."""
        answer = self._call("state")
        return answer["state"], answer["local_only"]

    def drop(self) -> None:
        if self.oracle.alive:
            self.oracle.call("drop", name=self.name)


__all__ = ["OracleError", "Received", "YjsOracle", "YjsPeer", "frame_report"]
