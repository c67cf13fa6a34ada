"""Optional cross-encoder rerank (`rerank.model`: a local path or a hub id already in the cache)."""

from __future__ import annotations

import asyncio

from monolith.config import RerankSettings


class Reranker:
    def __init__(self, settings: RerankSettings) -> None:
        from sentence_transformers import CrossEncoder

        assert settings.model is not None
        self._model = CrossEncoder(settings.model, device=settings.device)

    def scores(self, query: str, passages: list[str]) -> list[float]:
        if not passages:
            return []
        return [float(s) for s in self._model.predict([(query, p) for p in passages], show_progress_bar=False)]

    async def scores_async(self, query: str, passages: list[str]) -> list[float]:
        return await asyncio.to_thread(self.scores, query, passages)
