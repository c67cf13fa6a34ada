"""The engine contract and its vLLM implementation. The only module that imports vllm."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

from monolith.config import Settings
from monolith.errors import BadRequest, DependencyDown


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 0.7
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    # Structured output, as vLLM's StructuredOutputsParams takes it: {"choice": [...]}, {"json": schema},
    # {"regex": ...} or {"grammar": ...}; the engine's grammar backend (xgrammar) constrains the tokens.
    structured: dict[str, Any] | None = None


@dataclass(frozen=True)
class Delta:
    """New text since the last delta; token counts are running totals."""

    text: str
    completion_tokens: int
    prompt_tokens: int
    finish_reason: str | None = None


@dataclass
class EngineStats:
    waiting: int = 0
    running: int = 0
    kv_cache_usage: float = 0.0


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...
    def apply_chat_template(self, messages: list[dict[str, str]], **kw: Any) -> Any: ...


class Engine(Protocol):
    """What the serving layer needs from an engine; the scripted test engine implements it too."""

    tokenizer: Tokenizer
    max_model_len: int
    stats: EngineStats
    # The model's own sampling defaults (its generation_config.json), as vLLM reads them.
    sampling_defaults: dict[str, float]

    def stream(self, prompt_ids: list[int], sampling: Sampling, request_id: str) -> AsyncIterator[Delta]: ...
    async def abort(self, request_id: str) -> None: ...
    async def aclose(self) -> None: ...


def sampling_field(message: str) -> str | None:
    """vLLM names the field first ("top_p must be in (0, 1], got 2.0.")."""
    first = message.split(" ", 1)[0].strip("'`\"")
    return first if first in Sampling.__dataclass_fields__ else None


def chat_prompt_ids(tokenizer: Tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """The model's own chat template, with the assistant turn opened."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
    return list(ids)


class VllmEngine:
    """AsyncLLM in this process (its engine core runs in a child process that vLLM manages)."""

    def __init__(self, settings: Settings) -> None:
        cfg = settings.engine
        # Read by vLLM when the engine is built; must be set before the import below.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if cfg.multiprocessing else "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.cpu_kv_cache_gb))
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.stats = EngineStats()
        args = AsyncEngineArgs(
            model=str(settings.model_path),
            served_model_name=[cfg.served_model_name],
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            max_num_seqs=cfg.max_num_seqs,
            max_num_batched_tokens=cfg.max_num_batched_tokens,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            enforce_eager=cfg.enforce_eager,
            tensor_parallel_size=cfg.tensor_parallel_size,
            seed=cfg.seed,
            enable_log_requests=False,
        )
        self._llm = AsyncLLM.from_engine_args(args, stat_loggers=[_stats_logger_factory(self.stats)])
        self.tokenizer: Tokenizer = self._llm.get_tokenizer()
        self.max_model_len: int = self._llm.model_config.max_model_len
        self.sampling_defaults = {
            name: float(value)
            for name, value in self._llm.model_config.get_diff_sampling_param().items()
            if name in ("temperature", "top_p", "repetition_penalty")
        }

    async def stream(self, prompt_ids: list[int], sampling: Sampling, request_id: str) -> AsyncIterator[Delta]:
        from vllm import SamplingParams, TokensPrompt
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            params = SamplingParams(
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                stop=sampling.stop or None,
                seed=sampling.seed,
                presence_penalty=sampling.presence_penalty,
                frequency_penalty=sampling.frequency_penalty,
                repetition_penalty=sampling.repetition_penalty,
                ignore_eos=sampling.ignore_eos,
                structured_outputs=StructuredOutputsParams(**sampling.structured) if sampling.structured else None,
                output_kind=RequestOutputKind.DELTA,
            )
        except (ValueError, TypeError) as exc:  # vLLM's own checks: a client's values, so a 400
            raise BadRequest(f"invalid sampling parameters: {exc}", param=sampling_field(str(exc))) from None
        produced = 0
        try:
            # aclosing: when our caller leaves early, vLLM's generator sees GeneratorExit and aborts.
            outputs = self._llm.generate(TokensPrompt(prompt_token_ids=prompt_ids), params, request_id)
            async with aclosing(outputs):
                async for out in outputs:
                    choice = out.outputs[0]
                    produced += len(choice.token_ids)
                    finish = choice.finish_reason if out.finished else None
                    yield Delta(choice.text, produced, len(prompt_ids), finish)
        except EngineDeadError as exc:
            raise DependencyDown("the inference engine has stopped") from exc

    async def abort(self, request_id: str) -> None:
        await self._llm.abort(request_id)

    async def aclose(self) -> None:
        """A normal exit that logs no error: vLLM's output handler is stopped before the engine core it reads
        from (else it reports the core's exit as an EngineDeadError), and AsyncLLM is dropped while the
        interpreter is whole (its __del__ shuts down again, and fails if that waits for the interpreter's exit)."""
        handler = getattr(self._llm, "output_handler", None)
        if handler is not None:
            handler.cancel()
            await asyncio.wait({handler})
        await asyncio.to_thread(self.shutdown)

    def shutdown(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None
            gc.collect()


def _stats_logger_factory(stats: EngineStats):
    """vLLM pushes scheduler stats to stat loggers after each step; keep the latest for /metrics."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class SchedulerStatsSink(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0):
            if scheduler_stats is not None:
                stats.waiting = scheduler_stats.num_waiting_reqs
                stats.running = scheduler_stats.num_running_reqs
                stats.kv_cache_usage = scheduler_stats.kv_cache_usage

        def log_engine_initialized(self) -> None:
            pass

    return SchedulerStatsSink


async def load_engine(settings: Settings) -> VllmEngine:
    """Building the engine blocks for tens of seconds; keep the event loop answering health checks."""
    return await asyncio.to_thread(VllmEngine, settings)
