"""The loaded services a server hands to its routes, jobs and batches."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from monolith.admission import Admission
from monolith.config import Settings
from monolith.generation import Generator
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.pipeline import Retrieval
from monolith.retrieval.reranker import Reranker
from monolith.retrieval.store import VectorStore


@dataclass
class Services:
    """What a loaded server hands to its routes, jobs and batches."""

    generator: Generator
    rag: Retrieval  # RagPipeline, or RetrievalOff where none was loaded
    store: VectorStore | None = None  # None where retrieval was not loaded
    embedder: Embedder | None = None  # the RAG embedder, which /v1/embeddings serves too
    reranker: Reranker | None = None  # the RAG cross-encoder, which /v1/rerank serves too (where configured)

    @property
    def settings(self) -> Settings:
        return self.generator.settings

    @property
    def admission(self) -> Admission:
        """This process's one admission queue, which every generation is tracked in."""
        return self.generator.admission

    async def aclose(self) -> None:
        await self.generator.aclose()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
