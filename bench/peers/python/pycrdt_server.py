"""Bench-only runner for the pycrdt-websocket peer: its ASGI server under Hypercorn (asyncio).

    python pycrdt_server.py HOST PORT

Rooms are named by the URL path; documents live in memory (no store), as in the
documentation's example. Prints `listening` once Hypercorn is bound.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from hypercorn import Config
from hypercorn.asyncio import serve
from pycrdt.websocket import ASGIServer, WebsocketServer, exception_logger


async def main(host: str, port: int) -> None:
    websocket_server = WebsocketServer(exception_handler=exception_logger)
    app = ASGIServer(websocket_server)
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.websocket_max_message_size = 64 * 1024 * 1024
    async with websocket_server:
        print("listening", flush=True)
        await serve(app, config, mode="asgi")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
