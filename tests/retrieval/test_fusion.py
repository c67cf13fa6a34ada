"""Retrieval pieces: strict parsing of the expansion, and reciprocal-rank fusion."""

from __future__ import annotations

import json

import pytest

from monolith.retrieval.pipeline import fuse, parse_expansions
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
