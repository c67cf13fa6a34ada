"""JSONL documents -> chunks -> embeddings -> Qdrant, idempotently (deterministic point ids)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec
from qdrant_client import models
from tqdm import tqdm

from monolith.config import IngestSettings
from monolith.retrieval.chunking import chunk
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.store import VectorStore, point_id

log = logging.getLogger(__name__)

COLLECTION_BY_TYPE = {"article": "embedded_articles", "post": "embedded_posts", "repository": "embedded_repositories"}


class Document(msgspec.Struct, forbid_unknown_fields=False):
    id: str
    type: Literal["article", "post", "repository"]
    author_full_name: str
    content: str
    platform: str = ""
    link: str = ""


@dataclass
class IngestReport:
    documents: int = 0
    chunks: int = 0
    new_points: int = 0
    errors: list[str] = field(default_factory=list)


def read_documents(path: Path, report: IngestReport) -> Iterator[Document]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                doc = msgspec.json.decode(line, type=Document)
                if not doc.content.strip() or not doc.id.strip():
                    raise msgspec.ValidationError("`id` and `content` must not be empty")
            except (msgspec.ValidationError, msgspec.DecodeError, json.JSONDecodeError) as exc:
                report.errors.append(f"line {number}: {exc}")
                log.warning("skipping line %d of %s: %s", number, path, exc)
                continue
            yield doc


BATCH_CHUNKS = 64


def ingest_file(path: Path, embedder: Embedder, store: VectorStore, settings: IngestSettings) -> IngestReport:
    report = IngestReport()
    pending = [
        (doc, i, text)
        for doc in read_documents(path, report)
        for i, text in enumerate(chunk(doc.type, doc.content, settings))
    ]
    report.documents = len({doc.id for doc, _, _ in pending})
    for collection in COLLECTION_BY_TYPE.values():
        store.ensure_collection(collection, embedder.dimension)
    before = sum(store.count(c) for c in COLLECTION_BY_TYPE.values())
    with tqdm(total=len(pending), desc="ingest", unit="chunk") as bar:
        for start in range(0, len(pending), BATCH_CHUNKS):
            batch = pending[start : start + BATCH_CHUNKS]
            vectors = embedder.embed([text for _, _, text in batch])
            by_collection: dict[str, list[models.PointStruct]] = {}
            for (doc, i, text), vector in zip(batch, vectors, strict=True):
                payload = {
                    "content": text,
                    "platform": doc.platform,
                    "author_full_name": doc.author_full_name,
                    "link": doc.link,
                    "document_id": doc.id,
                    "chunk_index": i,
                }
                point = models.PointStruct(id=point_id(doc.id, i), vector=vector, payload=payload)
                by_collection.setdefault(COLLECTION_BY_TYPE[doc.type], []).append(point)
            for collection, points in by_collection.items():
                store.upsert(collection, points)
            report.chunks += len(batch)
            bar.update(len(batch))
    report.new_points = sum(store.count(c) for c in COLLECTION_BY_TYPE.values()) - before
    return report
