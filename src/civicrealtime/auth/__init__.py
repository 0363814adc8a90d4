"""Who is connecting: the authenticator seam and its implementations."""

from .base import Authenticator, AuthRejected, Identity, UpgradeRequest
from .development import DevelopmentAuthenticator
from .tokens import FoundToken, find_token

__all__ = [
    "AuthRejected",
    "Authenticator",
    "DevelopmentAuthenticator",
    "FoundToken",
    "Identity",
    "UpgradeRequest",
    "find_token",
]
