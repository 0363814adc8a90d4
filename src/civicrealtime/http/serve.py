"""Running the operations app with hypercorn's trio worker, inside the daemon's nursery."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from .asgi import OpsApp

log = logging.getLogger("civicrealtime.http")


# What hypercorn's trio worker raises when a peer stops or is cut off while it is still
# sending a body (an oversized POST answered 413): the peer's doing, not a server fault.
_PEER_GONE = (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError)


class PeerGoneFilter(logging.Filter):
    """Turn hypercorn's ERROR traceback for a vanished peer into one DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        error = exc_info[1] if exc_info else None
        if error is None or not _is_peer_gone(error):
            return True
        log.debug("http.peer_gone error=%s", type(error).__name__)
        return False


def _is_peer_gone(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_is_peer_gone(e) for e in error.exceptions)
    return isinstance(error, _PEER_GONE)


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_http(
    app: OpsApp,
    host: str,
    port: int,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `shutdown` is set; `task_status` gets the bound port.

    hypercorn drains in-flight requests for `graceful_timeout` after the trigger.
    """
    config = Config()
    config.bind = [_bind(host, port)]
    config.accesslog = None
    errorlog = logging.getLogger("hypercorn.error")
    if not any(isinstance(f, PeerGoneFilter) for f in errorlog.filters):
        errorlog.addFilter(PeerGoneFilter())
    config.errorlog = errorlog
    config.graceful_timeout = 2.0
    config.keep_alive_timeout = 5.0

    async def started(
        *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(started)
        bound = int(binds[0].rsplit(":", 1)[1])
        log.info("http.listening host=%s port=%s", host, bound)
        task_status.started(bound)
