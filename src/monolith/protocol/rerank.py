"""/v1/rerank (also /rerank and /v2/rerank): the shape vLLM, Jina and Cohere share."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from monolith.protocol.common import Name, Refused

Passage = Annotated[str, Meta(min_length=1, max_length=100_000)]
# Cohere's limit on documents in one request.
MAX_DOCUMENTS = 1000


class RerankDocument(msgspec.Struct):
    text: Passage


class RerankRequest(msgspec.Struct, kw_only=True):
    model: Name | None = None  # vLLM's default: the served reranker
    query: Passage
    documents: Annotated[list[Passage | RerankDocument], Meta(min_length=1, max_length=MAX_DOCUMENTS)]
    top_n: Annotated[int, Meta(ge=0, le=MAX_DOCUMENTS)] | None = None  # 0 or none: every document
    return_documents: bool = True
    # Recognised and refused: a pair longer than the model reads is a 400, never cut.
    max_tokens_per_doc: Refused = None
    truncate_prompt_tokens: Refused = None
    rank_fields: Refused = None
