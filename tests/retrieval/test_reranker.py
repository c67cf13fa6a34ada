"""The optional cross-encoder rerank, with a tiny random-weight model this test saves itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from monolith.config import IngestSettings, RerankSettings
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.ingest import ingest_file
from monolith.retrieval.pipeline import RagOptions, RagPipeline
from monolith.retrieval.reranker import Reranker
from monolith.retrieval.store import VectorStore
from monolith.work import Work
from tests.helpers import save_tiny_cross_encoder

SAMPLE = Path(__file__).resolve().parents[2] / "corpus" / "sample.jsonl"


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"))


def test_reranker_scores_each_passage(tiny_cross_encoder: Path) -> None:
    reranker = Reranker(RerankSettings(model=str(tiny_cross_encoder)))
    scores = reranker.scores("what is a kv cache", ["the kv cache stores keys", "bananas are yellow"])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    assert scores != reranker.scores("what is a kv cache", ["bananas are yellow", "the kv cache stores keys"])
    assert reranker.scores("q", []) == []


async def test_retrieve_orders_sources_by_reranker_score(
    tiny_cross_encoder: Path, embedder: Embedder, store: VectorStore, settings
) -> None:
    ingest_file(SAMPLE, embedder, store, IngestSettings())
    reranker = Reranker(RerankSettings(model=str(tiny_cross_encoder)))
    pipeline = RagPipeline(generator=None, embedder=embedder, store=store, settings=settings, reranker=reranker)
    opts = RagOptions(k=3, max_tokens=16, temperature=0.0, expand=False, self_query=False)
    timings: dict[str, float] = {}
    query = "How do I scale replicas on queue depth?"
    sources, queries, author, _ = await pipeline.retrieve(query, opts, "req-test", Work(), timings)
    assert len(sources) == 3 and queries == [query] and author is None
    # In the cross-encoder's order; each keeps its cosine as its score (the relevance floor's scale).
    reranked = reranker.scores(query, [s.content for s in sources])
    assert reranked == sorted(reranked, reverse=True)
    assert all(0 < s.score <= 1 for s in sources) and [s.score for s in sources] != [round(r, 4) for r in reranked]
    assert "rerank" in timings
