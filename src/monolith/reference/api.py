"""The API reference: every route of the served OpenAPI schema (the app built from configs/cpu.yaml, with no
model loaded, so token-id bounds are the wire's own rather than a vocabulary's), its parameters, request body and
answers, and every schema's fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from monolith.api.app import create_app
from monolith.config import DEFAULT_CONFIG, load_settings
from monolith.reference.markdown import cell
from monolith.runtime import Runtime


async def _stay_unloaded(runtime: Runtime) -> None:
    """The schema needs the routes, not the model."""


def served_schema(config: Path = DEFAULT_CONFIG) -> dict[str, Any]:
    with TestClient(create_app(load_settings(config), loader=_stay_unloaded)) as client:
        response = client.get("/schema/openapi.json")
        response.raise_for_status()
        return response.json()


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " or ".join(_type(option) for option in schema[key])
    if "enum" in schema:
        return " / ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}{_bounds(schema, 'minItems', 'maxItems', ' items')}"
    shown = " or ".join(kind) if isinstance(kind, list) else str(kind)
    return shown + _bounds(schema, "minimum", "maximum") + _bounds(schema, "minLength", "maxLength", " characters")


def _bounds(schema: dict[str, Any], low: str, high: str, unit: str = "") -> str:
    """What the server checks of a value's size, as the schema says it: ` (1..20)`, ` (at most 4 items)`."""
    if low in schema and high in schema:
        return f" ({schema[low]}..{schema[high]}{unit})"
    if high in schema:
        return f" (at most {schema[high]}{unit})"
    if low in schema and schema[low] not in (0, 1):
        return f" (at least {schema[low]}{unit})"
    return ""


def _content(content: dict[str, Any]) -> str:
    return "; ".join(f"`{media}` {_type(body.get('schema', {}))}" for media, body in content.items())


def _operation(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    if operation.get("summary"):
        lines += [cell(operation["summary"]), ""]
    if operation.get("description"):
        lines += [operation["description"].strip(), ""]
    parameters = operation.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | required | type | description |", "| --- | --- | --- | --- | --- |"]
        for parameter in parameters:
            lines.append(
                f"| `{parameter['name']}` | {parameter['in']} | {parameter.get('required', False)} "
                f"| {_type(parameter.get('schema', {}))} | {cell(parameter.get('description', ''))} |"
            )
        lines.append("")
    if "requestBody" in operation:
        lines += [f"Body: {_content(operation['requestBody'].get('content', {}))}", ""]
    lines += ["| status | answer | body |", "| --- | --- | --- |"]
    for status, response in operation.get("responses", {}).items():
        lines.append(
            f"| {status} | {cell(response.get('description', ''))} | {_content(response.get('content', {}))} |"
        )
    return [*lines, ""]


def _component(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [cell(schema["description"]), ""]
    properties = schema.get("properties", {})
    if not properties:
        return [*lines, f"Type: {_type(schema)}", ""]
    required = set(schema.get("required", []))
    lines += ["| field | type | required | description |", "| --- | --- | --- | --- |"]
    for field, value in properties.items():
        lines.append(f"| `{field}` | {_type(value)} | {field in required} | {cell(value.get('description', ''))} |")
    return [*lines, ""]


def api_reference() -> str:
    schema = served_schema()
    lines = [
        "# API reference",
        "",
        "Generated from the served OpenAPI schema (`GET /schema/openapi.json`) by `make reference`; do not edit by",
        "hand. A running server serves the same schema, with its own configured bounds, at `/schema/openapi.json`",
        "(Swagger UI at `/schema/swagger`). Every error body is OpenAI's `{\"error\": {...}}` but on TGI's routes.",
        "",
        "## Routes",
        "",
    ]
    for path, item in sorted(schema["paths"].items()):  # sorted: the app's route order varies between runs
        for method, operation in item.items():
            lines += _operation(path, method, operation)
    lines += ["## Schemas", ""]
    for name, component in sorted(schema["components"]["schemas"].items()):
        lines += _component(name, component)
    return "\n".join(lines)
