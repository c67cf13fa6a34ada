"""The microservice split the benchmark compares against: the same RAG code in a business service
that reaches the LLM over HTTP (`vllm serve`) for self-query, expansion and generation.

`HttpEngine` implements the engine contract over vLLM's OpenAI `/v1/completions` (token-id prompts,
streamed), so the split runs exactly the monolith's RAG pipeline and routes; the difference measured is
the architecture: a network hop and a second process, not different code.
Run: python -m monolith.bench.split --config configs/cpu.yaml --llm-url http://127.0.0.1:PORT --port PORT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from monolith.config import load_settings
from monolith.engine import Delta, EngineStats, Sampling
from monolith.errors import DependencyDown
from monolith.generation import Generator
from monolith.retrieval.embedder import Embedder
from monolith.retrieval.pipeline import RagPipeline
from monolith.runtime import Runtime, ingest_sample_if_empty, open_store
from monolith.serving import Services


class HttpEngine:
    """An LLM microservice client: one streamed HTTP request per generation."""

    def __init__(self, base_url: str, model: str, model_dir: Path, max_model_len: int) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.max_model_len = max_model_len
        self.model = model
        self.stats = EngineStats()
        self._client = httpx.AsyncClient(base_url=base_url, timeout=600, limits=httpx.Limits(max_connections=None))

    async def stream(self, prompt_ids: list[int], sampling: Sampling, request_id: str) -> AsyncIterator[Delta]:
        body = {
            "model": self.model,
            "prompt": prompt_ids,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": sampling.stop or None,
            "seed": sampling.seed,
            "presence_penalty": sampling.presence_penalty,
            "frequency_penalty": sampling.frequency_penalty,
            "repetition_penalty": sampling.repetition_penalty,  # vLLM's extension
            "ignore_eos": sampling.ignore_eos,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if sampling.structured:  # vLLM's own request field: the same constraint as in process
            body["structured_outputs"] = sampling.structured
        produced = 0
        try:
            # Leaving this block early closes the connection, which aborts the request in vLLM.
            async with aconnect_sse(self._client, "POST", "/v1/completions", json=body) as events:
                if events.response.status_code != 200:
                    raise DependencyDown(f"the LLM service answered {events.response.status_code}")
                async for event in events.aiter_sse():
                    if event.data == "[DONE]":
                        continue
                    chunk = json.loads(event.data)
                    if chunk.get("usage") and not chunk.get("choices"):
                        continue
                    choice = chunk["choices"][0]
                    produced += 1
                    yield Delta(choice.get("text") or "", produced, len(prompt_ids), choice.get("finish_reason"))
        except httpx.HTTPError as exc:
            raise DependencyDown(f"the LLM service is unreachable: {exc}") from exc

    # Checked by the LLM service itself when the request arrives; its parser is the service's business.
    sampling_defaults: dict[str, float] = {}

    def check(self, sampling: Sampling, param: str) -> None:
        pass

    def tool_call_reader(self, name: str) -> Any:
        raise NotImplementedError("the split's LLM service parses tool calls itself")

    async def abort(self, request_id: str) -> None:
        pass

    async def aclose(self) -> None:
        pass


def split_loader(llm_url: str):
    async def load(runtime: Runtime) -> None:
        settings = runtime.settings
        started = time.perf_counter()
        embedder = await asyncio.to_thread(Embedder, settings.embedder)
        store = await asyncio.to_thread(open_store, settings)
        await asyncio.to_thread(ingest_sample_if_empty, settings, embedder, store)
        engine = HttpEngine(
            llm_url, settings.engine.served_model_name, settings.model_path, settings.engine.max_model_len
        )
        generator = Generator(engine, settings, runtime.admission)  # type: ignore[arg-type]
        runtime.timings_s["time_to_ready"] = round(time.perf_counter() - started, 2)
        runtime.ready(Services(generator, RagPipeline(generator, embedder, store, settings), store))

    return load


def main() -> None:
    import uvicorn

    from monolith.api.app import create_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/cpu.yaml"))
    parser.add_argument("--llm-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = load_settings(args.config)
    app = create_app(settings, loader=split_loader(args.llm_url))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
