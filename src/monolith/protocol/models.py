"""/v1/models."""

from __future__ import annotations

import msgspec


class ModelCard(msgspec.Struct):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "monolith"
    max_model_len: int | None = None
    # As vLLM lists a LoRA adapter: its source (a folder or hub id) and the base model's id it runs on.
    root: str | None = None
    parent: str | None = None


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"
