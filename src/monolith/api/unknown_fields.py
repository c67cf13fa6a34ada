"""Unknown fields of an OpenAI request are ignored, as vLLM does, so that newer clients keep working; each
name is logged once (per route) at debug level, so an operator can see what clients send that is not served.
(A field this server recognises and cannot honour is a 400 instead: serving.refuse_unsupported.)"""

from __future__ import annotations

import logging

import msgspec
from litestar import Request

from monolith.api.openapi import struct_body

log = logging.getLogger(__name__)

# A hostile client may send a new name each time: past this many, new names are no longer remembered or logged.
MAX_REMEMBERED = 1000
_seen: set[tuple[str, str]] = set()


async def log_unknown_fields(request: Request) -> None:
    """A before_request hook: the body is read here once, and Litestar reuses it to parse the request."""
    if not log.isEnabledFor(logging.DEBUG) or len(_seen) >= MAX_REMEMBERED:
        return
    kind = struct_body(request.route_handler)  # type: ignore[arg-type]
    if kind is None:
        return
    try:  # only the top-level names: the values stay undecoded
        fields = msgspec.json.decode(await request.body(), type=dict[str, msgspec.Raw])
    except msgspec.DecodeError:
        return  # the route answers the malformed body with its 400
    route = request.scope["path"]
    for name in sorted(fields.keys() - set(kind.__struct_fields__)):
        if (route, name) not in _seen and len(_seen) < MAX_REMEMBERED:
            _seen.add((route, name))
            log.debug("ignored the unknown field %r of %s (logged once)", name[:64], route)
