"""Qdrant through qdrant-client: local mode at a path by default, a server when `qdrant.url` is set."""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models

from monolith.config import QdrantSettings
from monolith.errors import DependencyDown

POINT_NAMESPACE = uuid.UUID("6f1d2c1e-4a57-4c4e-9a8e-1d3c0b7a2f10")


@dataclass(frozen=True)
class Hit:
    id: str
    collection: str
    score: float
    payload: dict[str, Any]


def point_id(document_id: str, chunk_index: int) -> str:
    """Deterministic, so re-ingesting a document overwrites its points instead of adding new ones."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{document_id}#{chunk_index}"))


class VectorStore:
    def __init__(self, settings: QdrantSettings, local_path: Path) -> None:
        self.collections = list(settings.collections)
        self._local = not settings.url
        if settings.url:
            self._client = QdrantClient(
                url=settings.url, api_key=settings.api_key, timeout=int(settings.timeout_s), check_compatibility=False
            )
        else:
            local_path.mkdir(parents=True, exist_ok=True)
            self._client = QdrantClient(path=str(local_path))
        # Local mode is plain Python over shared dicts: one caller at a time.
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def _call(self, what: str, fn, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._lock:
                return fn(*args, **kwargs)
        except DependencyDown:
            raise
        except Exception as exc:  # connection refused, timeouts, server errors: all mean "down" to a caller
            raise DependencyDown(f"vector store unavailable during {what}: {type(exc).__name__}") from exc

    def ensure_collection(self, name: str, dimension: int) -> None:
        if not self._call("collection check", self._client.collection_exists, name):
            self._call(
                "collection create",
                self._client.create_collection,
                name,
                vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            )
            if self._local:  # local mode ignores payload indexes and warns about them
                return
            self._call(
                "index create",
                self._client.create_payload_index,
                name,
                "author_full_name",
                field_schema=models.PayloadSchemaType.KEYWORD,
            )

    def count(self, name: str) -> int:
        if not self._call("collection check", self._client.collection_exists, name):
            return 0
        return self._call("count", self._client.count, name, exact=True).count

    def upsert(self, name: str, points: list[models.PointStruct]) -> None:
        self._call("upsert", self._client.upsert, name, points=points, wait=True)

    def check(self) -> None:
        """Raise DependencyDown unless every configured collection exists."""
        missing = [c for c in self.collections if not self._call("collection check", self._client.collection_exists, c)]
        if missing:
            raise DependencyDown(f"vector store collection(s) missing: {', '.join(missing)}; run `monolith ingest`")

    def authors(self) -> list[str]:
        """Every author_full_name the collections hold (a facet over the payload: indexed on a server)."""
        names: set[str] = set()
        for name in self.collections:
            if not self._call("collection check", self._client.collection_exists, name):
                continue
            facet = self._call("authors", self._client.facet, name, "author_full_name", limit=10_000, exact=True)
            names.update(str(hit.value) for hit in facet.hits)
        return sorted(names)

    async def authors_async(self) -> list[str]:
        return await asyncio.to_thread(self.authors)

    def search(self, vectors: list[list[float]], limit: int, author: str | None = None) -> list[list[Hit]]:
        """Every vector against every collection, in one batch request per collection; one list of hits per
        vector, best first (the fusion ranks each query's hits on their own)."""
        flt = None
        if author:
            flt = models.Filter(
                must=[models.FieldCondition(key="author_full_name", match=models.MatchValue(value=author))]
            )
        requests = [models.QueryRequest(query=v, filter=flt, limit=limit, with_payload=True) for v in vectors]
        per_query: list[list[Hit]] = [[] for _ in vectors]
        for name in self.collections:
            if not self._call("collection check", self._client.collection_exists, name):
                raise DependencyDown(f"vector store collection {name} is missing; run `monolith ingest`")
            responses = self._call("search", self._client.query_batch_points, name, requests=requests)
            for hits, response in zip(per_query, responses, strict=True):
                hits.extend(Hit(str(p.id), name, p.score, p.payload or {}) for p in response.points)
        return [sorted(hits, key=lambda h: h.score, reverse=True) for hits in per_query]

    async def search_async(self, vectors: list[list[float]], limit: int, author: str | None = None) -> list[list[Hit]]:
        return await asyncio.to_thread(self.search, vectors, limit, author)
