"""Secrets out, personal data aside: how a change's before/after/metadata become an audit row.

Secrets (passwords, tokens, card data, travel documents …) are replaced by ``[REDACTED]`` and never stored.
Personal data (emails, names, phones, dates of birth …, and the actor's IP address and user agent) is stored apart,
in ``audit_personal_data``: the chained row holds ``pii:<reference>`` where the value was, the reference being the
first 128 bits of sha256(salt ‖ the value's JSON), with a random salt per row kept beside the values. Erasing a
person deletes their personal-data rows; the chained rows do not change, so the chain still verifies, and without
the salt a reference cannot be matched against a guessed value. While the data is kept, reading a row puts the
values back, checking each against its reference.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec

__all__ = ["ERASED", "REDACTED", "PersonalData", "inflate", "redact", "split_personal", "split_value"]

REDACTED = "[REDACTED]"
ERASED = "[ERASED]"
REFERENCE_PREFIX = "pii:"
_REFERENCE_HEX = 32

# Keys whose values never reach the audit trail.
_SECRET_KEY = re.compile(
    r"password|secret|token|authorization|cookie|card|cvc|cvv|iban|document|api_key|private_key", re.IGNORECASE
)
# Keys whose values are about a person: kept apart and erasable.
_PERSONAL_KEY = re.compile(
    r"e?mail|phone|(?:^|_)(?:first|last|full|middle|given|family|passenger)?_?names?(?:$|_)|birth|dob(?:$|_)|address"
    r"|passport|ip_address",
    re.IGNORECASE,
)
# Top-level keys naming the users a change is about (beside the actor and a user entity).
_SUBJECT_KEYS = ("customer_id", "agent_id", "user_id")

_encode = msgspec.json.Encoder(order="sorted").encode


def redact(value: Any) -> Any:
    """A copy of ``value`` (builtins, Structs) with the values of secret-looking keys replaced."""
    value = msgspec.to_builtins(value)
    if isinstance(value, dict):
        return {key: REDACTED if _SECRET_KEY.search(str(key)) else redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def reference(salt: bytes, value: Any) -> str:
    return REFERENCE_PREFIX + hashlib.sha256(salt + _encode(value)).hexdigest()[:_REFERENCE_HEX]


@dataclass(frozen=True, slots=True)
class PersonalData:
    """What a row keeps apart: the values behind its references, the actor's address, whom it is about."""

    salt: bytes
    values: dict[str, Any]
    ip: str | None
    user_agent: str | None
    subjects: list[UUID]

    def params(self) -> dict[str, Any]:
        return {
            "salt": self.salt,
            "values": msgspec.json.encode(self.values).decode(),
            "ip": self.ip,
            "user_agent": self.user_agent,
            "subjects": self.subjects,
        }


class _Splitter:
    def __init__(self, salt: bytes) -> None:
        self.salt = salt
        self.values: dict[str, Any] = {}

    def walk(self, value: Any) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if _SECRET_KEY.search(str(key)):
                    out[key] = REDACTED
                elif item is not None and _PERSONAL_KEY.search(str(key)):
                    ref = reference(self.salt, item)
                    self.values[ref] = item
                    out[key] = ref
                else:
                    out[key] = self.walk(item)
            return out
        if isinstance(value, list):
            return [self.walk(item) for item in value]
        return value


def split_value(value: Any, salt: bytes) -> tuple[Any, dict[str, Any]]:
    """``value`` (builtins) with its secrets redacted and personal values referenced, and those values by reference."""
    splitter = _Splitter(salt)
    return splitter.walk(value), splitter.values


def _as_uuid(value: Any) -> UUID | None:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            return None
    return None


def split_personal(
    parts: Mapping[str, Any],
    *,
    actor_id: UUID | None,
    ip: str | None,
    user_agent: str | None,
    entity: tuple[str | None, str | None],
    salt: bytes | None = None,
) -> tuple[dict[str, str | None], PersonalData | None]:
    """``parts`` (``before``, ``after``, ``metadata``) as the JSON texts of the chained row, and the personal data
    to keep apart (``None`` when there is none).
    """
    splitter = _Splitter(salt or secrets.token_bytes(16))
    texts: dict[str, str | None] = {}
    subjects: list[UUID] = [actor_id] if actor_id else []
    if entity[0] == "user" and (entity_user := _as_uuid(entity[1])):
        subjects.append(entity_user)
    for name, value in parts.items():
        if value is None:
            texts[name] = None
            continue
        builtins = splitter.walk(msgspec.to_builtins(value))
        if isinstance(builtins, dict):
            subjects += [found for key in _SUBJECT_KEYS if (found := _as_uuid(builtins.get(key)))]
        texts[name] = msgspec.json.encode(builtins).decode()
    if not splitter.values and ip is None and user_agent is None:
        return texts, None
    unique = list(dict.fromkeys(subjects))
    return texts, PersonalData(splitter.salt, splitter.values, ip, user_agent, unique)


def inflate(value: Any, salt: bytes | None, values: Mapping[str, Any] | None) -> Any:
    """``value`` with its references replaced by the kept values (``[ERASED]`` once they are gone)."""
    if isinstance(value, dict):
        return {key: inflate(item, salt, values) for key, item in value.items()}
    if isinstance(value, list):
        return [inflate(item, salt, values) for item in value]
    if isinstance(value, str) and value.startswith(REFERENCE_PREFIX) and len(value) == 4 + _REFERENCE_HEX:
        if values is None or salt is None or value not in values:
            return ERASED
        kept = values[value]
        # A kept value that no longer matches its reference was changed behind the trail's back.
        return kept if reference(salt, kept) == value else "[ALTERED]"
    return value
