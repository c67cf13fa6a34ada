"""Sentence-transformers embedder; loads from a local folder or a package that ships one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from monolith.config import ConfigError, EmbedderSettings
from monolith.packaged import package_dir


def resolve_model_dir(name: str) -> str:
    """A path, a Python package that ships its model in `<package>/model`, or a hub id (cache only)."""
    if Path(name).exists():
        return name
    folder = package_dir(name)
    if folder is not None:
        if (folder / "model").is_dir():
            return str(folder / "model")
        raise ConfigError(f"embedder.model: package {name} has no model/ folder")
    return name


class Embedder:
    def __init__(self, settings: EmbedderSettings) -> None:
        from sentence_transformers import SentenceTransformer

        self._batch_size = settings.batch_size
        self._model = SentenceTransformer(resolve_model_dir(settings.model), device=settings.device)
        self.dimension: int = self._model.get_embedding_dimension()

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model.encode(
            texts, batch_size=self._batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return vectors.tolist()

    async def embed_async(self, texts: list[str]) -> list[list[float]]:
        """One batched call for all texts, off the event loop."""
        return await asyncio.to_thread(self.embed, texts)
