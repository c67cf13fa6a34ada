"""The model names a replica answers to: the base model and each twin (the base plus that person's LoRA adapter),
each with its `-rag` alias. A name is resolved once, where a request is planned, into the adapter the engine adds
and the author retrieval is fixed to."""

from __future__ import annotations

from dataclasses import dataclass

from monolith.config import Settings
from monolith.errors import ModelNotFound

RAG_SUFFIX = "-rag"


@dataclass(frozen=True)
class ModelChoice:
    """What a request's model name asks for."""

    name: str  # as the client wrote it (answers carry it back)
    twin: str | None = None  # the twin whose adapter answers; None: the base model alone
    rag: bool = False  # the name itself asks for RAG (`<name>-rag`)
    author: str | None = None  # retrieval reads only this author's documents (the twin's)


def model_names(settings: Settings) -> list[str]:
    """Every name a generation may ask for: the base, its RAG alias, then each twin and its alias."""
    bases = [settings.engine.served_model_name, *settings.twins]
    return [name for base in bases for name in (base, base + RAG_SUFFIX)]


def resolve_model(settings: Settings, model: str, param: str = "model") -> ModelChoice:
    """The base or a twin, with or without RAG; an unknown name is a 404 like OpenAI's, never the base instead."""
    if model in settings.twins:  # a twin's own name first: one may end in "-rag" itself
        return ModelChoice(model, model, False, settings.twins[model].author)
    base = model.removesuffix(RAG_SUFFIX)
    rag = base != model
    if base == settings.engine.served_model_name:
        return ModelChoice(model, None, rag)
    twin = settings.twins.get(base)
    if twin is None:
        raise ModelNotFound(f"the model '{model}' does not exist; GET /v1/models lists this server's", param=param)
    return ModelChoice(model, base, rag, twin.author)


def resolve_adapter(settings: Settings, adapter_id: str | None, param: str) -> ModelChoice:
    """TGI's and SageMaker's `parameters.adapter_id`: a twin's name (None: the base); an unknown one is a 404."""
    if adapter_id is None:
        return ModelChoice(settings.engine.served_model_name)
    if adapter_id not in settings.twins:  # the base's name and the -rag aliases are no adapter
        raise ModelNotFound(
            f"the adapter '{adapter_id}' does not exist; GET /v1/models lists this server's", param=param
        )
    return resolve_model(settings, adapter_id, param)
