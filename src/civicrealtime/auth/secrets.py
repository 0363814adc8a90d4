"""Where the HMAC secret comes from: the environment, a secret file, or a generated file.

Never from the YAML itself: a configuration file is shared, copied and committed, a secret
must not be. On first start with nothing configured, a random secret is written to
`<data_dir>/jwt-secret` with mode 0600, and the log says where. `civicrealtime token` reads
the same file through the same configuration but never creates one: a secret it made would
sign tokens that no running daemon accepts.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import attrs

ENV_SECRET = "CIVICREALTIME_JWT_SECRET"
GENERATED_NAME = "jwt-secret"
# 32 bytes: the HS256 key size; more adds nothing, fewer weakens the MAC.
MIN_SECRET_BYTES = 32


class SecretError(Exception):
    pass


@attrs.frozen(kw_only=True)
class Secret:
    value: bytes = attrs.field(repr=False)
    source: str  # "environment", or the file's path
    created: bool = False


def _read_secret_file(path: Path) -> bytes:
    try:
        value = path.read_bytes().strip()
    except OSError as exc:
        raise SecretError(f"cannot read the secret file {path}: {exc.strerror}") from None
    if len(value) < MIN_SECRET_BYTES:
        raise SecretError(f"the secret in {path} is shorter than {MIN_SECRET_BYTES} bytes")
    return value


def resolve_secret(
    secret_file: str | None, data_dir: Path, environ: Mapping[str, str], *, create: bool
) -> Secret:
    """The HMAC secret, creating `<data_dir>/jwt-secret` when allowed and nothing is set."""
    from_env = environ.get(ENV_SECRET, "").strip()
    if from_env:
        if len(from_env.encode()) < MIN_SECRET_BYTES:
            raise SecretError(f"${ENV_SECRET} is shorter than {MIN_SECRET_BYTES} bytes")
        return Secret(value=from_env.encode(), source="environment")
    if secret_file:
        path = Path(secret_file)
        return Secret(value=_read_secret_file(path), source=str(path))
    generated = data_dir / GENERATED_NAME
    if generated.exists():
        return Secret(value=_read_secret_file(generated), source=str(generated))
    if not create:
        raise SecretError(
            f"no JWT secret: set ${ENV_SECRET}, auth.secret_file, or start the daemon once "
            f"to create {generated.resolve()}"
        )
    value = secrets.token_urlsafe(48).encode()
    generated.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two processes starting at once must not overwrite each other's secret.
    try:
        fd = os.open(generated, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return Secret(value=_read_secret_file(generated), source=str(generated))
    with os.fdopen(fd, "wb") as handle:
        handle.write(value + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return Secret(value=value, source=str(generated), created=True)
