"""Ingestion with the real embedder into real Qdrant local mode."""

from __future__ import annotations

import json
from pathlib import Path

from monolith.config import IngestSettings
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.ingest import ingest_file
from monolith.retrieval.store import VectorStore

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "corpus" / "sample.jsonl"


def test_sample_corpus_has_a_few_dozen_documents_by_several_authors() -> None:
    docs = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    assert len(docs) >= 24
    assert len({d["author_full_name"] for d in docs}) >= 3
    assert {d["type"] for d in docs} == {"article", "post", "repository"}


def test_reingesting_the_same_file_adds_nothing(embedder: Embedder, store: VectorStore) -> None:
    first = ingest_file(SAMPLE, embedder, store, IngestSettings())
    assert first.documents == 30 and first.new_points == first.chunks > 30
    total = sum(store.count(c) for c in store.collections)
    second = ingest_file(SAMPLE, embedder, store, IngestSettings())
    assert second.new_points == 0
    assert sum(store.count(c) for c in store.collections) == total


def test_documents_land_in_the_collection_of_their_type(embedder: Embedder, store: VectorStore) -> None:
    ingest_file(SAMPLE, embedder, store, IngestSettings())
    vector = embedder.embed(["pip install and run the loadtest script"])
    [hits] = store.search(vector, limit=3)
    by_collection = {h.collection for h in hits}
    assert by_collection == {"embedded_articles", "embedded_posts", "embedded_repositories"}
    repo_hit = next(h for h in hits if h.collection == "embedded_repositories")
    assert set(repo_hit.payload) >= {"content", "platform", "author_full_name", "link", "document_id", "chunk_index"}


def test_bad_lines_are_reported_with_their_number_and_the_rest_goes_in(
    tmp_path: Path, embedder: Embedder, store: VectorStore
) -> None:
    good = {"id": "a", "type": "post", "author_full_name": "A B", "platform": "x", "link": "l", "content": "hello"}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "id": "b", "type": "video"}),
        json.dumps({**good, "id": "c", "content": ""}),
        "",
        json.dumps({**good, "id": "d", "content": "world"}),
    ]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = ingest_file(path, embedder, store, IngestSettings())
    assert report.documents == 2 and report.new_points == 2
    assert [e.split(":")[0] for e in report.errors] == ["line 2", "line 3", "line 4"]


async def test_concurrent_embed_calls_share_encodes_and_keep_their_order(embedder: Embedder) -> None:
    import asyncio

    texts = [[f"query {i}", f"variant {i}"] for i in range(12)]
    before = embedder.batches
    results = await asyncio.gather(*(embedder.embed_async(t) for t in texts))
    assert embedder.batches - before < len(texts)  # merged into fewer encodes
    for group, vectors in zip(texts, results, strict=True):
        expected = embedder.embed(group)
        assert len(vectors) == 2
        for got, want in zip(vectors, expected, strict=True):
            assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-4
