"""The OpenAI error body every route, stream, job and batch line answers with, rendered from a domain error by
`error_response` alone, and how a field is named in it."""

from __future__ import annotations

import re

import msgspec

from monolith.errors import MonolithError

_FIELD_PATH = re.compile(r"(?:at|in) `\$\.?([^`]*)`")  # "- at `$.a.b`", or "- at `key` in `$.a`" (a map key)
_NAMED_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]*)`")


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(msgspec.Struct):
    error: ErrorBody


def error_response(exc: MonolithError) -> ErrorResponse:
    """The one error body: every route, stream, async job, batch line and the 401 render an error through this."""
    return ErrorResponse(ErrorBody(exc.message, exc.error_type, exc.param, exc.code))


def field_of(message: str) -> str | None:
    """msgspec says "... - at `$.messages[0].role`" or "... field `query`": the field path, if any."""
    path, named = _FIELD_PATH.search(message), _NAMED_FIELD.search(message)
    parts = [m.group(1) for m in (path, named) if m and m.group(1)]
    return ".".join(parts) or None
