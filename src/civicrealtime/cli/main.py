"""The `civicrealtime` command: `serve` (the default) and `check-config`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from .. import config as config_module
from ..app import RealtimeService
from ..auth.minting import mint_token
from ..auth.secrets import ENV_SECRET, SecretError, resolve_secret
from ..config import ConfigError, LoadedConfig
from ..extras import MissingExtra
from ..logs import configure
from ..rooms.plugins import RoomTypeLoadError, load_room_types
from ..startup import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    StartupError,
    check_paths,
    describe_os_error,
)
from ..version import VERSION
from . import history as history_cli
from . import records as records_cli
from . import snapshots as snapshots_cli

log = logging.getLogger("civicrealtime")


def _config_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help=f"configuration file (default: ${config_module.ENV_CONFIG} or "
        f"{config_module.DEFAULT_CONFIG_PATH})",
    )


class _SubcommandParser(argparse.ArgumentParser):
    """Every subcommand takes `--config` too, so that `serve --config x.yml` works."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand without it keeps the value given before the subcommand.
        _config_option(self, argparse.SUPPRESS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="civicrealtime",
        description="CivicPress realtime daemon: collaborative Yjs rooms over y-websocket.",
        epilog="Exit codes: 0 fine, 1 unexpected error, 2 invalid configuration, 3 a port "
        "cannot be listened on, 4 a file or directory cannot be used, 5 the store cannot be "
        "opened (docs/operations.md).",
    )
    _config_option(parser, None)
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_SubcommandParser
    )
    commands.add_parser("serve", help="run the daemon (the default)")
    check = commands.add_parser(
        "check-config", help="validate a configuration file and print the effective settings"
    )
    check.add_argument("path", nargs="?", help="file to check (default: as for serve)")
    token = commands.add_parser(
        "token",
        help="mint a development token signed with the daemon's HMAC secret",
        description="Print a JWT for the given user, signed with the daemon's HMAC secret "
        "($CIVICREALTIME_JWT_SECRET, auth.secret_file, or <data_dir>/jwt-secret), found "
        "through the daemon's configuration (--config, $CIVICREALTIME_CONFIG, "
        ".system-data/realtime.yml). It never creates a secret: start the daemon once "
        "first. The token carries auth.issuer and auth.audience when they are set.",
    )
    token.add_argument("--user", required=True, help="user id (the `sub` claim)")
    token.add_argument("--name", help="display name")
    token.add_argument(
        "--role",
        help="role, one of auth.roles (admin, clerk, editor, public by default); required "
        "unless --permission is given",
    )
    token.add_argument(
        "--room",
        action="append",
        default=[],
        metavar="PATTERN",
        help="restrict to rooms matching PATTERN (records:abc, records:*); repeatable",
    )
    token.add_argument(
        "--permission", action="append", default=[], help="extra permission; repeatable"
    )
    token.add_argument(
        "--ttl",
        type=int,
        default=3600,
        help="seconds until it expires, > 0 and at most auth.max_token_lifetime (default 3600)",
    )
    snapshots_cli.add_parser(commands)
    records_cli.add_parser(commands)
    history_cli.add_parser(commands)
    return parser


def _load(path: str | None) -> LoadedConfig:
    return config_module.load(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.path or args.config)
    if args.command == "token":
        return _token(args)
    if args.command in ("snapshots", "records", "history"):
        try:
            loaded = _load(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_CONFIG
        try:
            if args.command == "snapshots":
                return snapshots_cli.run(loaded.config, args)
            if args.command == "history":
                return history_cli.run(loaded.config, args)
            return records_cli.run(loaded.config, args)
        except MissingExtra as exc:
            print(exc, file=sys.stderr)
            return EXIT_CONFIG
    return _serve(args.config)


def _token(args: argparse.Namespace) -> int:
    """Mint a token the running daemon accepts, or say why not (exit 2)."""
    if args.ttl <= 0:
        print(f"--ttl must be a positive number of seconds, got {args.ttl}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        loaded = _load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    auth = loaded.config.auth
    where = str(loaded.source) if loaded.found else f"{loaded.source} (not found: defaults)"
    roles = ", ".join(sorted(auth.roles))
    if args.role is None and not args.permission:
        # A token with neither a role nor a permission grants nothing: the daemon would
        # accept it, then refuse every room with 4003.
        print(
            f"choose a role with --role (one of {roles}; auth.roles in {where}), "
            "or grant --permission",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if args.role is not None and args.role not in auth.roles:
        print(
            f"unknown role {args.role!r}: auth.roles in {where} defines {roles}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    longest = auth.max_token_lifetime
    if longest is not None and args.ttl > longest:
        print(
            f"--ttl {args.ttl} is longer than auth.max_token_lifetime ({longest:g} s) in "
            f"{where}: the daemon would refuse the token",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if auth.mode == "development":
        print(
            f"auth.mode is development in {where}: the daemon takes any token as the user "
            "id, so this prints the user id",
            file=sys.stderr,
        )
        print(args.user)
        return 0
    if auth.public_keys_configured:
        print(
            "this daemon verifies tokens with public keys; mint them where the private key lives",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        # Never create: a secret made here would sign tokens no running daemon accepts.
        secret = resolve_secret(
            auth.secret_file, Path(loaded.config.data_dir), os.environ, create=False
        )
    except SecretError as exc:
        print(
            f"{exc} (configuration: {where}; pass --config or run where the daemon runs)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    used = str(Path(secret.source).resolve())
    if secret.source == "environment":
        used = f"${ENV_SECRET}"
    print(f"signed with the secret from {used} (configuration: {where})", file=sys.stderr)
    algorithm = next(a for a in auth.effective_algorithms if a.startswith("HS"))
    print(
        mint_token(
            secret.value,
            user=args.user,
            role=args.role,
            name=args.name,
            rooms=tuple(args.room),
            permissions=tuple(args.permission),
            ttl_seconds=args.ttl,
            algorithm=algorithm,
            issuer=auth.issuer,
            audience=auth.audience,
        )
    )
    return 0


def _check_config(path: str | None) -> int:
    try:
        loaded = _load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    try:
        # What the daemon would refuse at start, said before it is started.
        check_paths(loaded.config)
    except StartupError as exc:
        print(f"invalid configuration in {loaded.source}:\n  - {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        # Imports the plugins' code, as the daemon does at start.
        load_room_types(loaded.config)
    except RoomTypeLoadError as exc:
        print(f"invalid configuration in {loaded.source}:\n  - {exc}", file=sys.stderr)
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
    configure(loaded.config.logging.level, loaded.config.logging.format)
    if loaded.found:
        log.info("config.loaded path=%s", loaded.source)
    else:
        log.info("config.defaults path=%s not found; using embedded defaults", loaded.source)
    if not loaded.config.enabled:
        log.info("server.disabled enabled=false in %s; exiting", loaded.source)
        return 0
    try:
        service = RealtimeService(loaded.config)
    except MissingExtra as exc:
        log.error("config.missing_dependency %s", exc)  # noqa: TRY400 - not a bug to trace
        return EXIT_CONFIG
    except StartupError as exc:
        log.error("startup.failed %s", exc)  # noqa: TRY400 - the line says it all
        return exc.exit_code
    failures: list[tuple[str, int]] = []
    try:
        trio.run(_run_daemon, service)
    except* StartupError as group:
        failures += [(f"startup.failed {e}", e.exit_code) for e in _leaves(group, StartupError)]
    except* OSError as group:
        # Not at start (those are StartupError): a runtime failure, one line each.
        failures += [
            (f"server.failed {describe_os_error(e)}", EXIT_FAILURE) for e in _leaves(group, OSError)
        ]
    for line, _ in failures:
        log.error("%s", line)
    return failures[0][1] if failures else 0


E = TypeVar("E", bound=BaseException)


def _leaves(group: BaseExceptionGroup[E], kind: type[E]) -> list[E]:
    """The exceptions of a (nested) group, in order."""
    found: list[E] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += _leaves(exc, kind)
        elif isinstance(exc, kind):
            found.append(exc)
    return found


async def _run_daemon(service: RealtimeService) -> None:
    """Serve until SIGINT or SIGTERM, then shut down (bounded by `shutdown_timeout`).

    Signals are received until the service has stopped: a second one during the shutdown
    (Ctrl-C twice, or a terminal and a supervisor both signalling the process group) is
    said and ignored, instead of reaching trio's default handler as a KeyboardInterrupt
    that ended a clean shutdown with a traceback.
    """
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await nursery.start(service.run)
            with trio.CancelScope() as listening:
                nursery.start_soon(_cancel_when_set, service.stopped, listening)
                stopping = False
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if stopping:
                        log.info("server.signal_ignored signal=%s already stopping", name)
                        continue
                    log.info("server.signal signal=%s", name)
                    service.shutdown()
                    stopping = True
        await service.stopped.wait()


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
