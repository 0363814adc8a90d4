"""JWT verification and introspection: every way a token can fail, and the ways it passes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from civicrealtime.auth import AuthRejected, Identity, UpgradeRequest
from civicrealtime.auth import keys as keys_module
from civicrealtime.auth.introspection import Introspector
from civicrealtime.auth.keys import JwksFile, JwksUrl, KeyProvider, StaticKey
from civicrealtime.auth.revocation import Revocations
from civicrealtime.auth.token_auth import TokenAuthenticator
from civicrealtime.config import AuthConfig

from .http_stub import Stub, http_stub

SECRET = b"s" * 40


def request_with(token: str) -> UpgradeRequest:
    return UpgradeRequest(
        target="/realtime/records/a",
        headers=(),
        subprotocols=(f"auth.{token}",),
        peer="127.0.0.1",
    )


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "exp": now + 600, "iat": now, "role": "editor"}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hmac_auth(**config: Any) -> TokenAuthenticator:
    return TokenAuthenticator(
        AuthConfig(**config),
        hmac_secret=SECRET,
        keys=None,
        introspector=None,
        revocations=Revocations(),
    )


def key_auth(keys: KeyProvider, **config: Any) -> TokenAuthenticator:
    return TokenAuthenticator(
        AuthConfig(**config),
        hmac_secret=None,
        keys=keys,
        introspector=None,
        revocations=Revocations(),
    )


async def rejected(auth: TokenAuthenticator, token: str) -> str:
    with pytest.raises(AuthRejected) as info:
        await auth.authenticate(request_with(token))
    assert info.value.code == "AUTH_FAILED"
    assert token not in info.value.detail  # the log line never holds the token
    return info.value.detail


async def test_valid_hs256_maps_claims_to_identity() -> None:
    token = jwt.encode(
        claims(name="Alice", permissions=["notes:view"], rooms=["records:*"], jti="t1"),
        SECRET,
        algorithm="HS256",
    )
    identity = await hmac_auth().authenticate(request_with(token))
    assert identity.user_id == "alice"
    assert identity.name == "Alice"
    assert identity.role == "editor"
    assert identity.permissions == {"notes:view"}
    assert identity.rooms == ("records:*",)
    assert identity.token_id == "t1"
    assert identity.expires_at is not None


async def test_no_token() -> None:
    auth = hmac_auth()
    with pytest.raises(AuthRejected, match="no token"):
        await auth.authenticate(
            UpgradeRequest(target="/r/records/a", headers=(), subprotocols=(), peer="x")
        )


async def test_bad_signature() -> None:
    token = jwt.encode(claims(), b"another secret of forty bytes............", algorithm="HS256")
    assert "InvalidSignatureError" in await rejected(hmac_auth(), token)


async def test_alg_none_is_refused() -> None:
    token = jwt.encode(claims(), None, algorithm="none")
    assert "not allowed" in await rejected(hmac_auth(), token)


async def test_expired() -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 120), SECRET, algorithm="HS256")
    assert "ExpiredSignatureError" in await rejected(hmac_auth(), token)


async def test_expiry_within_leeway_is_refused_at_the_handshake() -> None:
    """Issue #20: accepted inside the leeway, the session was closed at once with
    TOKEN_EXPIRED and the client reconnected in a loop. The leeway covers nbf and iat."""
    token = jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256")
    assert "expired" in await rejected(hmac_auth(leeway=30), token)
    skewed = jwt.encode(claims(nbf=int(time.time()) + 5), SECRET, algorithm="HS256")
    assert (await hmac_auth(leeway=30).authenticate(request_with(skewed))).user_id == "alice"


async def test_a_token_longer_than_max_token_lifetime_is_refused() -> None:
    now = int(time.time())
    week = jwt.encode(claims(iat=now, exp=now + 7 * 86400), SECRET, algorithm="HS256")
    hour = jwt.encode(claims(iat=now, exp=now + 3600), SECRET, algorithm="HS256")
    auth = hmac_auth(max_token_lifetime=86400)
    assert "max_token_lifetime" in await rejected(auth, week)
    assert (await auth.authenticate(request_with(hour))).user_id == "alice"


async def test_max_token_lifetime_refuses_a_token_without_iat() -> None:
    """Without `iat`, `exp - now` is all there is, and it shrinks as the token ages: a
    30-day token passed a 1-day limit on its 29th day, after a token-id revocation kept
    for `max_token_lifetime` had been forgotten."""
    no_iat = jwt.encode(claims(iat=None, exp=int(time.time()) + 600), SECRET, algorithm="HS256")
    assert "iat" in await rejected(hmac_auth(max_token_lifetime=86400), no_iat)
    # Without the limit, `iat` stays optional.
    assert (await hmac_auth().authenticate(request_with(no_iat))).user_id == "alice"


async def test_not_yet_valid() -> None:
    token = jwt.encode(claims(nbf=int(time.time()) + 600), SECRET, algorithm="HS256")
    assert "ImmatureSignatureError" in await rejected(hmac_auth(), token)


async def test_issued_in_the_future() -> None:
    token = jwt.encode(claims(iat=int(time.time()) + 600), SECRET, algorithm="HS256")
    assert "Immature" in await rejected(hmac_auth(), token)


async def test_missing_exp_and_missing_sub() -> None:
    no_exp = jwt.encode(claims(exp=None), SECRET, algorithm="HS256")
    assert "exp" in await rejected(hmac_auth(), no_exp)
    no_sub = jwt.encode(claims(sub=None), SECRET, algorithm="HS256")
    assert "sub" in await rejected(hmac_auth(), no_sub)


async def test_wrong_issuer_and_audience() -> None:
    auth = hmac_auth(issuer="https://civic.example", audience="civicrealtime")
    good = jwt.encode(
        claims(iss="https://civic.example", aud="civicrealtime"), SECRET, algorithm="HS256"
    )
    assert (await auth.authenticate(request_with(good))).user_id == "alice"
    bad_iss = jwt.encode(claims(iss="https://evil", aud="civicrealtime"), SECRET, algorithm="HS256")
    assert "InvalidIssuerError" in await rejected(auth, bad_iss)
    bad_aud = jwt.encode(
        claims(iss="https://civic.example", aud="other"), SECRET, algorithm="HS256"
    )
    assert "InvalidAudienceError" in await rejected(auth, bad_aud)


async def test_malformed_claims_are_refused() -> None:
    token = jwt.encode(claims(permissions=[1, 2]), SECRET, algorithm="HS256")
    assert "permissions" in await rejected(hmac_auth(), token)


async def test_garbage_token() -> None:
    assert "malformed" in await rejected(hmac_auth(), "a.b.c")
    assert "not a JWT" in await rejected(hmac_auth(), "opaque-session-id")


def rsa_pair() -> tuple[Any, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public_pem


async def test_rs256_with_a_pem_public_key(tmp_path: Path) -> None:
    private, public_pem = rsa_pair()
    path = tmp_path / "public.pem"
    path.write_bytes(public_pem)
    auth = key_auth(StaticKey(path), public_key_file=str(path))
    token = jwt.encode(claims(), private, algorithm="RS256")
    assert (await auth.authenticate(request_with(token))).user_id == "alice"


async def test_hmac_signed_with_the_public_key_is_refused(tmp_path: Path) -> None:
    """Key confusion: an attacker uses the (public) PEM as an HMAC secret."""
    _, public_pem = rsa_pair()
    path = tmp_path / "public.pem"
    path.write_bytes(public_pem)
    auth = key_auth(StaticKey(path), public_key_file=str(path))
    # PyJWT refuses to sign like this, so forge it by hand as an attacker would.
    signing_input = (
        b64url(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64url(json.dumps(claims()).encode())
    )
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + b64url(signature)).decode()
    assert "not allowed" in await rejected(auth, forged)


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


async def test_a_key_of_the_wrong_kind_cannot_verify(tmp_path: Path) -> None:
    _, public_pem = rsa_pair()
    path = tmp_path / "public.pem"
    path.write_bytes(public_pem)
    auth = key_auth(StaticKey(path), public_key_file=str(path), algorithms=["ES256"])
    ec_private = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(claims(), ec_private, algorithm="ES256")
    assert "cannot verify ES256" in await rejected(auth, token)


def jwk_of(public_key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name(alg)
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(public_key))
    jwk.update(kid=kid, alg=alg, use="sig")
    return jwk


async def test_es256_from_a_jwks_file(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk_of(private.public_key(), "k1", "ES256")]}))
    auth = key_auth(JwksFile(path), jwks_file=str(path))
    token = jwt.encode(claims(), private, algorithm="ES256", headers={"kid": "k1"})
    assert (await auth.authenticate(request_with(token))).user_id == "alice"
    unknown = jwt.encode(claims(), private, algorithm="ES256", headers={"kid": "k9"})
    assert "k9" in await rejected(auth, unknown)


async def test_eddsa_from_a_jwks_url_refetched_on_unknown_kid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = ed25519.Ed25519PrivateKey.generate()
    new = ed25519.Ed25519PrivateKey.generate()
    with http_stub() as stub:
        stub.body = {"keys": [jwk_of(old.public_key(), "old", "EdDSA")]}
        keys = JwksUrl(stub.url + "/jwks", cache_seconds=300, timeout=5)
        auth = key_auth(keys, jwks_url=stub.url)
        first = jwt.encode(claims(), old, algorithm="EdDSA", headers={"kid": "old"})
        assert (await auth.authenticate(request_with(first))).user_id == "alice"
        assert (await auth.authenticate(request_with(first))).user_id == "alice"
        assert len(stub.requests) == 1  # cached
        # The issuer rotates its key: a token with the new kid triggers a refetch.
        stub.body = {"keys": [jwk_of(new.public_key(), "new", "EdDSA")]}
        rotated = jwt.encode(claims(), new, algorithm="EdDSA", headers={"kid": "new"})
        monkeypatch.setattr(keys_module, "MIN_REFRESH_SECONDS", 0.0)
        assert (await auth.authenticate(request_with(rotated))).user_id == "alice"
        assert len(stub.requests) == 2
        monkeypatch.setattr(keys_module, "MIN_REFRESH_SECONDS", 3600.0)
        # Forged kids do not make us hammer the URL.
        forged = jwt.encode(claims(), new, algorithm="EdDSA", headers={"kid": "nope"})
        for _ in range(5):
            await rejected(auth, forged)
        assert len(stub.requests) == 2


async def test_unreachable_jwks_url_fails_closed() -> None:
    keys = JwksUrl("http://127.0.0.1:9/jwks", cache_seconds=300, timeout=1)
    auth = key_auth(keys, jwks_url="http://127.0.0.1:9/jwks")
    private = ed25519.Ed25519PrivateKey.generate()
    token = jwt.encode(claims(), private, algorithm="EdDSA", headers={"kid": "k"})
    assert "last fetch failed" in await rejected(auth, token)


def introspecting(stub: Stub, cache_seconds: float = 60, **config: Any) -> TokenAuthenticator:
    return TokenAuthenticator(
        AuthConfig(introspection_url=stub.url, **config),
        hmac_secret=SECRET,
        keys=None,
        introspector=Introspector(stub.url, cache_seconds=cache_seconds, timeout=2),
        revocations=Revocations(),
    )


async def test_introspection_active_and_cached() -> None:
    with http_stub() as stub:
        stub.body = {
            "active": True,
            "sub": "clerk-7",
            "role": "clerk",
            "permissions": ["records:view"],
            "exp": time.time() + 600,
        }
        auth = introspecting(stub)
        identity = await auth.authenticate(request_with("opaque-session-123"))
        assert identity.user_id == "clerk-7"
        assert identity.role == "clerk"
        await auth.authenticate(request_with("opaque-session-123"))
        assert len(stub.requests) == 1
        assert stub.requests[0]["form"] == {"token": ["opaque-session-123"]}


@pytest.mark.parametrize(
    ("status", "body", "detail"),
    [
        (200, {"active": False}, "not active"),
        (200, {"active": True}, "no 'sub'"),
        (500, {"error": "boom"}, "HTTP 500"),
        (200, b"not json", "not JSON"),
    ],
)
async def test_introspection_failures_refuse(status: int, body: Any, detail: str) -> None:
    with http_stub() as stub:
        stub.status, stub.body = status, body
        assert detail in await rejected(introspecting(stub), "opaque-session-123")


async def test_max_token_lifetime_refuses_a_session_without_exp() -> None:
    """An introspected session without `exp` has no bounded lifetime: a revocation of its
    id, kept for `max_token_lifetime`, would be forgotten while the session still works."""
    with http_stub() as stub:
        stub.body = {"active": True, "sub": "clerk-7", "role": "clerk", "iat": time.time()}
        detail = await rejected(introspecting(stub, max_token_lifetime=3600), "opaque-1")
        assert "exp" in detail
        # Without the limit, `exp` stays optional for an introspected session.
        assert (await introspecting(stub).authenticate(request_with("opaque-1"))).user_id == (
            "clerk-7"
        )


async def test_introspection_unreachable_fails_closed() -> None:
    auth = TokenAuthenticator(
        AuthConfig(introspection_url="http://127.0.0.1:9/"),
        hmac_secret=SECRET,
        keys=None,
        introspector=Introspector("http://127.0.0.1:9/", cache_seconds=60, timeout=1),
        revocations=Revocations(),
    )
    assert "unreachable" in await rejected(auth, "opaque-session-123")


async def test_revoked_user_and_token_are_refused() -> None:
    revocations = Revocations()
    auth = TokenAuthenticator(
        AuthConfig(), hmac_secret=SECRET, keys=None, introspector=None, revocations=revocations
    )
    old = jwt.encode(claims(iat=int(time.time()) - 60, jti="a"), SECRET, algorithm="HS256")
    revocations.revoke_user("alice")
    assert "revoked" in await rejected(auth, old)
    fresh = jwt.encode(claims(iat=int(time.time()) + 1, jti="b"), SECRET, algorithm="HS256")
    assert (await auth.authenticate(request_with(fresh))).user_id == "alice"
    revocations.revoke_token("b", None)
    assert "revoked" in await rejected(auth, fresh)


def test_identity_is_frozen() -> None:
    identity = Identity(user_id="u")
    with pytest.raises(AttributeError):
        identity.user_id = "v"  # type: ignore[misc]
