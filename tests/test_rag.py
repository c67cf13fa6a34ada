"""RAG pipeline pieces: strict parsing of the LLM's helper answers, and the token budget."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from monolith.errors import BadRequest
from monolith.generation import Generator
from monolith.rag import EXPANSION_SEPARATOR, RagPipeline, Source, deduplicate, parse_author, parse_expansions
from monolith.retrieval.store import Hit


@pytest.mark.parametrize(
    ("answer", "query", "expected"),
    [
        ("Tomás Reyes", "What does Tomás Reyes say about reranking?", "Tomás Reyes"),
        ("The answer to this question is: Tomás Reyes.", "What does Tomás Reyes think?", "Tomás Reyes"),
        ("Ada Lindqvist is a Swedish computer scientist", "How does Ada Lindqvist scale?", "Ada Lindqvist"),
        ("NONE", "How do I deploy an LLM?", None),
        ('The answer is: "Ladarda Lopez"', "How do I deploy an LLM?", None),  # invented name
        ("How Do I", "How do I deploy an LLM?", None),
        ("", "What does Ada Lindqvist say?", None),
    ],
)
def test_self_query_accepts_only_names_the_query_contains(answer: str, query: str, expected: str | None) -> None:
    assert parse_author(answer, query) == expected


def test_expansions_keep_the_original_first_and_drop_junk() -> None:
    sep = EXPANSION_SEPARATOR
    answer = f"How to ship an LLM? {sep} how do i deploy an llm? {sep} {sep} Ways to put a model in production {sep} x"
    queries = parse_expansions(answer, "How do I deploy an LLM?", wanted=2)
    assert queries == ["How do I deploy an LLM?", "How to ship an LLM?", "Ways to put a model in production"]


def test_expansions_without_separators_still_keep_the_original() -> None:
    assert parse_expansions("", "q", wanted=2) == ["q"]
    assert parse_expansions("a\n\nlong rambling answer", "q", wanted=2) == ["q"]


def test_deduplicate_keeps_the_best_score_per_chunk() -> None:
    hits = [
        Hit("1", "c", 0.5, {"content": "a"}),
        Hit("1", "c", 0.9, {"content": "a"}),
        Hit("2", "c", 0.7, {"content": "b"}),
    ]
    assert [(h.payload["content"], h.score) for h in deduplicate(hits)] == [("a", 0.9), ("b", 0.7)]


def _pipeline(tokenizer, settings, max_model_len: int) -> RagPipeline:
    engine = SimpleNamespace(tokenizer=tokenizer, max_model_len=max_model_len)
    return RagPipeline(Generator(engine, settings), embedder=None, store=None, settings=settings)


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
    pipeline = _pipeline(tokenizer, settings, max_model_len=512)
    messages = [{"role": "user", "content": "How do I serve a model?"}]
    sources = _sources(6, words=60)
    ids, used = pipeline.build_prompt(messages, sources, max_tokens=128, param="query")
    assert len(ids) + 128 <= 512
    assert 1 <= len(used) < len(sources)
    assert used == sources[: len(used)]  # best first
    text = tokenizer.decode(ids)
    assert "chunk 0" in text and "How do I serve a model?" in text
    assert "<|im_start|>assistant" in text  # the model's own chat template, assistant turn opened


def test_all_sources_fit_when_there_is_room(tokenizer, settings) -> None:
    pipeline = _pipeline(tokenizer, settings, max_model_len=2048)
    sources = _sources(3, words=10)
    _, used = pipeline.build_prompt([{"role": "user", "content": "q"}], sources, max_tokens=64, param="query")
    assert used == sources


def test_a_question_that_cannot_fit_is_a_bad_request_naming_the_field(tokenizer, settings) -> None:
    pipeline = _pipeline(tokenizer, settings, max_model_len=128)
    messages = [{"role": "user", "content": "serving " * 200}]
    with pytest.raises(BadRequest) as err:
        pipeline.build_prompt(messages, _sources(2, 10), max_tokens=16, param="query")
    assert err.value.param == "query" and "context window" in err.value.message
