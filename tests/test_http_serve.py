"""hypercorn's own logging of the operations port."""

from __future__ import annotations

import logging

import trio

from civicrealtime.http.serve import PeerGoneFilter


def test_hypercorn_errors_for_a_vanished_peer_are_quiet() -> None:
    quiet = PeerGoneFilter()

    def record(error: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "hypercorn.error",
            logging.ERROR,
            __file__,
            1,
            "Error in ASGI Framework",
            (),
            (type(error), error, None),
        )

    assert not quiet.filter(record(trio.BusyResourceError("another task is sending")))
    assert not quiet.filter(record(BaseExceptionGroup("g", [trio.BrokenResourceError()])))
    assert quiet.filter(record(ValueError("a real bug")))
    assert quiet.filter(logging.LogRecord("x", logging.ERROR, __file__, 1, "no exc", (), None))
