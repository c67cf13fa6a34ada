"""/v1/embeddings: the RAG embedder in this process, in OpenAI's shape (float, or base64 of little-endian
float32, which the openai client asks for by default). An input longer than the embedder reads is a 400, not
a silent truncation."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from monolith.errors import BadRequest, ModelNotFound, NotReady
from monolith.protocol.embeddings import MAX_INPUTS, EmbeddingRequest
from monolith.serving.services import Services


def texts_of(data: EmbeddingRequest) -> list[str]:
    if isinstance(data.input, str):
        texts = [data.input]
    elif not data.input:
        raise BadRequest("input is empty", param="input")
    elif len(data.input) > MAX_INPUTS:
        raise BadRequest(f"{len(data.input)} inputs; the limit is {MAX_INPUTS}", param="input")
    elif all(isinstance(t, str) for t in data.input):
        texts = list(data.input)
    else:
        raise BadRequest("input must be a string or a list of strings (token ids are not taken)", param="input")
    for i, text in enumerate(texts):
        if not text.strip():
            raise BadRequest("an input is empty", param=f"input[{i}]" if len(texts) > 1 else "input")
    return texts


def check(services: Services, data: EmbeddingRequest) -> list[str]:
    embedder = services.embedder
    if embedder is None:
        raise NotReady("no embedder is loaded in this run")
    served = services.settings.embedder.served_model_name
    if data.model != served:
        raise ModelNotFound(
            f"the embedding model '{data.model}' does not exist; this server serves '{served}'", param="model"
        )
    if data.dimensions is not None and data.dimensions != embedder.dimension:
        raise BadRequest(f"{served} makes {embedder.dimension}-dimensional vectors only", param="dimensions")
    return texts_of(data)


def token_counts(services: Services, texts: list[str]) -> list[int]:
    """Each input's length in the embedder's own tokens; past its window it would be cut: a 400 instead."""
    embedder = services.embedder
    counts = embedder.token_counts(texts)
    for i, count in enumerate(counts):
        if count > embedder.max_tokens:
            where = f"input[{i}]" if len(texts) > 1 else "input"
            raise BadRequest(
                f"{where} has {count} tokens; {embedder.max_tokens} is the most the embedder reads", param=where
            )
    return counts


def encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


@dataclass
class EmbeddingPlan:
    model: str
    texts: list[str]
    encoding: str
    tokens: int


async def plan_embeddings(services: Services, data: EmbeddingRequest) -> EmbeddingPlan:
    """Every 4xx: the model, the inputs, each input's length in the embedder's tokens."""
    texts = check(services, data)
    counts = await services.generator.off_loop(token_counts, services, texts)
    return EmbeddingPlan(data.model, texts, data.encoding_format, sum(counts))


async def run_embeddings(services: Services, plan: EmbeddingPlan) -> dict[str, Any]:
    vectors = await services.embedder.embed_async(plan.texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v, plan.encoding)} for i, v in enumerate(vectors)
        ],
        "model": plan.model,
        "usage": {"prompt_tokens": plan.tokens, "total_tokens": plan.tokens},
    }
