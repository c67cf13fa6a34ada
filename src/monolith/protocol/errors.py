"""The OpenAI error body every route answers with, and how a field is named in it."""

from __future__ import annotations

import re

import msgspec

_FIELD_PATH = re.compile(r"at `\$\.?([^`]*)`")
_NAMED_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]*)`")


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(msgspec.Struct):
    error: ErrorBody


def field_of(message: str) -> str | None:
    """msgspec says "... - at `$.messages[0].role`" or "... field `query`": the field path, if any."""
    path, named = _FIELD_PATH.search(message), _NAMED_FIELD.search(message)
    parts = [m.group(1) for m in (path, named) if m and m.group(1)]
    return ".".join(parts) or None
