"""/v1/embeddings with the official openai client: the RAG embedder's vectors, base64 (the client's default) or
float; GET /v1/models/{id}; bad input is a 4xx naming the field."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from openai import NotFoundError, OpenAI

from monolith.config import EmbedderSettings
from monolith.retrieval.embedder import Embedder

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["How do I deploy an LLM?", "PagedAttention stores the KV cache in blocks."]


@pytest.fixture(scope="module")
def rag_embedder() -> Embedder:
    return Embedder(EmbedderSettings())


def decoded(b64: object) -> list[float]:
    assert isinstance(b64, str)
    return np.frombuffer(base64.b64decode(b64), dtype="<f4").tolist()


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_the_openai_client_gets_the_rag_embedders_vectors(
    openai_client: OpenAI, rag_embedder: Embedder, encoding: str
) -> None:
    result = openai_client.embeddings.create(model=MODEL, input=TEXTS, encoding_format=encoding)
    expected = rag_embedder.embed(TEXTS)
    assert [d.index for d in result.data] == [0, 1] and result.model == MODEL
    for got, want in zip(result.data, expected, strict=True):
        # Asked for explicitly, base64 comes back as the string (the client decodes only its own default).
        vector = decoded(got.embedding) if encoding == "base64" else got.embedding
        assert len(vector) == 384 and cosine(vector, want) > 0.999
    assert result.usage.prompt_tokens == sum(rag_embedder.token_counts(TEXTS)) == result.usage.total_tokens


def test_the_client_default_and_a_single_string(openai_client: OpenAI, rag_embedder: Embedder) -> None:
    result = openai_client.embeddings.create(model=MODEL, input=TEXTS[0])  # base64 on the wire, decoded by the client
    assert cosine(result.data[0].embedding, rag_embedder.embed(TEXTS[:1])[0]) > 0.999


def test_models_lists_the_embedder_and_answers_for_each_id(openai_client: OpenAI) -> None:
    assert openai_client.models.retrieve(MODEL).id == MODEL
    assert openai_client.models.retrieve("twin-rag").id == "twin-rag"
    with pytest.raises(NotFoundError):
        openai_client.models.retrieve("gpt-4o")


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": MODEL, "input": ""}, 400, "input"),
        ({"model": MODEL, "input": []}, 400, "input"),
        ({"model": MODEL, "input": ["ok", " "]}, 400, "input[1]"),
        ({"model": MODEL, "input": [[1, 2, 3]]}, 400, "input"),
        ({"model": MODEL, "input": "word " * 400}, 400, "input"),  # past the embedder's 256 tokens
        ({"model": MODEL, "input": ["ok", "word " * 400]}, 400, "input[1]"),
        ({"model": MODEL, "input": "hi", "dimensions": 128}, 400, "dimensions"),
        ({"model": MODEL, "input": "hi", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": MODEL, "input": ["hi"] * 2049}, 400, "input"),
        ({"model": "text-embedding-3-small", "input": "hi"}, 404, "model"),
    ],
)
def test_bad_embedding_requests_are_4xx_naming_the_field(
    http: httpx.Client, body: dict, status: int, param: str
) -> None:
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
