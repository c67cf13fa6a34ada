"""The RAG prompt: retrieved context within the token budget, best first, and the answer's sampling."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from monolith.admission import Admission
from monolith.errors import BadRequest
from monolith.generation import Generator
from monolith.retrieval.pipeline import Source
from monolith.serving.rag import build_prompt


def _generator(tokenizer, settings, max_model_len: int) -> Generator:
    engine = SimpleNamespace(tokenizer=tokenizer, max_model_len=max_model_len)
    return Generator(engine, settings, Admission())


def _sources(n: int, words: int) -> list[Source]:
    return [
        Source(
            "embedded_articles",
            "Ada Lindqvist",
            "medium",
            f"https://x/{i}",
            0.9 - i / 100,
            f"chunk {i} " + "serving " * words,
        )
        for i in range(n)
    ]


def test_context_is_cut_to_the_token_budget(tokenizer, settings) -> None:
    generator = _generator(tokenizer, settings, max_model_len=512)
    messages = [{"role": "user", "content": "How do I serve a model?"}]
    sources = _sources(6, words=60)
    ids, used = build_prompt(generator, messages, sources, max_tokens=128, param="query")
    assert len(ids) + 128 <= 512
    assert 1 <= len(used) < len(sources)
    assert used == sources[: len(used)]  # best first
    text = tokenizer.decode(ids)
    assert "chunk 0" in text and "How do I serve a model?" in text
    assert "<|im_start|>assistant" in text  # the model's own chat template, assistant turn opened


def test_all_sources_fit_when_there_is_room(tokenizer, settings) -> None:
    generator = _generator(tokenizer, settings, max_model_len=2048)
    sources = _sources(3, words=10)
    _, used = build_prompt(generator, [{"role": "user", "content": "q"}], sources, max_tokens=64, param="query")
    assert used == sources


def test_a_question_that_cannot_fit_is_a_bad_request_naming_the_field(tokenizer, settings) -> None:
    generator = _generator(tokenizer, settings, max_model_len=128)
    messages = [{"role": "user", "content": "serving " * 200}]
    with pytest.raises(BadRequest) as err:
        build_prompt(generator, messages, _sources(2, 10), max_tokens=16, param="query")
    assert err.value.param == "query" and "context window" in err.value.message


def test_answer_sampling_comes_from_the_request_then_the_model_then_the_config(settings) -> None:
    from monolith.serving import rag_options

    configured = rag_options(settings, None, 16, None, None, None)
    assert (configured.temperature, configured.top_p, configured.repetition_penalty) == (0.3, 0.9, 1.15)
    model = rag_options(settings, None, 16, None, None, None, defaults={"temperature": 0.6, "top_p": 0.95})
    assert (model.temperature, model.top_p, model.repetition_penalty) == (0.6, 0.95, 1.15)
    asked = rag_options(settings, None, 16, 0.0, None, None, defaults={"temperature": 0.6})
    assert asked.temperature == 0.0 and not asked.expand and asked.self_query
