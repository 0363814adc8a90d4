"""civicrealtime: the CivicPress realtime daemon, usable as a library.

    config = civicrealtime.load_config().config
    service = civicrealtime.RealtimeService(config)
    port = await nursery.start(service.run)
    ...
    service.shutdown()

The names below are loaded on first use, so that importing a sub-package (the sans-IO
`civicrealtime.protocol`, for instance) does not drag trio and the server in with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import RealtimeService as RealtimeService
    from .config import ConfigError as ConfigError
    from .config import RealtimeConfig as RealtimeConfig
    from .config import load as load_config
    from .rooms import RoomManager as RoomManager
    from .rooms import RoomType as RoomType
    from .rooms import RoomTypeRegistry as RoomTypeRegistry

_EXPORTS = {
    "RealtimeService": ("app", "RealtimeService"),
    "ConfigError": ("config", "ConfigError"),
    "RealtimeConfig": ("config", "RealtimeConfig"),
    "load_config": ("config", "load"),
    "RoomManager": ("rooms", "RoomManager"),
    "RoomType": ("rooms", "RoomType"),
    "RoomTypeRegistry": ("rooms", "RoomTypeRegistry"),
}

__all__ = [
    "ConfigError",
    "RealtimeConfig",
    "RealtimeService",
    "RoomManager",
    "RoomType",
    "RoomTypeRegistry",
    "load_config",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'civicrealtime' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f".{module}", __name__), attribute)
