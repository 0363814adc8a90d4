"""Start-up failures: the daemon's exit codes and the one-line errors that explain them.

Each `StartupError` names the component, the address or path, the OS error and the setting
or variable to change; its class carries the exit code (docs/operations.md, "Exit codes").
The checks and reports here run before the daemon serves anyone: they never touch a room.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from .config import RealtimeConfig

# The daemon's exit codes (docs/operations.md, "Exit codes"): a supervisor or an operator
# tells from the code alone which kind of thing to fix.
EXIT_FAILURE = 1  # an unexpected error (the log has the traceback) or a runtime failure
EXIT_CONFIG = 2  # the configuration is invalid, or needs an optional dependency not installed
EXIT_LISTEN = 3  # a port cannot be listened on (in use, privileged, not an address of ours)
EXIT_FILE = 4  # a file or directory cannot be read or written (permissions, missing)
EXIT_STORE = 5  # the store cannot be opened or read (PostgreSQL down, SQLite file unusable)


class StartupError(Exception):
    """The daemon cannot start. The message is one line: what (the component), where (the
    address or path), the OS error, and the setting or variable to change."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        # Driver messages (psycopg's) span lines; a start-up failure is one log line.
        super().__init__(" ".join(message.split()))
        if exit_code is not None:
            self.exit_code = exit_code


class ListenError(StartupError):
    """A listening port cannot be opened."""

    exit_code = EXIT_LISTEN


class FileSetupError(StartupError):
    """A file or directory the configuration names cannot be used."""

    exit_code = EXIT_FILE


class StoreSetupError(StartupError):
    """The configured store cannot be opened at start."""

    exit_code = EXIT_STORE


class RoomTypeSetupError(StartupError):
    """A room type of `room_types` cannot be built (unknown handler, import error, ...)."""

    exit_code = EXIT_CONFIG


class AuthSetupError(StartupError):
    """The configured credentials cannot be used (missing file, bad key, short secret)."""

    exit_code = EXIT_CONFIG


def describe_os_error(exc: OSError) -> str:
    """`[Errno 98] Address already in use (EADDRINUSE)`: the text and the name to search."""
    if exc.errno is None:
        return str(exc)
    name = errno.errorcode.get(exc.errno, "")
    return f"[Errno {exc.errno}] {exc.strerror}" + (f" ({name})" if name else "")


def _os_error_of(group: BaseExceptionGroup[BaseException]) -> OSError | None:
    """The first OSError of a group holding nothing else (a listener failing in a nursery)."""
    matched, rest = group.split(OSError)
    if matched is None or rest is not None:
        return None
    leaf: BaseException = matched
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf if isinstance(leaf, OSError) else None


def _listen_advice(error: OSError, port: int, port_setting: str, host_setting: str) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"another process holds it: stop it, or set {port_setting} to a free port"
    if error.errno == errno.EACCES and 0 < port < 1024:
        return (
            f"ports below 1024 need root or CAP_NET_BIND_SERVICE: set {port_setting} to 1024 "
            "or above (and put nginx in front), or grant the capability"
        )
    if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(
        error, socket.gaierror
    ):
        return f"set {host_setting} to an address of this machine"
    return f"change {port_setting} or {host_setting}"


async def listening(
    component: str,
    host: str,
    port: int,
    settings: tuple[str, str],
    start: Callable[[], Awaitable[int]],
) -> int:
    """`start()` a listener; a failure to bind becomes one ListenError line."""
    try:
        return await start()
    except OSError as exc:
        error = exc
    except BaseExceptionGroup as group:
        found = _os_error_of(group)
        if found is None:
            raise
        error = found
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    port_setting, host_setting = settings
    raise ListenError(
        f"{component}: cannot listen on {address}: {describe_os_error(error)}; "
        f"{_listen_advice(error, port, port_setting, host_setting)}"
    ) from error


def store_advice(config: RealtimeConfig) -> str:
    location = config.snapshots.location(config.data_dir)
    if location.startswith(("postgresql://", "postgres://")):
        return "start PostgreSQL or fix snapshots.database_url"
    if location.startswith("filesystem:"):
        return (
            "make the directory writable by this user, or change snapshots.directory (or data_dir)"
        )
    return (
        "make the file and its directory writable by this user, or change "
        "snapshots.database_url (or data_dir)"
    )


def check_paths(config: RealtimeConfig) -> None:
    """Directories the configuration names that must exist before start (FileSetupError)."""
    records = config.records.data_dir
    if records and not Path(records).is_dir():
        what = "is not a directory" if Path(records).exists() else "does not exist"
        raise FileSetupError(
            f"records: the data directory {records} {what}; change records.data_dir to a "
            "CivicPress data directory (or null to serve records rooms without one)"
        )


def read_admin_token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise FileSetupError(
            f"operations port: cannot read the admin token file {path}: "
            f"{describe_os_error(exc)}; fix its permissions or change http.admin_token_file"
        ) from None
    if len(token) < 16:
        raise AuthSetupError(
            f"operations port: the admin token in {path} is shorter than 16 characters; "
            "write a longer one or change http.admin_token_file"
        )
    return token
