"""/v1/rerank (and /rerank, /v2/rerank) on a real server whose RAG pipeline has a cross-encoder: the scores are
the reranker's own, in vLLM's / Jina's / Cohere's shape; without a reranker the route is a 404."""

from __future__ import annotations

import httpx
import pytest

from monolith.config import RerankSettings
from monolith.retrieval.reranker import Reranker
from tests.api.conftest import RERANK_MODEL
from tests.conftest import ManagedServer

QUERY = "How do I scale replicas on queue depth?"
DOCUMENTS = [
    "Scale replicas with an HPA on the queue-depth gauge.",
    "Bananas are yellow.",
    "A KV cache stores the keys and values of earlier tokens.",
]


@pytest.fixture(scope="module")
def rerank_http(small_server: ManagedServer) -> httpx.Client:
    return httpx.Client(base_url=small_server.up().base_url, timeout=60)


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder) -> Reranker:
    return Reranker(RerankSettings(model=str(tiny_cross_encoder)))


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v2/rerank"])
def test_documents_come_back_ordered_by_the_rerankers_scores(
    rerank_http: httpx.Client, reranker: Reranker, path: str
) -> None:
    response = rerank_http.post(path, json={"model": RERANK_MODEL, "query": QUERY, "documents": DOCUMENTS})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = reranker.scores(QUERY, DOCUMENTS)
    assert [r["index"] for r in body["results"]] == sorted(range(3), key=lambda i: expected[i], reverse=True)
    for result in body["results"]:
        assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-5)
        assert result["document"] == {"text": DOCUMENTS[result["index"]]}
    assert body["model"] == RERANK_MODEL and body["usage"]["total_tokens"] == sum(
        reranker.pair_token_counts(QUERY, DOCUMENTS)
    )


def test_top_n_objects_and_no_documents(rerank_http: httpx.Client) -> None:
    documents = [{"text": d} for d in DOCUMENTS]
    body = rerank_http.post(
        "/v1/rerank", json={"query": QUERY, "documents": documents, "top_n": 2, "return_documents": False}
    ).json()
    assert len(body["results"]) == 2 and all("document" not in r for r in body["results"])
    assert body["results"][0]["relevance_score"] >= body["results"][1]["relevance_score"]


def test_the_reranker_is_listed_as_a_model(rerank_http: httpx.Client) -> None:
    assert RERANK_MODEL in [m["id"] for m in rerank_http.get("/v1/models").json()["data"]]


@pytest.mark.parametrize(
    ("extra", "status", "param"),
    [
        ({"model": "bge-reranker"}, 404, "model"),
        ({"documents": []}, 400, "documents"),
        ({"documents": [""]}, 400, "documents[0]"),
        ({"query": ""}, 400, "query"),
        ({"documents": ["word " * 600]}, 400, "documents[0]"),  # past the model's 512 tokens: never cut
        ({"documents": ["a"] * 1001}, 400, "documents"),
        ({"max_tokens_per_doc": 100}, 400, "max_tokens_per_doc"),
        ({"top_n": -1}, 400, "top_n"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(rerank_http: httpx.Client, extra: dict, status: int, param: str) -> None:
    response = rerank_http.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS, **extra})
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_without_a_reranker_the_route_is_a_404(http: httpx.Client) -> None:
    """The session's server has no rerank.model."""
    response = http.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS})
    assert response.status_code == 404 and response.json()["error"]["param"] == "model"
