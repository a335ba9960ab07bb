"""Access tokens (short-lived JWTs) and refresh tokens (opaque, stored hashed).

Access tokens are HS256 JWTs with ``typ: at+jwt`` in the header (RFC 9068), a ``kid`` naming the key that signed
them, and the claims ``sub``, ``role``, ``sid`` (the session, i.e. refresh-token family), ``jti``, ``iat``, ``exp``,
``iss`` and ``aud``. Verification pins the algorithm, so ``alg: none`` or a switched algorithm never verifies; a
refresh token can never pass as an access token because it is not a JWT at all.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec

from core_api.security.demo_keys import DemoKeyError, demo_key
from core_api.settings import Settings
from core_api.web.errors import Unauthorized

__all__ = [
    "ALGORITHM",
    "AccessClaims",
    "AccessTokenVerifier",
    "Keyring",
    "KeyringError",
    "decode_access_token",
    "hash_opaque_token",
    "issue_access_token",
    "load_keyring",
    "new_opaque_token",
]

ALGORITHM = "HS256"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the JWT "typ" of access tokens (RFC 9068), not a secret
_MIN_SECRET_BYTES = 32


class KeyringError(Exception):
    """The signing keys are missing or malformed."""


@dataclass(frozen=True)
class Keyring:
    """Keys by id: the first signs new tokens, every one verifies (old keys stay until their tokens expire)."""

    signing_kid: str
    keys: dict[str, bytes]


class AccessClaims(msgspec.Struct, frozen=True):
    sub: uuid.UUID
    role: str
    sid: uuid.UUID
    jti: uuid.UUID
    iat: int
    exp: int
    iss: str
    aud: str


def _parse_keys(spec: str) -> Keyring:
    keys: dict[str, bytes] = {}
    for item in spec.split(","):
        kid, sep, secret = item.strip().partition(":")
        if not sep or not kid or not secret:
            raise KeyringError("FLIGHTDESK_AUTH_JWT_KEYS: expected kid:secret pairs separated by commas")
        if len(secret.encode()) < _MIN_SECRET_BYTES:
            raise KeyringError(f"FLIGHTDESK_AUTH_JWT_KEYS: key {kid!r} is shorter than {_MIN_SECRET_BYTES} bytes")
        keys[kid] = secret.encode()
    return Keyring(signing_kid=next(iter(keys)), keys=keys)


def _new_demo_key() -> str:
    return f"demo:{base64.urlsafe_b64encode(secrets.token_bytes(48)).decode()}"


def load_keyring(settings: Settings) -> Keyring:
    if settings.auth.jwt_keys:
        return _parse_keys(settings.auth.jwt_keys)
    if settings.env == "production":
        raise KeyringError("FLIGHTDESK_AUTH_JWT_KEYS is required in production")
    try:
        spec = demo_key(settings.state_dir / "jwt.key", _new_demo_key, setting="FLIGHTDESK_AUTH_JWT_KEYS")
    except DemoKeyError as exc:
        raise KeyringError(str(exc)) from None
    return _parse_keys(spec)


def issue_access_token(
    keyring: Keyring, settings: Settings, *, user_id: uuid.UUID, role: str, session_id: uuid.UUID
) -> tuple[str, AccessClaims]:
    now = int(time.time())
    claims = AccessClaims(
        sub=user_id,
        role=role,
        sid=session_id,
        jti=uuid.uuid4(),
        iat=now,
        exp=now + settings.auth.access_ttl_seconds,
        iss=settings.auth.issuer,
        aud=settings.auth.audience,
    )
    payload: dict[str, Any] = msgspec.to_builtins(claims)
    token = jwt.encode(
        payload,
        keyring.keys[keyring.signing_kid],
        algorithm=ALGORITHM,
        headers={"kid": keyring.signing_kid, "typ": TOKEN_TYPE},
    )
    return token, claims


def decode_access_token(keyring: Keyring, settings: Settings, token: str) -> AccessClaims:
    """Verify signature, algorithm, type, issuer, audience and expiry; raise :class:`Unauthorized` otherwise."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != TOKEN_TYPE:
            raise jwt.InvalidTokenError("not an access token")
        key = keyring.keys.get(str(header.get("kid")))
        if key is None:
            raise jwt.InvalidTokenError("unknown key id")
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.auth.audience,
            issuer=settings.auth.issuer,
            options={"require": ["sub", "role", "sid", "jti", "iat", "exp", "iss", "aud"]},
        )
        return msgspec.convert(payload, AccessClaims)
    except (jwt.InvalidTokenError, msgspec.ValidationError) as exc:
        reason = "expired" if isinstance(exc, jwt.ExpiredSignatureError) else "invalid"
        raise Unauthorized(
            f"The access token is {reason}.",
            headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="token {reason}"'},
        ) from None


class AccessTokenVerifier:
    """:func:`decode_access_token` that remembers the tokens it verified, until each one's ``exp``.

    A client sends the same access token on every request of its lifetime, and verifying it again (parse, base64,
    HMAC, JSON, claims) is a tenth of a cheap request's CPU. What verification decides about a token depends only
    on the token, this process's keyring and settings, and the clock, so a verified token is checked again only
    against the clock. Revocation is not decided here: the caller still asks the database every time.
    """

    def __init__(self, keyring: Keyring, settings: Settings, *, size: int = 4096) -> None:
        self.keyring = keyring
        self.settings = settings
        self._size = size
        self._verified: dict[str, AccessClaims] = {}

    def verify(self, token: str) -> AccessClaims:
        claims = self._verified.get(token)
        if claims is not None and time.time() < claims.exp:  # PyJWT's own test: expired once exp <= now
            return claims
        claims = decode_access_token(self.keyring, self.settings, token)
        if len(self._verified) >= self._size:  # the oldest goes first (dicts keep insertion order)
            del self._verified[next(iter(self._verified))]
        self._verified[token] = claims
        return claims


def new_opaque_token(prefix: str) -> str:
    """A random bearer secret for refresh or reset tokens; only its hash is stored."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_opaque_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
