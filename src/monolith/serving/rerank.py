"""/v1/rerank: the RAG pipeline's cross-encoder, in the shape vLLM, Jina and Cohere share, when one is
configured (`rerank.model`). A query and document longer together than the model reads is a 400, not a
silent cut."""

from __future__ import annotations

import uuid
from typing import Any

from monolith.errors import BadRequest, ModelNotFound
from monolith.protocol.rerank import RerankDocument, RerankRequest
from monolith.serving.checks import refuse_fields
from monolith.serving.services import Services

REFUSED = {
    "max_tokens_per_doc": "documents are not cut; one too long for the model is a 400",
    "truncate_prompt_tokens": "documents are not cut; one too long for the model is a 400",
    "rank_fields": "documents are text; rank_fields is not supported",
}


def texts_of(data: RerankRequest) -> list[str]:
    return [d.text if isinstance(d, RerankDocument) else d for d in data.documents]


def check(services: Services, data: RerankRequest) -> list[str]:
    refuse_fields(data, REFUSED)
    served = services.settings.rerank.served_name
    if services.reranker is None or served is None:
        raise ModelNotFound("no reranker is configured on this server (rerank.model)", param="model")
    if data.model is not None and data.model != served:
        raise ModelNotFound(
            f"the rerank model '{data.model}' does not exist; this server serves '{served}'", param="model"
        )
    return texts_of(data)


def token_counts(services: Services, query: str, documents: list[str]) -> list[int]:
    reranker = services.reranker
    counts = reranker.pair_token_counts(query, documents)
    for i, count in enumerate(counts):
        if count > reranker.max_tokens:
            raise BadRequest(
                f"the query with documents[{i}] has {count} tokens; {reranker.max_tokens} is the most the reranker "
                "reads",
                param=f"documents[{i}]",
            )
    return counts


async def rerank(services: Services, data: RerankRequest) -> dict[str, Any]:
    documents = check(services, data)
    counts = await services.generator.off_loop(token_counts, services, data.query, documents)
    scores = await services.reranker.scores_async(data.query, documents)
    order = sorted(range(len(documents)), key=lambda i: scores[i], reverse=True)
    if data.top_n:
        order = order[: data.top_n]
    results = []
    for i in order:
        result: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
        if data.return_documents:
            result["document"] = {"text": documents[i]}
        results.append(result)
    return {
        "id": f"rerank-{uuid.uuid4().hex}",
        "model": services.settings.rerank.served_name,
        "results": results,
        "usage": {"total_tokens": sum(counts)},
    }
