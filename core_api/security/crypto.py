"""Field encryption at rest: AES-256-GCM with versioned keys, so keys rotate without downtime.

A ciphertext is ``version byte || 12-byte nonce || AES-GCM(ciphertext + tag)``; the version names the key that
sealed it. New values are sealed with the first key of ``FLIGHTDESK_CRYPTO_KEYS``; every listed key still opens
what it sealed, so rotation is: prepend a new key, re-encrypt at leisure, drop the old key. Unset, outside
production, a random demo key is kept in ``<state_dir>/crypto.key`` (shared by every local process).

The associated data binds a value to where it is stored (``passengers.document:<booking id>``), so a ciphertext
copied into another row or column does not open.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core_api.security.demo_keys import DemoKeyError, demo_key

if TYPE_CHECKING:
    from core_api.settings import Settings

__all__ = ["Cipher", "CryptoError", "load_cipher"]

_NONCE_BYTES = 12


class CryptoError(Exception):
    """A key specification is malformed, or a value does not open with any known key."""


@dataclass(frozen=True)
class Cipher:
    """Seals and opens values with the versioned keys (version → 32-byte key); ``current`` seals."""

    current: int
    keys: dict[int, AESGCM]

    def seal(self, plaintext: str, *, context: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self.keys[self.current].encrypt(nonce, plaintext.encode(), context.encode())
        return bytes([self.current]) + nonce + sealed

    def seal_text(self, plaintext: str, *, context: str) -> str:
        """:meth:`seal` as URL-safe base64, for a sealed value inside JSON (an outbox payload, a mail's context)."""
        return base64.urlsafe_b64encode(self.seal(plaintext, context=context)).decode()

    def open_text(self, sealed: str, *, context: str) -> str:
        try:
            ciphertext = base64.urlsafe_b64decode(sealed.encode())
        except (binascii.Error, ValueError):
            raise CryptoError("not a sealed value") from None
        return self.open(ciphertext, context=context)

    def open(self, ciphertext: bytes, *, context: str) -> str:
        if len(ciphertext) < 1 + _NONCE_BYTES + 16:
            raise CryptoError("ciphertext too short")
        key = self.keys.get(ciphertext[0])
        if key is None:
            raise CryptoError(f"no key of version {ciphertext[0]}")
        nonce, sealed = ciphertext[1 : 1 + _NONCE_BYTES], ciphertext[1 + _NONCE_BYTES :]
        try:
            return key.decrypt(nonce, sealed, context.encode()).decode()
        except InvalidTag:
            raise CryptoError("value does not open with its key (tampered, or stored elsewhere)") from None


def parse_keys(spec: str) -> Cipher:
    """``version:base64key,…`` (versions 1-255, keys of 32 bytes); the first seals."""
    keys: dict[int, AESGCM] = {}
    current: int | None = None
    for item in spec.split(","):
        version_text, sep, encoded = item.strip().partition(":")
        if not sep or not version_text.isdigit() or not 1 <= int(version_text) <= 255:
            raise CryptoError("FLIGHTDESK_CRYPTO_KEYS: expected version:base64key pairs, versions 1-255")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise CryptoError(f"FLIGHTDESK_CRYPTO_KEYS: key {version_text} is not base64") from None
        if len(raw) != 32:
            raise CryptoError(f"FLIGHTDESK_CRYPTO_KEYS: key {version_text} is not 32 bytes (AES-256)")
        version = int(version_text)
        keys[version] = AESGCM(raw)
        current = version if current is None else current
    assert current is not None
    return Cipher(current=current, keys=keys)


def _new_demo_keys() -> str:
    return f"1:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def load_cipher(settings: Settings) -> Cipher:
    if settings.crypto_keys:
        return parse_keys(settings.crypto_keys)
    if settings.env == "production":
        raise CryptoError("FLIGHTDESK_CRYPTO_KEYS is required in production")
    try:
        spec = demo_key(settings.state_dir / "crypto.key", _new_demo_keys, setting="FLIGHTDESK_CRYPTO_KEYS")
    except DemoKeyError as exc:
        raise CryptoError(str(exc)) from None
    return parse_keys(spec)
