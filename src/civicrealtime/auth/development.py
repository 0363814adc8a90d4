"""The development authenticator: everyone gets in. Only with `auth.mode: development`.

The token, if there is one, is taken as the user id unverified, so a developer can open
two browser windows as "alice" and "bob"; without one, each connection is anonymous.
"""

from __future__ import annotations

import itertools

from .base import Identity, UpgradeRequest
from .permissions import ALL
from .tokens import find_token

MAX_DEV_USER_ID = 64


class DevelopmentAuthenticator:
    def __init__(self) -> None:
        self._anonymous = itertools.count(1)

    async def authenticate(self, request: UpgradeRequest) -> Identity:
        found = find_token(request, allow_query=True)
        if found is None:
            return Identity(
                user_id=f"anonymous-{next(self._anonymous)}", permissions=frozenset({ALL})
            )
        user = found.token[:MAX_DEV_USER_ID]
        return Identity(user_id=user, name=user, permissions=frozenset({ALL}))
