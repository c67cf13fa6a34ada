"""The model names a replica answers to: the served model and its `-rag` alias."""

from __future__ import annotations

from monolith.config import Settings
from monolith.errors import NotFound

RAG_SUFFIX = "-rag"


def model_names(settings: Settings) -> tuple[str, str]:
    served = settings.engine.served_model_name
    return served, served + RAG_SUFFIX


def resolve_model(settings: Settings, model: str) -> bool:
    """Whether the model name itself asks for RAG; an unknown name is a 404 like OpenAI's."""
    served, rag = model_names(settings)
    if model not in (served, rag):
        raise NotFound(f"the model '{model}' does not exist; this server serves '{served}' and '{rag}'", param="model")
    return model == rag
