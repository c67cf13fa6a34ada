"""/v1/embeddings."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

# OpenAI's own limit on inputs in one request.
MAX_INPUTS = 2048


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    model: Annotated[str, Meta(max_length=256)]
    # Text or a list of texts; OpenAI's token-id forms are refused (the ids would be another model's).
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    user: Annotated[str, Meta(max_length=256)] | None = None
