"""The OpenAPI document, derived once for the whole app from what the routes already declare.

Two plugins, installed by ``create_app``:

- :class:`StructSchemas` gives every msgspec Struct the JSON Schema msgspec itself generates for it — the same types
  decode the requests and encode the responses, so the document states exactly the patterns, bounds, required
  fields and ``additionalProperties: false`` (``forbid_unknown_fields``) that are enforced, nested ones included
  (Litestar's own Struct schemas drop the constraints of list items and write integer bounds as floats).
- :class:`OperationDocs` sees every route as it is registered and documents, per operation: the bearer security
  scheme (required unless ``opt`` says ``public``; optional on public routes, which still refuse a bad token; the
  ops token instead, optional, on ``opt`` ``ops`` routes, which loopback clients may call without it), and
  each error response the operation can really give, as ``application/problem+json`` with the :class:`Problem`
  schema — 401 always (a bad token; a missing one too unless public), 403 when ``opt`` restricts roles, 413 and 415
  when it takes a body, 422 when it takes a body or parameters, 429 unless exempt from rate limits, plus the domain
  errors the route declares with Litestar's ``raises=[NotFound, Conflict, ...]`` (:class:`AppError` subclasses,
  grouped by status, their codes listed). A route's own ``responses=`` win over the derived ones.

Routes therefore declare only what is theirs: ``operation_id``, ``tags``, ``status_code``, ``raises``, ``opt`` and a
docstring; everything else here follows from that.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import msgspec
import msgspec.inspect as mi
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, Operation, Parameter, Reference, Schema, SecurityScheme
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.plugins import InitPlugin, OpenAPISchemaPlugin
from litestar.plugins.base import ReceiveRoutePlugin
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition

from core_api.web.bodies import takes_body
from core_api.web.errors import PROBLEM_MEDIA_TYPE, AppError, Problem, http_code
from core_api.web.ratelimit import is_exempt_path

if TYPE_CHECKING:
    from litestar._kwargs import KwargsModel
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.config.app import AppConfig
    from litestar.handlers import HTTPRouteHandler
    from litestar.routes import BaseRoute

__all__ = ["BEARER_SCHEME", "OPS_SCHEME", "OperationDocs", "StructSchemas", "error_statuses"]

BEARER_SCHEME = "bearerAuth"
OPS_SCHEME = "opsToken"

# --- Struct schemas ------------------------------------------------------------------------------------------------

_SCHEMA_ATTRIBUTES: dict[str, str] = {}
for _field in dataclasses.fields(Schema):
    _alias = _field.metadata.get("alias") if _field.metadata else None
    _camel = re.sub(r"_([a-z])", lambda match: match[1].upper(), _field.name)
    _SCHEMA_ATTRIBUTES[_alias or _camel] = _field.name
_SCHEMA_ATTRIBUTES.pop("dataContainer", None)
_NESTED_ONE = {"items", "not", "contains", "propertyNames", "additionalProperties", "if", "then", "else"}
_NESTED_MAP = {"properties", "patternProperties", "dependentSchemas"}
_NESTED_LIST = {"anyOf", "oneOf", "allOf", "prefixItems"}
_FORMATS = {member.value for member in OpenAPIFormat}
_TYPES = {member.value for member in OpenAPIType}


def _inner_types(info: mi.Type) -> list[mi.Type]:
    """The types ``info`` is made of (fields, items, members, keys and values)."""
    if isinstance(info, mi.Metadata):
        return [info.type]
    if isinstance(info, mi.StructType):
        return [field.type for field in info.fields]
    if isinstance(info, mi.UnionType):
        return list(info.types)
    if isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return [info.item_type]
    if isinstance(info, mi.TupleType):
        return list(info.item_types)
    if isinstance(info, mi.DictType):
        return [info.key_type, info.value_type]
    return []


def _named_types(root: Any) -> dict[str, Any]:
    """The Structs and enums reachable from ``root``, under the names msgspec gives their schema components."""
    found: dict[Any, None] = {}
    pending = [mi.type_info(root)]
    while pending:
        info = pending.pop()
        if isinstance(info, mi.StructType | mi.EnumType):
            if info.cls in found:
                continue
            found[info.cls] = None
        pending.extend(_inner_types(info))

    def normalise(name: str) -> str:
        return re.sub(r"[^a-zA-Z0-9.\-_]", "_", name)

    def short(cls: Any) -> str:
        if hasattr(cls, "__origin__"):  # a generic Struct: Page[User]
            arguments = ", ".join(getattr(arg, "__name__", repr(arg)) for arg in cls.__args__)
            return normalise(f"{cls.__origin__.__name__}[{arguments}]")
        return normalise(cls.__name__)

    def full(cls: Any) -> str:
        cls = getattr(cls, "__origin__", cls)
        return normalise(f"{cls.__module__}.{cls.__qualname__}")

    # As msgspec names components: the class name, or the full import path when two classes share a name.
    counts: dict[str, int] = defaultdict(int)
    for cls in found:
        counts[short(cls)] += 1
    return {(short(cls) if counts[short(cls)] == 1 else full(cls)): cls for cls in found}


def _to_schema(node: Any, resolve: Callable[[str], Schema | Reference]) -> Any:
    """A msgspec JSON Schema node as Litestar ``Schema`` objects; ``$ref`` names go through ``resolve``."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        reference = resolve(node["$ref"])
        rest = {key: value for key, value in node.items() if key != "$ref"}
        return reference if not rest else Schema(all_of=[reference], **_attributes(rest, resolve))
    return Schema(**_attributes(node, resolve))


def _attributes(node: dict[str, Any], resolve: Callable[[str], Schema | Reference]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for key, value in node.items():
        name = _SCHEMA_ATTRIBUTES.get(key)
        if name is None:
            continue
        if key in _NESTED_ONE:
            value = _to_schema(value, resolve)
        elif key in _NESTED_MAP:
            value = {item: _to_schema(schema, resolve) for item, schema in value.items()}
        elif key in _NESTED_LIST:
            value = [_to_schema(schema, resolve) for schema in value]
        elif key == "type":
            value = (
                ([OpenAPIType(item) for item in value] if isinstance(value, list) else OpenAPIType(value))
                if (set(value) if isinstance(value, list) else {value}) <= _TYPES
                else value
            )
        elif key == "format" and value in _FORMATS:
            value = OpenAPIFormat(value)
        attributes[name] = value
    return attributes


class StructSchemas(OpenAPISchemaPlugin):
    """msgspec's own JSON Schema for every Struct (see the module docstring)."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return not field_definition.is_union and field_definition.is_subclass_of(msgspec.Struct)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        # The annotation keeps a generic Struct's arguments (Page[User]); type_ would be the bare Page.
        struct = (
            field_definition.annotation
            if hasattr(field_definition.annotation, "__origin__")
            else field_definition.type_
        )
        names = _named_types(struct)
        _, components = msgspec.json.schema_components([struct], ref_template="{name}")
        own_name = next(name for name, cls in names.items() if cls == struct)

        def resolve(name: str) -> Schema | Reference:
            return schema_creator.for_field_definition(FieldDefinition.from_annotation(names[name]))

        # Registered before its fields are converted, so that a Struct referring to itself finds its reference.
        schema = schema_creator.schema_registry.get_schema_for_field_definition(field_definition)
        for name, value in _attributes(components[own_name], resolve).items():
            setattr(schema, name, value)
        schema.type = OpenAPIType.OBJECT
        schema.title = own_name
        # msgspec dedents a docstring only when its first line is indented too; cleandoc handles both.
        doc = getattr(field_definition.type_, "__doc__", None)
        schema.description = inspect.cleandoc(doc) if doc else None
        return schema


# --- Operations ----------------------------------------------------------------------------------------------------

_DERIVED_DESCRIPTIONS = {
    401: "Authentication failed: the bearer token is missing, malformed, expired or revoked.",
    403: "Your role may not do this.",
    413: "The request body is larger than the server accepts.",
    415: "The request body is not application/json.",
    422: "A field or parameter is invalid; `errors` names each one and says what is allowed.",
    429: "Too many requests from this client; retry after `Retry-After` seconds.",
}
_PUBLIC_401 = "A bearer token was sent but is malformed, expired or revoked (this operation needs none)."
_OPS_401 = "Called from beyond loopback without the ops token (`Authorization: Bearer <FLIGHTDESK_OPS_TOKEN>`)."


def _litestar_error_body(response: Any) -> bool:
    """Whether ``response`` is one Litestar generated for an error (a ``{status_code, detail, extra}`` body)."""
    for media in (response.content or {}).values():
        schema = media.schema
        options = schema.one_of if isinstance(schema, Schema) and schema.one_of else [schema]
        if all(
            isinstance(option, Schema) and set(option.properties or ()) == {"status_code", "detail", "extra"}
            for option in options
        ):
            return True
    return False


@dataclasses.dataclass
class _ProblemOperation(Operation):
    """An operation without the error responses Litestar documents on its own.

    Litestar adds a ``400`` (its own validation error body) to every operation with a body or parameters, and a
    plain-JSON entry per ``raises`` class; this API answers neither (its errors are the problem+json responses
    :class:`OperationDocs` derived), so they are dropped.
    """

    def __post_init__(self) -> None:
        if self.responses:
            self.responses = {
                status: response
                for status, response in self.responses.items()
                if isinstance(response, Reference) or not _litestar_error_body(response)
            }
        for parameter in self.parameters or ():
            if isinstance(parameter, Parameter) and isinstance(parameter.schema, Schema):
                parameter.schema = _parameter_schema(parameter.schema)


def _is_null(schema: Any) -> bool:
    kind = schema.get("type") if isinstance(schema, dict) else getattr(schema, "type", None)
    return kind in (OpenAPIType.NULL, "null")


def _whole_bounds(schema: Schema) -> Schema:
    # Litestar writes the ge/le of an integer parameter as floats (1.0); an integer's bounds are integers.
    for name in ("minimum", "maximum", "exclusive_minimum", "exclusive_maximum"):
        value = getattr(schema, name)
        if isinstance(value, float) and value.is_integer():
            setattr(schema, name, int(value))
    return schema


def _parameter_schema(schema: Schema) -> Schema | Reference:
    """A parameter's schema as the wire has it: without the ``null`` alternative of an optional Python type (a query,
    path or header value is never JSON null; an absent one is what ``required: false`` says), integers bounded by
    integers.
    """
    if not schema.one_of:
        return _whole_bounds(schema)
    options = [
        _to_schema(option, _no_references) if isinstance(option, dict) else option
        for option in schema.one_of
        if not _is_null(option)
    ]
    if len(options) > 1:
        return dataclasses.replace(schema, one_of=options)
    [option] = options
    rest = {name: value for name, value in vars(schema).items() if value is not None and name != "one_of"}
    if isinstance(option, Reference):
        return Schema(all_of=[option], **rest) if rest else option
    return _whole_bounds(dataclasses.replace(option, **rest))


def _no_references(name: str) -> Schema | Reference:
    raise ValueError(f"a parameter's schema_extra refers to {name!r}; declare the type instead")


def _code_and_title(error: type[HTTPException]) -> tuple[str, str]:
    if issubclass(error, AppError):
        return error.code, error.title
    # Litestar's own exceptions are rendered as problems too, with the code of their status.
    return http_code(error.status_code)


def _codes(errors: list[type[HTTPException]]) -> str:
    named = dict.fromkeys(_code_and_title(error) for error in errors)
    return ", ".join(f"`{code}` ({title.lower()})" for code, title in named)


def error_statuses(handler: HTTPRouteHandler, kwargs_model: KwargsModel, path: str) -> dict[int, str]:
    """Status -> description of each error response ``handler`` (at ``path``) can give."""
    public = bool(handler.opt.get("public"))
    ops = bool(handler.opt.get("ops"))
    statuses: dict[int, str] = {401: _OPS_401 if ops else _PUBLIC_401 if public else _DERIVED_DESCRIPTIONS[401]}
    if roles := handler.opt.get("roles"):
        statuses[403] = f"{_DERIVED_DESCRIPTIONS[403]} Allowed: {', '.join(sorted(roles))}."
    if takes_body(handler):
        statuses[413] = _DERIVED_DESCRIPTIONS[413]
        statuses[415] = _DERIVED_DESCRIPTIONS[415]
    takes_parameters = (
        kwargs_model.expected_path_params
        or kwargs_model.expected_query_params
        or kwargs_model.expected_header_params
        or kwargs_model.expected_cookie_params
    )
    if takes_body(handler) or takes_parameters:
        statuses[422] = _DERIVED_DESCRIPTIONS[422]
    if not is_exempt_path(path):
        statuses[429] = _DERIVED_DESCRIPTIONS[429]
    declared: dict[int, list[type[HTTPException]]] = defaultdict(list)
    for error in handler.raises or ():
        declared[error.status_code].append(error)
    for status, errors in declared.items():
        derived = statuses.get(status)
        statuses[status] = (
            f"{derived} Also: {_codes(errors)}." if derived else f"{HTTPStatus(status).phrase}: {_codes(errors)}."
        )
    return dict(sorted(statuses.items()))


def _handlers(route: HTTPRoute) -> Iterator[tuple[HTTPRouteHandler, KwargsModel]]:
    seen: set[int] = set()
    for handler, kwargs_model in route.route_handler_map.values():
        if id(handler) not in seen:
            seen.add(id(handler))
            yield handler, kwargs_model


class OperationDocs(InitPlugin, ReceiveRoutePlugin):
    """Documents security and error responses of every operation (see the module docstring)."""

    __slots__ = ()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        config = app_config.openapi_config
        if config is not None:
            bearer = Components(
                security_schemes={
                    BEARER_SCHEME: SecurityScheme(
                        type="http",
                        scheme="bearer",
                        bearer_format="JWT",
                        description="The `access_token` of `POST /api/v1/auth/login` (or register, refresh).",
                    ),
                    OPS_SCHEME: SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="`FLIGHTDESK_OPS_TOKEN`: opens the operations endpoints to callers beyond "
                        "loopback (loopback clients need no token). No user's token, and it opens nothing else.",
                    ),
                }
            )
            existing = config.components if isinstance(config.components, list) else [config.components]
            config.components = [*existing, bearer]
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler, kwargs_model in _handlers(route):
            if not handler.resolve_include_in_schema():
                continue
            derived = {
                status: ResponseSpec(
                    data_container=Problem,
                    description=description,
                    media_type=PROBLEM_MEDIA_TYPE,
                    generate_examples=False,
                )
                for status, description in error_statuses(handler, kwargs_model, route.path_format).items()
            }
            handler.responses = {**derived, **(handler.responses or {})}
            handler.operation_class = _ProblemOperation
            bearer: dict[str, list[str]] = {BEARER_SCHEME: []}
            if handler.opt.get("ops"):
                handler.security = [{}, {OPS_SCHEME: []}]
            else:
                handler.security = [{}, bearer] if handler.opt.get("public") else [bearer]
