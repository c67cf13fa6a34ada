"""The engine contract: what serving may ask of an engine, and the values that cross it. The vLLM adapter
(`engine.vllm_engine`) and the tests' scripted engine implement it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


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
    # The engine's scheduling priority (lower first), under engine policy "priority"; the Generator puts the
    # request's lane into it (admission.engine_priority).
    priority: int = 0
    # A twin's name: the engine adds that twin's LoRA adapter to the base weights (None: the base alone).
    adapter: str | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """One token with its log probability, and the `top` alternatives (id, text, logprob) best first."""

    token_id: int
    token: str
    logprob: float | None  # None for a prompt's first token, which nothing predicts
    top: list[tuple[int, str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class EngineTimings:
    """What the engine measured of one generation, on its last delta (vLLM's request stats; the scripted engine
    has none): seconds waiting in the engine's queue, prefilling the prompt, decoding after the first token, from
    arrival to the first token, and how often the engine preempted it for KV-cache room."""

    queued_s: float
    prefill_s: float
    decode_s: float
    first_token_s: float
    preemptions: int


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
    stop_reason: str | int | None = None  # on the last: the stop string or token id that ended it (None: EOS)
    token_ids: tuple[int, ...] = ()  # the new tokens (a paused generation resumes from them: monolith.resume)
    timings: EngineTimings | None = None  # on the last delta, where the engine measures them


@dataclass
class EngineStats:
    waiting: int = 0
    running: int = 0
    kv_cache_usage: float = 0.0
    # Prompt tokens the engine looked up in its prefix cache, and those it found there (not computed again).
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    # The twins served (their names), and each one's requests running and waiting in the engine now.
    twins: tuple[str, ...] = ()
    twins_running: dict[str, int] = field(default_factory=dict)
    twins_waiting: dict[str, int] = field(default_factory=dict)


class Tokenizer(Protocol):
    chat_template: Any  # the template's source (None where the tokenizer has none)
    all_special_ids: list[int]

    def __len__(self) -> int: ...
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...
    def apply_chat_template(self, messages: list[dict[str, Any]], **kw: Any) -> Any: ...


class CallReader(Protocol):
    def read(self, text: str, tools: list[dict[str, Any]]) -> tuple[str | None, list[tuple[str, str]]]:
        """(content, [(function name, arguments as JSON)]) of one whole answer."""
        ...


class Engine(Protocol):
    """What the serving layer needs from an engine, all of it: nothing above calls getattr on an engine or
    reaches past the Generator into it. The scripted test engine implements it too."""

    tokenizer: Tokenizer
    max_model_len: int
    stats: EngineStats
    # The model's own sampling defaults (its generation_config.json), as vLLM reads them.
    sampling_defaults: dict[str, float]

    def check(self, sampling: Sampling, param: str) -> None:
        """What the engine would refuse at submit (values, a structured-output grammar), as a 400 naming param."""
        ...

    def tool_call_reader(self, name: str) -> CallReader:
        """The engine's parser `name` for calls a model writes its own way; an unknown name raises."""
        ...

    def is_dead(self) -> bool:
        """The engine stopped for good (its core process died): nothing it holds or is given will finish."""
        ...

    def stream(self, prompt_ids: list[int], sampling: Sampling, request_id: str) -> AsyncIterator[Delta]: ...
    async def abort(self, request_id: str) -> None: ...
    async def aclose(self) -> None: ...


def sampling_field(message: str) -> str | None:
    """vLLM names the field first ("top_p must be in (0, 1], got 2.0.")."""
    first = message.split(" ", 1)[0].strip("'`\"")
    return first if first in Sampling.__dataclass_fields__ else None
