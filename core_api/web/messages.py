"""What a refused value is told: msgspec's validation messages turned into ones a person can act on.

msgspec says ``Expected `str` matching regex '^[^\\W\\d_](?:…'`` for a name and ``Invalid enum value 'X'`` for a
role. The types already say what they allow — a pattern-constrained type carries ``msgspec.Meta(description=…)``
("a row number and seat letter, e.g. 14C"), an enum its members — so the message is built from the type found at
the failing field's path: bodies through :func:`explain_at`, query and path parameters (whose
``QueryParameter(description=…)`` plays the same part) through :func:`explain`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec
import msgspec.inspect as mi
from litestar.params import BodyKwarg, ParameterKwarg

if TYPE_CHECKING:
    from litestar.handlers.base import BaseRouteHandler

__all__ = ["FieldPath", "explain", "explain_at", "explain_parameter", "msgspec_failure", "render_path"]

FieldPath = list[str | int]

# msgspec reports where a value failed as "... - at `$.passengers[0].first_name`" (or `$[0]`, `$` for the root).
_LOCATION = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_PATH_PART = re.compile(r"\.(?P<name>[^.\[]+)|\[(?P<index>\d+)\]|\[(?P<key>[^\]]*)\]")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_PATTERN = re.compile(r"^Expected `str` matching regex ", re.DOTALL)
_ENUM = re.compile(r"^Invalid enum value ")
_LENGTH = re.compile(r"^Expected `(?P<kind>str|array|object)` of length (?P<op>>=|<=) (?P<bound>\d+)$")
_BOUND = re.compile(r"^Expected `(?:int|float)` (?P<op>>=|<=|>|<) (?P<bound>-?[\d.e+]+)$")
_UNITS = {"str": "character", "array": "item", "object": "entry"}
_PLAIN = {
    "Invalid UUID": "must be a UUID",
    "Invalid RFC3339 encoded date": "must be a date as YYYY-MM-DD",
    "Invalid RFC3339 encoded datetime": "must be a date and time as RFC 3339, e.g. 2026-05-01T14:30:00Z",
}
_WRONG_TYPE = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")
_TYPE_NAMES = {
    "int": "an integer",
    "str": "a string",
    "bool": "true or false",
    "float": "a number",
    "int | float": "a number",
    "object": "a JSON object",
    "array": "a JSON array",
    "datetime": "a date and time as RFC 3339",
    "date": "a date as YYYY-MM-DD",
    "uuid": "a UUID",
}
_GOT = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
}
_COMPARISONS = {">=": "at least", "<=": "at most", ">": "greater than", "<": "less than"}


def render_path(path: FieldPath) -> str:
    """``["passengers", 0, "last_name"]`` as ``passengers[0].last_name``; the empty path is ``body``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "body"


def msgspec_failure(error: msgspec.ValidationError) -> tuple[FieldPath, str]:
    """The field path and bare message of a msgspec validation error (a missing or unknown field is named in the
    message; it becomes part of the path).
    """
    match = _LOCATION.match(str(error))
    assert match is not None  # the pattern matches any text
    message, location = match["message"], match["path"] or ""
    path: FieldPath = []
    for part in _PATH_PART.finditer(location):
        if part["index"] is not None:
            path.append(int(part["index"]))
        else:
            path.append(part["name"] if part["name"] is not None else part["key"])
    for named in (_MISSING.match(message), _UNKNOWN.match(message)):
        if named:
            path.append(named["name"])
    return path, message


def _unwrap(info: mi.Type) -> tuple[mi.Type, str | None]:
    """The type under any ``Meta`` wrappers, and the innermost description they give."""
    description = None
    while isinstance(info, mi.Metadata):
        description = (info.extra_json_schema or {}).get("description", description)
        info = info.type
    return info, description


def _members(info: mi.Type) -> list[mi.Type]:
    info, _ = _unwrap(info)
    if isinstance(info, mi.UnionType):
        return [member for member in info.types if not isinstance(member, mi.NoneType)]
    return [info]


def _step(info: mi.Type, part: str | int) -> mi.Type | None:
    for member in _members(info):
        bare, _ = _unwrap(member)
        if isinstance(part, int) and isinstance(bare, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            return bare.item_type
        if isinstance(part, str) and isinstance(bare, mi.StructType):
            field = next((field for field in bare.fields if field.encode_name == part), None)
            if field is not None:
                return field.type
        if isinstance(bare, mi.DictType):
            return bare.value_type
    return None


def _fields_of(info: mi.Type | None) -> list[str]:
    for member in _members(info) if info is not None else []:
        bare, _ = _unwrap(member)
        if isinstance(bare, mi.StructType):
            return [field.encode_name for field in bare.fields]
    return []


def explain(message: str, *, description: str | None = None, choices: list[str] | None = None) -> str:
    """``message`` in words a person can act on, given what the field's declaration says it allows."""
    if _PATTERN.match(message):
        return f"must be {description[0].lower()}{description[1:]}" if description else "has the wrong format"
    if _ENUM.match(message) and choices:
        return f"must be one of {', '.join(choices)}"
    if _MISSING.match(message):
        return "required"
    if length := _LENGTH.match(message):
        unit = _UNITS[length["kind"]] if length["bound"] == "1" else f"{_UNITS[length['kind']]}s".replace("ys", "ies")
        return f"must have {_COMPARISONS[length['op']]} {length['bound']} {unit}"
    if bound := _BOUND.match(message):
        return f"must be {_COMPARISONS[bound['op']]} {bound['bound']}"
    if wrong := _WRONG_TYPE.match(message):
        bare = wrong["expected"].removesuffix(" | null")  # an optional value: null is allowed too, but unlikely meant
        expected = _TYPE_NAMES.get(bare, f"`{bare}`")
        return f"must be {expected}, not {_GOT.get(wrong['got'], wrong['got'])}"
    return _PLAIN.get(message, message)


def explain_at(root: Any, path: FieldPath, message: str, *, description: str | None = None) -> str:
    """:func:`explain` for the field at ``path`` of the type ``root`` (a body type); ``description`` stands in for
    one the type lacks.
    """
    try:
        info: mi.Type | None = mi.type_info(root)
    except TypeError:  # not a type msgspec knows
        return explain(message, description=description)
    parent = None
    for part in path:
        if info is None:
            break
        parent, info = info, _step(info, part)
    if _UNKNOWN.match(message):
        allowed = _fields_of(parent)
        return f"unknown field; allowed: {', '.join(allowed)}" if allowed else "unknown field"
    choices = None
    for member in _members(info) if info is not None else []:
        bare, described = _unwrap(member)
        description = description or described
        if isinstance(bare, mi.EnumType):
            choices = [str(option.value) for option in bare.cls]
        elif isinstance(bare, mi.LiteralType):
            choices = [str(value) for value in bare.values]
    if info is not None and description is None:
        _, description = _unwrap(info)
    return explain(message, description=description, choices=choices)


def explain_parameter(handler: BaseRouteHandler, key: str, message: str) -> tuple[str, str]:
    """The wire name (``date``, ``Idempotency-Key``) and message of a parameter that Litestar refused under its
    Python name (``departure_date``).
    """
    field = handler.parsed_fn_signature.parameters.get(key)
    if field is None:
        return key, explain(message)
    kwarg = field.kwarg_definition
    name = kwarg.name if isinstance(kwarg, ParameterKwarg) and kwarg.name else key
    description = kwarg.description if isinstance(kwarg, ParameterKwarg | BodyKwarg) else None
    return name, explain_at(field.annotation, [], message, description=description)
