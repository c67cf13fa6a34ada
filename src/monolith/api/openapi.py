"""The served OpenAPI schema, made truthful.

- Every error a route can answer is documented with the body it really has, OpenAI's `{"error": {...}}`
  (Litestar would document its own `{status_code, detail}` for a 400 and nothing else): `errors(...)` per route.
- Request bodies are described by msgspec's own JSON schema of the wire types, which is exactly what msgspec
  checks (Litestar's rendering drops constraints such as `gt=0` on `top_p`), with the configured
  `engine.max_tokens_limit` as the bound of every max-tokens field.
- A route that can stream documents `text/event-stream` beside JSON; an async submit's body has `stream` false.
- Token ids are bounded by the served model's vocabulary, and a wire type's `__schema_rules__` (what JSON
  Schema can say and a type cannot: "prompt or messages", "a tool message names its call") join its schema.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import msgspec
from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.routes import HTTPRoute

from monolith.config import Settings
from monolith.protocol.common import TOKEN_ID_MAX
from monolith.protocol.errors import ErrorResponse
from monolith.protocol.tgi import TgiRequest

WHY = {
    400: "A field is missing, malformed or cannot be honoured; `error.param` names it",
    401: "An API key is missing or wrong (when the server has keys)",
    404: "No such model, job, file or batch (or it belongs to another key)",
    409: "The request conflicts with the resource's state (a reused Idempotency-Key, a file a batch reads)",
    413: "The body is larger than the server accepts",
    422: "TGI's routes: a field is missing, malformed or cannot be honoured (TGI's validation error)",
    429: "The server is full (Retry-After says when to come back), or the key's quota is used up",
    503: "The server is loading, draining or failed to start, or its job store is down (Retry-After)",
    504: "The request ran past its deadline (X-Request-Timeout or the server's default)",
    507: "The server's disk is full; nothing was kept",
}
# What every route behind the services answers besides its own errors.
SERVED = (400, 401, 503)
GENERATION = (*SERVED, 404, 413, 429, 504)
MAX_TOKENS_FIELDS = {"max_tokens", "max_completion_tokens", "max_output_tokens", "max_new_tokens"}
# OpenAPI 3.1 describes a server-sent stream by the schema of one event.
SSE_EVENT = {
    "type": "object",
    "description": "One server-sent event: `data` is a JSON chunk of the route's stream, an error body, or [DONE]",
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
    "required": ["data"],
}
EVENT_STREAM = {"text/event-stream": {"schema": SSE_EVENT}}


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """Litestar's per-route responses: each status with OpenAI's error body."""
    return {
        code: ResponseSpec(data_container=ErrorResponse, description=WHY[code], generate_examples=False)
        for code in sorted(set(codes))
    }


def struct_body(handler: HTTPRouteHandler) -> type[msgspec.Struct] | None:
    """The msgspec Struct a route takes as its JSON body, if it takes one (not a multipart form)."""
    data = handler.parsed_fn_signature.parameters.get("data")
    kind = data.annotation if data is not None else None
    return kind if isinstance(kind, type) and issubclass(kind, msgspec.Struct) else None


def body_types(request: Request) -> Iterator[tuple[str, str, type, bool]]:
    """(path, method, body type, streams) of each route whose JSON body is a msgspec Struct."""
    for route in request.app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            kind = struct_body(handler)
            if kind is not None:
                for method in handler.http_methods:
                    yield route.path_format, method.lower(), kind, "stream" in kind.__struct_fields__


def capped(node: Any, limit: int) -> None:
    """The configured output-token limit as the maximum of an integer schema (or of its integer branch)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            node["maximum"] = min(node.get("maximum", limit), limit)
        for branch in node.get("anyOf", []):
            capped(branch, limit)


def token_ids_within(node: Any, vocabulary: int) -> None:
    """Every token-id schema (the wire's TOKEN_ID_MAX bound) lowered to the model's vocabulary."""
    if isinstance(node, dict):
        if node.get("type") == "integer" and node.get("maximum") == TOKEN_ID_MAX:
            node["maximum"] = vocabulary - 1
        for value in node.values():
            token_ids_within(value, vocabulary)
    elif isinstance(node, list):
        for value in node:
            token_ids_within(value, vocabulary)


def wire_types(kinds: list[type]) -> Iterator[type]:
    """The body types and every Struct they contain (whose rules join their components)."""
    seen: set[type] = set()
    todo = list(kinds)
    while todo:
        kind = todo.pop()
        if kind in seen:
            continue
        seen.add(kind)
        yield kind
        for info in msgspec.inspect.type_info(kind).fields:  # type: ignore[attr-defined]
            todo.extend(structs_in(info.type))


def structs_in(info: Any) -> Iterator[type]:
    if isinstance(info, msgspec.inspect.StructType):
        yield info.cls
        return
    for name in ("types", "item_type", "value_type"):
        inner = getattr(info, name, None)
        for each in inner if isinstance(inner, tuple) else [inner] if inner is not None else []:
            yield from structs_in(each)


def truthful(schema: dict[str, Any], request: Request, settings: Settings, vocabulary: int | None) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    routes = list(body_types(request))
    kinds = [kind for _, _, kind, _ in routes]
    bodies, components = msgspec.json.schema_components(kinds, ref_template="#/components/schemas/{name}")
    for kind in wire_types(kinds):
        components[kind.__name__].update(getattr(kind, "__schema_rules__", {}))
    for component in components.values():
        for name, field in component.get("properties", {}).items():
            if name in MAX_TOKENS_FIELDS:
                capped(field, settings.engine.max_tokens_limit)
    if vocabulary is not None:
        token_ids_within(components, vocabulary)
    out.setdefault("components", {}).setdefault("schemas", {}).update(components)
    for (path, method, kind, streams), body in zip(routes, bodies, strict=True):
        operation = out["paths"][path][method]
        if streams and "200" in operation["responses"]:
            operation["responses"]["200"].setdefault("content", {}).update(EVENT_STREAM)
        elif streams:  # an async submit (202): the answer is polled or called back, never streamed
            body = {"allOf": [body, {"properties": {"stream": {"enum": [False]}}}]}
        operation["requestBody"]["content"]["application/json"]["schema"] = body
        if kind is TgiRequest and "422" in operation["responses"]:  # TGI's routes say 422 where Litestar says 400
            operation["responses"].pop("400", None)
    for path, item in out.get("paths", {}).items():
        if path.endswith("/invocations"):
            either_error_shape(item["post"])
    return out


def either_error_shape(operation: dict[str, Any]) -> None:
    """SageMaker's /invocations answers a TGI payload's errors in TGI's shape and every other body's in OpenAI's:
    a 400 is OpenAI's (TGI says 422), a 422 TGI's, any other status either."""
    either = {"oneOf": [{"$ref": "#/components/schemas/ErrorResponse"}, {"$ref": "#/components/schemas/TgiError"}]}
    for status, response in operation["responses"].items():
        if status.startswith(("4", "5")) and status not in ("400", "422"):
            response["content"]["application/json"]["schema"] = either


class TruthfulJsonSchema(JsonRenderPlugin):
    """/schema/openapi.json, made truthful on request (the routes are known by then)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._rendered: bytes | None = None

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        """Kept once the model is loaded (its vocabulary bounds token ids); rendered afresh until then."""
        if self._rendered is not None:
            return self._rendered
        services = request.app.state.runtime.services
        vocabulary = services.generator.vocabulary_size if services is not None else None
        rendered = self.render_json(request, truthful(openapi_schema, request, self._settings, vocabulary))
        if vocabulary is not None:
            self._rendered = rendered
        return rendered
