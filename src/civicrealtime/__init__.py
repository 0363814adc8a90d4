"""civicrealtime: the CivicPress realtime daemon, usable as a library.

config = civicrealtime.load_config().config
service = civicrealtime.RealtimeService(config)
port = await nursery.start(service.run)
...
service.shutdown()
"""

from .app import RealtimeService
from .config import ConfigError, RealtimeConfig
from .config import load as load_config
from .rooms import RoomManager, RoomType, RoomTypeRegistry

__all__ = [
    "ConfigError",
    "RealtimeConfig",
    "RealtimeService",
    "RoomManager",
    "RoomType",
    "RoomTypeRegistry",
    "load_config",
]
