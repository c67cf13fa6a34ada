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
        self.max_tokens: int = self._model.max_seq_length  # longer inputs are cut by sentence-transformers
        self._waiting: list[tuple[list[str], asyncio.Future[list[list[float]]]]] = []
        self._encoding = False
        self.batches = 0  # encode calls made by embed_async, for tests and curiosity

    def token_counts(self, texts: list[str]) -> list[int]:
        """Each text's length in this model's tokenizer, special tokens included (as the model reads it)."""
        return [len(ids) for ids in self._model.tokenizer(texts, add_special_tokens=True)["input_ids"]]

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model.encode(
            texts, batch_size=self._batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return vectors.tolist()

    async def embed_async(self, texts: list[str]) -> list[list[float]]:
        """Off the event loop; callers that arrive while an encode runs share the next one.

        Under load (many RAG requests, a batch of RAG lines) this turns many small encodes into few
        large ones, which is where the embedder's throughput is.
        """
        future: asyncio.Future[list[list[float]]] = asyncio.get_running_loop().create_future()
        self._waiting.append((texts, future))
        if not self._encoding:
            self._encoding = True
            self._encoder = asyncio.create_task(self._encode_waiting())
        return await future

    async def _encode_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    vectors = await asyncio.to_thread(self.embed, [t for texts, _ in batch for t in texts])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for texts, future in batch:
                    if not future.done():
                        future.set_result(vectors[start : start + len(texts)])
                    start += len(texts)
                self.batches += 1
        finally:
            self._encoding = False
