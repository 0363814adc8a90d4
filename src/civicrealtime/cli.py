"""The `civicrealtime` command: `serve` (the default) and `check-config`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import trio

from . import config as config_module
from .app import RealtimeService
from .config import ConfigError, LoadedConfig
from .logs import configure

log = logging.getLogger("civicrealtime")

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="civicrealtime",
        description="CivicPress realtime daemon: collaborative Yjs rooms over y-websocket.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=f"configuration file (default: ${config_module.ENV_CONFIG} or "
        f"{config_module.DEFAULT_CONFIG_PATH})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="run the daemon (the default)")
    check = commands.add_parser(
        "check-config", help="validate a configuration file and print the effective settings"
    )
    check.add_argument("path", nargs="?", help="file to check (default: as for serve)")
    return parser


def _load(path: str | None) -> LoadedConfig:
    return config_module.load(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.path or args.config)
    return _serve(args.config)


def _check_config(path: str | None) -> int:
    try:
        loaded = _load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    where = loaded.source if loaded.found else f"{loaded.source} (not found: embedded defaults)"
    print(f"# configuration from {where}: valid")
    print(config_module.dump_yaml(loaded.config), end="")
    return 0


def _serve(path: str | None) -> int:
    try:
        loaded = _load(path)
    except ConfigError as exc:
        problem: ConfigError | None = exc
    else:
        problem = None
    if problem is not None:
        configure("info")
        log.error("config.invalid %s", problem)
        return EXIT_CONFIG
    configure(loaded.config.logging.level)
    if loaded.found:
        log.info("config.loaded path=%s", loaded.source)
    else:
        log.info("config.defaults path=%s not found; using embedded defaults", loaded.source)
    if not loaded.config.enabled:
        log.info("server.disabled enabled=false in %s; exiting", loaded.source)
        return 0
    try:
        trio.run(_run_daemon, RealtimeService(loaded.config))
    except OSError as exc:
        failure: OSError | None = exc
    else:
        failure = None
    if failure is not None:
        # Typically the port is taken or the host is not ours: say it in one line.
        log.error("server.failed %s", failure)
        return 1
    return 0


async def _run_daemon(service: RealtimeService) -> None:
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await nursery.start(service.run)
            async for signum in signals:
                log.info("server.signal signal=%s", signal.Signals(signum).name)
                service.shutdown()
                break
        await service.stopped.wait()
