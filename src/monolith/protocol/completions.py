"""/v1/completions."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from monolith.protocol.common import (
    Name,
    Refused,
    Temperature,
    TopLogprobs,
)
from monolith.protocol.sampling import GenerationOptions

# A completions request's prompts each count as one request for admission; this many at most in one.
MAX_PROMPTS = 64


class CompletionRequest(GenerationOptions):
    model: Name
    # OpenAI's four forms: text, a list of texts, token ids, a list of token-id lists. msgspec takes one
    # array type per union, so the list's items are checked for one form in serving.prompt_inputs; a list
    # of prompts is capped in serving too (a list of token ids is one prompt of any length).
    prompt: str | list[str | int | list[int]]
    max_tokens: Annotated[int, Meta(ge=0, le=1_000_000)] | None = 16  # 0 only with echo: score the prompt
    temperature: Temperature = 1.0
    echo: bool = False
    logprobs: TopLogprobs | None = None
    suffix: Refused = None  # no fill-in-the-middle
