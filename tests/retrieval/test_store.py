"""Missing collections and an unreachable Qdrant are errors (503 at the edge), never empty context."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from monolith.config import IngestSettings, QdrantSettings
from monolith.errors import DependencyDown
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.ingest import ingest_file
from monolith.retrieval.store import VectorStore, point_id

SAMPLE = Path(__file__).resolve().parents[2] / "corpus" / "sample.jsonl"


def test_point_ids_are_deterministic() -> None:
    assert point_id("doc", 0) == point_id("doc", 0)
    assert point_id("doc", 0) != point_id("doc", 1)


def test_search_on_missing_collection_raises_dependency_down(store: VectorStore) -> None:
    with pytest.raises(DependencyDown, match="embedded_articles"):
        store.search([[0.1] * 384], limit=3)
    with pytest.raises(DependencyDown, match="missing"):
        store.check()


def test_unreachable_qdrant_server_raises_dependency_down(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = VectorStore(QdrantSettings(url=f"http://127.0.0.1:{port}", timeout_s=1), tmp_path)
    with pytest.raises(DependencyDown, match="unavailable"):
        remote.search([[0.1] * 384], limit=3)
    assert DependencyDown.status_code == 503


def test_author_filter_restricts_every_hit(embedder: Embedder, store: VectorStore) -> None:
    ingest_file(SAMPLE, embedder, store, IngestSettings())
    vectors = embedder.embed(["how to deploy and scale a model"])
    [unfiltered] = store.search(vectors, limit=5)
    assert len({h.payload["author_full_name"] for h in unfiltered}) > 1
    [filtered] = store.search(vectors, limit=5, author="Jonas Weber")
    assert filtered and {h.payload["author_full_name"] for h in filtered} == {"Jonas Weber"}


def test_each_query_gets_its_own_hits_best_first(embedder: Embedder, store: VectorStore) -> None:
    ingest_file(SAMPLE, embedder, store, IngestSettings())
    per_query = store.search(embedder.embed(["PagedAttention and continuous batching", "DPO preference pairs"]), 3)
    assert len(per_query) == 2
    for hits in per_query:
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert per_query[0][0].payload["document_id"] == "jonas-vllm"
    assert per_query[1][0].payload["document_id"] == "priya-dpo"


def test_the_store_lists_its_authors(embedder: Embedder, store: VectorStore) -> None:
    assert store.authors() == []
    ingest_file(SAMPLE, embedder, store, IngestSettings())
    assert store.authors() == ["Ada Lindqvist", "Jonas Weber", "Priya Natarajan", "Tomás Reyes"]
