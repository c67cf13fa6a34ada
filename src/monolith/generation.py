"""Turns prompts into engine calls: token budget checks, sampling defaults, tracked streams."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

from monolith import tracing
from monolith.admission import REALTIME, Admission, engine_priority, tracked
from monolith.config import Settings
from monolith.engine import CallReader, Delta, Engine, Sampling, TokenLogprob, chat_prompt_ids
from monolith.errors import BadRequest
from monolith.resume import can_resume, resumable
from monolith.tracing import traced_generation
from monolith.twin_slots import TwinSlots
from monolith.work import Work

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Completion:
    """One finished choice; `logprobs` with sampling.logprobs, `prompt_logprobs` with sampling.prompt_logprobs."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    index: int = 0
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob] | None = None


def new_request_id(prefix: str = "req") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def check_max_tokens(settings: Settings, max_tokens: int) -> None:
    if max_tokens > settings.engine.max_tokens_limit:
        raise BadRequest(
            f"max_tokens is {max_tokens}, above this server's limit of {settings.engine.max_tokens_limit}",
            param="max_tokens",
        )


class Generator:
    def __init__(self, engine: Engine, settings: Settings, admission: Admission) -> None:
        self.engine = engine
        self.settings = settings
        self.admission = admission  # every generation is tracked here: its ticket, its lane's counts
        # A twin waiting for a LoRA slot lets one engine-full of generations go ahead before a drain is forced.
        self.traced = tracing.enabled()  # off: the engine stream is not wrapped at all
        self.twin_slots = TwinSlots(
            settings.engine.max_loras, settings.engine.max_num_seqs, settings.twins, settings.host_loras
        )
        # Tokenising a long prompt takes long enough to stall every other client (and /health/live): it runs
        # on one thread of its own, one call at a time, as vLLM's own server does it.
        self._tokenizer_thread = ThreadPoolExecutor(1, thread_name_prefix="tokenize")
        # Whether the chat template renders tool turns itself (Llama 3.1) or not (SmolLM2): read once.
        self.template_knows_tools = "tools" in str(engine.tokenizer.chat_template or "")
        self._special_ids = frozenset(engine.tokenizer.all_special_ids)
        # tool_choice "auto" the model's own way: its template shows the tools and vLLM's parser reads the calls.
        self.tool_reader: CallReader | None = None
        parser = settings.engine.tool_call_parser
        if parser and not self.template_knows_tools:
            log.warning("engine.tool_call_parser %s is not used: the chat template does not know tools", parser)
        elif parser:
            self.tool_reader = engine.tool_call_reader(parser)

    async def off_loop(self, work: Callable[..., T], *args: Any) -> T:
        """Runs `work` (anything that tokenises: the plan_* steps, a RAG prompt) on the tokenizer thread."""
        return await asyncio.get_running_loop().run_in_executor(self._tokenizer_thread, work, *args)

    def engine_stopped(self) -> bool:
        return self.engine.is_dead()

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len

    @property
    def answer_defaults(self) -> dict[str, float]:
        return self.engine.sampling_defaults

    @property
    def vocabulary_size(self) -> int:
        return len(self.engine.tokenizer)

    def is_special(self, token_id: int) -> bool:
        """A control token (BOS, EOS, a chat turn's markers), as TGI's token `special` says."""
        return token_id in self._special_ids

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.engine.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text, add_special_tokens=False))

    def chat_ids(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        return chat_prompt_ids(self.engine.tokenizer, messages, add_generation_prompt, tools)

    def text_ids(self, text: str) -> list[int]:
        return self.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.engine.tokenizer.decode(ids)

    def check_token_ids(self, ids: list[int], param: str) -> None:
        vocab = self.vocabulary_size
        bad = next((i for i in ids if not 0 <= i < vocab), None)
        if bad is not None:
            raise BadRequest(f"token id {bad} is outside this model's vocabulary (0 to {vocab - 1})", param=param)

    def max_tokens(self, requested: int | None) -> int:
        return requested if requested is not None else self.settings.engine.default_max_tokens

    def check_fits(self, prompt_ids: list[int], max_tokens: int, param: str) -> None:
        check_max_tokens(self.settings, max_tokens)
        if len(prompt_ids) + max_tokens > self.max_model_len:
            raise BadRequest(
                f"the prompt has {len(prompt_ids)} tokens and max_tokens is {max_tokens}; together they exceed "
                f"the context window of {self.max_model_len} tokens",
                param=param,
            )

    def stream(
        self, prompt_ids: list[int], sampling: Sampling, request_id: str, work: Work, timeout_s: float | None = None
    ) -> AsyncIterator[Delta]:
        """One generation for `work`: under its ticket (or one of its own, in its lane, for `timeout_s`), at its
        lane's engine priority; a background one holding a slot can pause and resume (monolith.resume)."""
        timeout = timeout_s or self.settings.server.request_timeout_s

        def attempt(ids: list[int], sampling: Sampling, request_id: str) -> AsyncIterator[Delta]:
            if self.settings.scheduling.policy == "priority":  # overdue may change while a generation is paused
                sampling = replace(sampling, priority=engine_priority(work.lane, sampling.priority, work.overdue))
            engine_stream = self.engine.stream(ids, sampling, request_id)
            if sampling.adapter:  # a twin's generation waits its turn for a LoRA slot, fairly (monolith.twin_slots)
                engine_stream = self.twin_slots.gated(sampling.adapter, work.lane == REALTIME, engine_stream)
            model = sampling.adapter or self.settings.engine.served_model_name
            if self.traced:
                prompt = self.engine.tokenizer.decode(ids) if tracing.capture_content() else None
                engine_stream = traced_generation(engine_stream, sampling, model, request_id, work.lane, prompt)
            return tracked(self.admission, engine_stream, timeout, work.lane, work.ticket, model)

        if work.hold is not None and can_resume(sampling):
            decode = partial(self.engine.tokenizer.decode, skip_special_tokens=True)
            return resumable(
                attempt, self.engine.abort, prompt_ids, sampling, request_id, work.hold, work.ticket, decode
            )
        return attempt(prompt_ids, sampling, request_id)

    def check_sampling(self, sampling: Sampling, param: str) -> None:
        """The engine's own checks (values, a structured-output grammar), before anything is queued."""
        self.check_priority(sampling.priority)
        self.engine.check(sampling, param)

    def check_priority(self, priority: int) -> None:
        """A request's own priority means something only under the priority policy (vLLM refuses it otherwise)."""
        if priority and self.settings.scheduling.policy != "priority":
            raise BadRequest("priority needs the engine's priority scheduling (scheduling.policy)", param="priority")

    async def complete_all(
        self, prompt_ids: list[int], sampling: Sampling, request_id: str, work: Work, timeout_s: float | None = None
    ) -> list[Completion]:
        """The request's `sampling.n` choices, in index order."""
        choices = [Completion("", None, len(prompt_ids), 0, i) for i in range(sampling.n)]
        parts: list[list[str]] = [[] for _ in choices]
        prompt_logprobs = None
        async for delta in self.stream(prompt_ids, sampling, request_id, work, timeout_s):
            choice = choices[delta.index]
            parts[delta.index].append(delta.text)
            choice.completion_tokens = delta.completion_tokens
            choice.finish_reason = delta.finish_reason or choice.finish_reason
            if delta.logprobs is not None:
                choice.logprobs = [*(choice.logprobs or []), *delta.logprobs]
            prompt_logprobs = prompt_logprobs or delta.prompt_logprobs
        for choice, texts in zip(choices, parts, strict=True):
            choice.text = "".join(texts)
            choice.prompt_logprobs = prompt_logprobs
        return choices

    async def aclose(self) -> None:
        await self.engine.aclose()
        self._tokenizer_thread.shutdown(wait=False)

    async def complete(
        self, prompt_ids: list[int], sampling: Sampling, request_id: str, work: Work, timeout_s: float | None = None
    ) -> Completion:
        return (await self.complete_all(prompt_ids, sampling, request_id, work, timeout_s))[0]
