"""RAG pipeline pieces: strict parsing of the expansion, reciprocal-rank fusion, and the token budget."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from monolith.errors import BadRequest
from monolith.generation import Generator
from monolith.rag import RagPipeline, Source, fuse, parse_expansions
from monolith.retrieval.store import Hit


def test_expansions_keep_the_original_first_and_drop_repeats() -> None:
    query = "How do I deploy an LLM?"
    answer = json.dumps(
        [
            "1. How do I deploy an LLM?",  # the original again, numbered: what the 135M model often writes
            "How to ship an LLM to production",
            "how to ship an llm to production!",  # the same, but for case and punctuation
            "Deploying a large language model",
            "ok",
        ]
    )
    assert parse_expansions(answer, query, wanted=2) == [
        query,
        "How to ship an LLM to production",
        "Deploying a large language model",
    ]
    assert parse_expansions(answer, query, wanted=1) == [query, "How to ship an LLM to production"]


@pytest.mark.parametrize("answer", ["", '["cut off by the token bud', '{"not": "a list"}', "[1, 2]", "[]"])
def test_an_expansion_that_is_not_a_json_list_of_strings_leaves_the_original_alone(answer: str) -> None:
    assert parse_expansions(answer, "q?", wanted=2) == ["q?"]


def hit(key: str, score: float) -> Hit:
    return Hit(key, "c", score, {"content": key})


def test_fusion_ranks_by_reciprocal_rank_and_keeps_each_chunks_best_cosine() -> None:
    original = [hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)]
    alternative = [hit("b", 0.85), hit("c", 0.6), hit("d", 0.5)]
    fused = fuse([original, alternative])
    # b: 1/62 + 1/61 beats a: 1/61 alone; c: 1/63 + 1/62 too; d comes last.
    assert [h.payload["content"] for h in fused] == ["b", "c", "a", "d"]
    assert {h.payload["content"]: h.score for h in fused} == {"a": 0.9, "b": 0.85, "c": 0.7, "d": 0.5}


def test_fusion_of_one_query_is_its_own_order_and_counts_a_chunk_once() -> None:
    only = [hit("a", 0.9), hit("a", 0.8), hit("b", 0.7)]  # one chunk found twice (two collections)
    assert [h.payload["content"] for h in fuse([only])] == ["a", "b"]


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


def test_answer_sampling_comes_from_the_request_then_the_model_then_the_config(settings) -> None:
    from monolith.serving import rag_options

    configured = rag_options(settings, None, 16, None, None, None)
    assert (configured.temperature, configured.top_p, configured.repetition_penalty) == (0.3, 0.9, 1.15)
    model = rag_options(settings, None, 16, None, None, None, defaults={"temperature": 0.6, "top_p": 0.95})
    assert (model.temperature, model.top_p, model.repetition_penalty) == (0.6, 0.95, 1.15)
    asked = rag_options(settings, None, 16, 0.0, None, None, defaults={"temperature": 0.6})
    assert asked.temperature == 0.0 and not asked.expand and asked.self_query
