"""The split's LLM client (HttpEngine) against a real OpenAI-compatible server: the monolith on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from monolith.bench.split import HttpEngine
from monolith.engine import Sampling
from monolith.errors import DependencyDown
from tests.conftest import ServerProcess


async def _generate(engine: HttpEngine, ids: list[int], max_tokens: int) -> tuple[str, list]:
    deltas = [d async for d in engine.stream(ids, Sampling(max_tokens=max_tokens, temperature=0.0), "r1")]
    return "".join(d.text for d in deltas), deltas


def test_http_engine_streams_what_the_server_generates_for_the_same_token_ids(
    server: ServerProcess, model_dir: Path, tokenizer
) -> None:
    ids = tokenizer.encode("Large language models are")
    engine = HttpEngine(server.base_url, "twin", model_dir, 2048)
    text, deltas = asyncio.run(_generate(engine, ids, 8))
    direct = httpx.post(
        f"{server.base_url}/v1/completions",
        json={"model": "twin", "prompt": ids, "max_tokens": 8, "temperature": 0},
        timeout=300,
    ).json()
    assert text == direct["choices"][0]["text"] and text
    assert deltas[-1].completion_tokens == direct["usage"]["completion_tokens"]
    assert deltas[-1].prompt_tokens == len(ids)
    assert deltas[-1].finish_reason in {"stop", "length"}


def test_http_engine_turns_a_refusal_into_dependency_down(server: ServerProcess, model_dir: Path) -> None:
    engine = HttpEngine(server.base_url, "no-such-model", model_dir, 2048)
    with pytest.raises(DependencyDown, match="404"):
        asyncio.run(_generate(engine, [1, 2, 3], 2))
