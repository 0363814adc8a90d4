"""The operations port: health, readiness, metrics, the admin API and the demo page."""

from .asgi import OpsApp
from .serve import serve_http

__all__ = ["OpsApp", "serve_http"]
