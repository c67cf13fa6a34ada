"""Optional cross-encoder rerank (`rerank.model`: a local path or a hub id already in the cache)."""

from __future__ import annotations

import asyncio

from monolith.config import RerankSettings


class Reranker:
    def __init__(self, settings: RerankSettings) -> None:
        from sentence_transformers import CrossEncoder

        assert settings.model is not None
        self._model = CrossEncoder(settings.model, device=settings.device)
        self.max_tokens: int = self._model.max_length  # longer pairs are cut by sentence-transformers

    def pair_token_counts(self, query: str, passages: list[str]) -> list[int]:
        """Each (query, passage) pair's length as the model reads it, special tokens included."""
        encoded = self._model.tokenizer([query] * len(passages), passages, add_special_tokens=True)
        return [len(ids) for ids in encoded["input_ids"]]

    def scores(self, query: str, passages: list[str]) -> list[float]:
        if not passages:
            return []
        return [float(s) for s in self._model.predict([(query, p) for p in passages], show_progress_bar=False)]

    async def scores_async(self, query: str, passages: list[str]) -> list[float]:
        return await asyncio.to_thread(self.scores, query, passages)
