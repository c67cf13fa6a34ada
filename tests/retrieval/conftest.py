from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from monolith.config import EmbedderSettings, QdrantSettings
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.store import VectorStore


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2 from its PyPI package, offline."""
    return Embedder(EmbedderSettings())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[VectorStore]:
    """Real Qdrant local mode in a fresh directory."""
    vector_store = VectorStore(QdrantSettings(), tmp_path / "qdrant")
    yield vector_store
    vector_store.close()
