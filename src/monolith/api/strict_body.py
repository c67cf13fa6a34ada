"""A JSON body is checked against its type strictly, as the served schema states it, before the route runs.

Why: Litestar converts a request's values with msgspec in lax mode (strict=False), which query strings and
headers need (they arrive as text), but which also let a body through that the schema refuses: `"stream": 1`,
`"max_tokens": "16"`, TGI's `"decoder_input_details": 0` were accepted (the negative fuzzer's
`negative_data_rejection` found them). OpenAI answers such a body with a 400 naming the field, and so does this
server now. msgspec decodes at memory speed, so the second decode costs microseconds beside a generation.
"""

from __future__ import annotations

import msgspec
from litestar import Request

from monolith.api.openapi import struct_body
from monolith.api.unknown_fields import log_unknown_fields
from monolith.errors import BadRequest
from monolith.protocol.errors import field_of


def _json_number(text: str) -> int | float:
    """A JSON number with no fraction is an integer to JSON Schema (`1.0` is a valid `integer`): only the
    conversions the schema does not allow (a string for a number, a number for a boolean) are refused."""
    value = float(text)
    return int(value) if value.is_integer() else value


_JSON = msgspec.json.Decoder(float_hook=_json_number)


async def check_body(request: Request) -> None:
    """The app's before_request hook: the body is read once here, and Litestar reuses it to parse the request."""
    kind = struct_body(request.route_handler)  # type: ignore[arg-type]
    if kind is None:
        return
    try:
        msgspec.convert(_JSON.decode(await request.body()), type=kind, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise BadRequest(message.split(" - at `")[0], param=field_of(message)) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # Not JSON, not UTF-8, or nested past what Python can hold: the route answers it with its own 400 (the
        # whole document is decoded before any field is checked, so a bad byte is never reported as a field).
        return
    await log_unknown_fields(request)
