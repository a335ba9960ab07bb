"""Audit rows of the demo history, hashed in Python exactly as ``audit_row_hash`` (migration 0002) hashes them.

``audit_row_hash`` is sha256 over the previous row's hash and the text of a jsonb array of the row's fields. The
text form of jsonb is canonical — object keys sorted by length and then bytewise, ``", "`` and ``": "`` between
items, strings escaped as the server's ``escape_json`` does — so rendering the same array here gives the same
bytes, and the seed streams millions of finished rows through ``COPY`` instead of chaining them one statement at a
time. The renderer takes only what the seed writes (strings, integers, booleans, None, dicts and lists): floats
are refused, because jsonb prints numerics its own way. The seed re-hashes a sample of its rows on the server
before it commits, and ``verify_chain`` checks them all.

Times are integer microseconds since the Unix epoch, in UTC: the resolution of ``timestamptz``, without float
rounding.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "EMPTY_OBJECT",
    "SEED_USER_AGENT",
    "AuditChain",
    "copy_timestamp",
    "from_datetime",
    "jsonb_text",
    "to_datetime",
]

# What the seeded rows give as their user agent: the trail says where they came from.
SEED_USER_AGENT = "flightdesk-seed"
EMPTY_OBJECT = "{}"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS_PER_DAY = 86_400_000_000
_NULL = "\\N"
# escape_json of PostgreSQL: the two-character escapes, then \u00XX for the other control characters.
_JSON_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t"}
_JSON_ESCAPES.update({code: f"\\u{code:04x}" for code in range(0x20) if code not in _JSON_ESCAPES})
_NEEDS_JSON_ESCAPE = re.compile(r'["\\\x00-\x1f]')
# COPY's text format gives backslash, tab, newline and carriage return a meaning of their own.
_COPY_ESCAPES = {ord("\\"): "\\\\", 9: "\\t", 10: "\\n", 13: "\\r"}
_NEEDS_COPY_ESCAPE = re.compile(r"[\\\t\n\r]")


def from_datetime(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def to_datetime(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


_day_texts: dict[int, str] = {}
# "HH:MM:SS" of every second of a day: formatting millions of timestamps is then two divisions and a lookup.
_CLOCK_TEXTS = tuple(f"{hour:02d}:{minute:02d}:{second:02d}" for hour in range(24) for minute in range(60)
                     for second in range(60))  # fmt: skip


def _split(micros: int) -> tuple[str, str]:
    """``("YYYY-MM-DD", "HH:MM:SS.ffffff")`` in UTC; the dates are cached, since millions of rows share few days."""
    day, rest = divmod(micros, _MICROS_PER_DAY)
    date_text = _day_texts.get(day)
    if date_text is None:
        date_text = _day_texts.setdefault(day, (_EPOCH + timedelta(days=day)).date().isoformat())
    second, fraction = divmod(rest, 1_000_000)
    return date_text, f"{_CLOCK_TEXTS[second]}.{fraction:06d}"


def copy_timestamp(micros: int | None) -> str:
    """A ``timestamptz`` field of COPY's text format (``\\N`` for None)."""
    if micros is None:
        return _NULL
    date_text, clock = _split(micros)
    return f"{date_text} {clock}+00"


def _json_string(text: str) -> str:
    if _NEEDS_JSON_ESCAPE.search(text):
        text = text.translate(_JSON_ESCAPES)
    return f'"{text}"'


_vocabulary: dict[str, str] = {}


def _json_word(text: str) -> str:
    """:func:`_json_string` of one of the few event types, roles and entity types, remembered."""
    quoted = _vocabulary.get(text)
    if quoted is None:
        quoted = _vocabulary.setdefault(text, _json_string(text))
    return quoted


def _key_order(item: tuple[str, Any]) -> tuple[int, bytes]:
    encoded = item[0].encode()
    return len(encoded), encoded


def jsonb_text(value: Any) -> str:
    """``value`` as PostgreSQL prints it after a round trip through jsonb."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        items = sorted(value.items(), key=_key_order)
        return "{" + ", ".join(f"{_json_string(key)}: {jsonb_text(item)}" for key, item in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(jsonb_text(item) for item in value) + "]"
    raise TypeError(f"the seed's audit rows hold no {type(value).__name__} values")


def _copy_text(text: str) -> str:
    return text.translate(_COPY_ESCAPES) if _NEEDS_COPY_ESCAPE.search(text) else text


class AuditChain:
    """Chains rows after the chain's end (``last_hash`` at ``next_position - 1``; None when the chain is empty).

    Each :meth:`append` returns the row as one line of ``COPY audit_logs (COPY_COLUMNS)`` in text format, with the
    next id of a block the caller reserved (the seed holds the table, so nobody else draws ids meanwhile); its
    ``xact_id`` is the seed's transaction, by the column's default. :meth:`take_seal` closes the rows appended since
    the last call into one ``audit_seals`` line, as ``audit_seal`` (migration 0011) would have written it. Rows must
    be appended in chain order; the seed has no IP address nor request id to record.
    """

    COPY_COLUMNS = (
        "id, occurred_at, event_type, actor_id, actor_role, ip, user_agent, request_id, entity_type, entity_id, "
        "before, after, metadata"
    )
    SEAL_COLUMNS = "seal_no, first_position, audit_ids, hashes, prev_hash, last_xact_id, last_id, horizon"
    PERSONAL_COLUMNS = 'audit_id, subjects, salt, "values"'

    def __init__(
        self, *, next_id: int, next_position: int, next_seal_no: int, last_hash: bytes | None, xact_id: str
    ) -> None:
        self.last_id = next_id - 1
        self.last_hash = last_hash
        self.xact_id = xact_id
        self.appended = 0
        self.first_position = next_position
        self._next_position = next_position
        self._next_seal_no = next_seal_no
        self._seal_prev = last_hash
        self._seal_ids: list[str] = []
        self._seal_hashes: list[bytes] = []

    def append(
        self,
        occurred_at: int,
        event_type: str,
        actor_id: str | None,
        actor_role: str | None,
        entity: tuple[str, str],
        *,
        before: str | None = None,
        after: str | None = None,
        metadata: str = EMPTY_OBJECT,
    ) -> str:
        """One row; ``before``, ``after`` and ``metadata`` are jsonb texts (see :func:`jsonb_text`)."""
        row_id = self.last_id + 1
        date_text, clock = _split(occurred_at)
        entity_type, entity_id = entity
        actor = "null" if actor_id is None else _json_string(actor_id)
        role = "null" if actor_role is None else _json_word(actor_role)
        canonical = (
            f'[{row_id}, "{date_text}T{clock}Z", {_json_word(event_type)}, {actor}, {role}, null, '
            f'"{SEED_USER_AGENT}", null, {_json_word(entity_type)}, {_json_string(entity_id)}, '
            f"{before or 'null'}, {after or 'null'}, {metadata}]"
        )
        digest = hashlib.sha256((self.last_hash or b"") + canonical.encode()).digest()
        self.last_id, self.last_hash = row_id, digest
        self.appended += 1
        self._seal_ids.append(str(row_id))
        self._seal_hashes.append(digest)
        if _NEEDS_COPY_ESCAPE.search(f"{entity_id}{before or ''}{after or ''}{metadata}"):
            # Rare (a backslash, as in an escaped quote, or a control character): escape the free-form fields.
            entity_id, metadata = _copy_text(entity_id), _copy_text(metadata)
            before, after = before and _copy_text(before), after and _copy_text(after)
        return (
            f"{row_id}\t{date_text} {clock}+00\t{event_type}\t{actor_id or _NULL}\t{actor_role or _NULL}\t{_NULL}\t"
            f"{SEED_USER_AGENT}\t{_NULL}\t{entity_type}\t{entity_id}\t{before or _NULL}\t{after or _NULL}\t"
            f"{metadata}\n"
        )

    def personal_line(self, salt: bytes, values: dict[str, Any], subjects: tuple[str, ...]) -> str:
        """The ``COPY audit_personal_data (PERSONAL_COLUMNS)`` line of the row appended last."""
        text = _copy_text(jsonb_text(values))
        return f"{self.last_id}\t{{{','.join(subjects)}}}\t{_bytea(salt)}\t{text}\n"

    def take_seal(self) -> str | None:
        """The ``COPY audit_seals (SEAL_COLUMNS)`` line sealing the rows appended since the last call, if any."""
        if not self._seal_ids:
            return None
        line = (
            f"{self._next_seal_no}\t{self._next_position}\t{{{','.join(self._seal_ids)}}}\t"
            f"{_bytea(b''.join(self._seal_hashes))}\t{_bytea(self._seal_prev)}\t{self.xact_id}\t{self.last_id}\t"
            f"{_NULL}\n"
        )
        self._next_seal_no += 1
        self._next_position += len(self._seal_ids)
        self._seal_prev = self.last_hash
        self._seal_ids, self._seal_hashes = [], []
        return line


def _bytea(value: bytes | None) -> str:
    # Hex bytea input is \x…; COPY's text format needs the backslash doubled.
    return _NULL if value is None else f"\\\\x{value.hex()}"
