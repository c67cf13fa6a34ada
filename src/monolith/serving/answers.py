"""What every answer carries: token usage, a finish reason as OpenAI names it, and SSE frames."""

from __future__ import annotations

from typing import Any

import msgspec

from monolith.protocol.common import Usage


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)


def finish(reason: str | None) -> str | None:
    return "stop" if reason == "abort" else reason


def frame(payload: Any) -> bytes:
    data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
