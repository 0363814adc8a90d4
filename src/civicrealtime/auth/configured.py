"""The authenticator the configuration asks for: development, an HMAC secret, or keys.

Built once at start; a credential that cannot be used fails the start with one line
(`AuthSetupError`, `FileSetupError`) rather than refusing every connection later.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import jwt

from ..config import RealtimeConfig
from ..startup import AuthSetupError, FileSetupError, describe_os_error
from .base import Authenticator
from .development import DevelopmentAuthenticator
from .introspection import Introspector
from .keys import JwksFile, JwksUrl, KeyError_, KeyProvider, StaticKey
from .revocation import Revocations
from .secrets import SecretError, resolve_secret
from .token_auth import TokenAuthenticator

log = logging.getLogger("civicrealtime")


def build_authenticator(
    config: RealtimeConfig,
    revocations: Revocations,
    environ: Mapping[str, str] | None = None,
) -> tuple[Authenticator, bytes | None]:
    """The authenticator the configuration asks for, and the HMAC secret if there is one.

    Raises AuthSetupError.
    """
    auth = config.auth
    if auth.mode == "development":
        log.warning(
            "auth.development_mode: every connection is accepted without verification; "
            "never expose this daemon like this"
        )
        return DevelopmentAuthenticator(), None
    secret: bytes | None = None
    keys: KeyProvider | None = None
    setting = "auth.secret_file (or $CIVICREALTIME_JWT_SECRET)"
    try:
        if auth.public_key_file:
            setting = "auth.public_key_file"
            keys = StaticKey(Path(auth.public_key_file))
            _check_public_key(Path(auth.public_key_file), auth.effective_algorithms)
        elif auth.jwks_file:
            setting = "auth.jwks_file"
            keys = JwksFile(Path(auth.jwks_file))
        elif auth.jwks_url:
            setting = "auth.jwks_url"
            keys = JwksUrl(
                auth.jwks_url, cache_seconds=auth.jwks_cache_seconds, timeout=auth.fetch_timeout
            )
        else:
            found = resolve_secret(
                auth.secret_file,
                Path(config.data_dir),
                os.environ if environ is None else environ,
                create=True,
            )
            secret = found.value
            if found.created:
                log.warning("auth.secret_created path=%s mode=0600", found.source)
            else:
                log.info("auth.secret source=%s", found.source)
    except (KeyError_, SecretError) as exc:
        # Raised `from None`, the OS error is still the context: a file we may not read is
        # a file problem (exit 4), a key we cannot use a configuration one (exit 2).
        cause = exc.__context__
        if isinstance(cause, OSError):
            name = errno.errorcode.get(cause.errno or 0, "OSError")
            raise FileSetupError(
                f"auth: {exc} ({name}); fix the file or its permissions, or change {setting}"
            ) from None
        raise AuthSetupError(f"auth: {exc}; change {setting}") from None
    except OSError as exc:
        # Creating <data_dir>/jwt-secret: the data directory is not ours to write.
        raise FileSetupError(
            f"auth: cannot create the generated secret in {exc.filename or config.data_dir}: "
            f"{describe_os_error(exc)}; make data_dir ({config.data_dir}) writable by this "
            "user, or change data_dir, auth.secret_file or $CIVICREALTIME_JWT_SECRET"
        ) from None
    introspector = None
    if auth.introspection_url:
        introspector = Introspector(
            auth.introspection_url,
            cache_seconds=auth.introspection_cache_seconds,
            timeout=auth.fetch_timeout,
        )
    authenticator = TokenAuthenticator(
        auth,
        hmac_secret=secret,
        keys=keys,
        introspector=introspector,
        revocations=revocations,
    )
    return authenticator, secret


def _check_public_key(path: Path, algorithms: tuple[str, ...]) -> None:
    """A PEM no configured algorithm can use fails at start, not at every connection.

    StaticKey prepares keys on first use, when a bad file would only show as refused tokens.
    """
    pem = path.read_bytes()
    problems = []
    for algorithm in algorithms:
        try:
            jwt.get_algorithm_by_name(algorithm).prepare_key(pem)
        except (jwt.InvalidKeyError, ValueError, TypeError, NotImplementedError) as exc:
            problems.append(f"{algorithm}: {exc}")
        else:
            return
    raise AuthSetupError(
        f"auth: the public key file {path} holds no key usable with auth.algorithms "
        f"({'; '.join(problems)}); change auth.public_key_file to a PEM public key, or "
        "auth.algorithms"
    )
