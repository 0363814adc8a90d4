"""Several nodes, one set of rooms: cross-node fan-out, leases and limits through Redis."""

from .service import ClusterService

__all__ = ["ClusterService"]
