"""/v1/completions: text or token-id prompts, n choices each, echo (with prompt logprobs: `max_tokens: 0` scores
a prompt, as evaluation harnesses do), structured outputs; JSON or streamed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from monolith.engine import Sampling, TokenLogprob
from monolith.errors import BadRequest
from monolith.generation import Completion, Generator
from monolith.protocol.completions import MAX_PROMPTS, CompletionRequest
from monolith.serving.answers import DONE, finish, frame, usage
from monolith.serving.checks import refuse_unsupported
from monolith.serving.logprobs import completion_logprobs
from monolith.serving.models import resolve_model
from monolith.serving.sampling import structured_constraint, wire_sampling
from monolith.serving.services import Services
from monolith.work import Work


@dataclass
class CompletionPlan:
    model: str
    prompts: list[str]
    prompt_ids: list[list[int]]
    sampling: Sampling
    echo: bool
    include_usage: bool
    logprobs: int | None = None  # None: no logprobs asked
    echo_only: bool = False  # max_tokens 0 with echo: the prompt (and its logprobs) only


def prompt_inputs(generator: Generator, prompt: str | list[str | int | list[int]]) -> tuple[list[str], list[list[int]]]:
    """The prompts as texts (for echo) and token ids, from any of OpenAI's four prompt forms."""
    if isinstance(prompt, str):
        return [prompt], [generator.text_ids(prompt)]
    if not prompt:
        raise BadRequest("the prompt list is empty", param="prompt")
    count_prompts(prompt)
    if all(isinstance(p, str) for p in prompt):
        texts = [str(p) for p in prompt]
        return texts, [generator.text_ids(t) for t in texts]
    if all(isinstance(p, int) for p in prompt):
        ids = [[int(p) for p in prompt]]  # type: ignore[arg-type]
    elif all(isinstance(p, list) for p in prompt):
        ids = [list(p) for p in prompt]  # type: ignore[arg-type]
    else:
        raise BadRequest(
            "prompt must be a string, a list of strings, a list of token ids or a list of token-id lists, not a mix",
            param="prompt",
        )
    for i, one in enumerate(ids):
        if not one:
            raise BadRequest("a token-id prompt is empty", param=f"prompt[{i}]")
        generator.check_token_ids(one, "prompt")
    return [generator.decode(one) for one in ids], ids


def count_prompts(prompt: str | list[str | int | list[int]]) -> int:
    """How many generations a prompt makes: one per prompt of a list of texts or of token-id lists (a list of
    token ids is one prompt); a list past MAX_PROMPTS is a 400."""
    if isinstance(prompt, str) or not prompt or isinstance(prompt[0], int):
        return 1
    if len(prompt) > MAX_PROMPTS:
        raise BadRequest(f"{len(prompt)} prompts in one request; the limit is {MAX_PROMPTS}", param="prompt")
    return len(prompt)


def prompt_count(data: CompletionRequest) -> int:
    """A completions request's generations, each admitted as a request of its own."""
    return count_prompts(data.prompt)


def plan_completion(services: Services, data: CompletionRequest) -> CompletionPlan:
    settings, generator = services.settings, services.generator
    refuse_unsupported(data)
    model = resolve_model(settings, data.model)
    if model.rag:
        raise BadRequest("completions take no RAG: use /v1/chat/completions or /rag", param="model")
    prompts, ids = prompt_inputs(generator, data.prompt)
    if data.stream and len(prompts) > 1:
        raise BadRequest("streaming takes a single prompt", param="prompt")
    echo_only = data.max_tokens == 0
    if echo_only and not data.echo:
        raise BadRequest("max_tokens 0 is only for echo: true (scoring a prompt)", param="max_tokens")
    # vLLM's way to score a prompt: generate one token, return none.
    max_tokens = 1 if echo_only else (data.max_tokens or settings.engine.default_max_tokens)
    structured, param = structured_constraint(data)
    prompt_logprobs = data.logprobs if data.echo and data.logprobs is not None else None
    sampling = wire_sampling(generator, data, max_tokens, structured, data.logprobs, prompt_logprobs, model.twin)
    generator.check_sampling(sampling, param)
    for one in ids:
        generator.check_fits(one, max_tokens, "prompt")
    include_usage = bool(data.stream_options and data.stream_options.include_usage)
    return CompletionPlan(data.model, prompts, ids, sampling, data.echo, include_usage, data.logprobs, echo_only)


def choice_text(plan: CompletionPlan, prompt: str, done: Completion) -> str:
    if plan.echo_only:
        return prompt
    return (prompt if plan.echo else "") + done.text


def choice_logprobs(plan: CompletionPlan, done: Completion) -> dict[str, Any] | None:
    if plan.logprobs is None:
        return None
    tokens: list[TokenLogprob] = []
    if plan.echo:
        tokens += done.prompt_logprobs or []
    if not plan.echo_only:
        tokens += done.logprobs or []
    return completion_logprobs(tokens, plan.logprobs)


async def run_completion(services: Services, plan: CompletionPlan, request_id: str, work: Work) -> dict[str, Any]:
    """Each prompt under its own ticket where `work` has one per prompt (a real-time request, each prompt admitted
    as a request of its own), else under the request's (an async job). Choice i*n+j is prompt i's j-th choice, as
    in vLLM."""

    async def one(i: int, ids: list[int]) -> list[Completion]:
        return await services.generator.complete_all(ids, plan.sampling, f"{request_id}-{i}", work.prompt(i))

    results = await asyncio.gather(*(one(i, ids) for i, ids in enumerate(plan.prompt_ids)))
    n = plan.sampling.n
    choices = [
        {
            "index": i * n + done.index,
            "text": choice_text(plan, plan.prompts[i], done),
            "finish_reason": "length" if plan.echo_only else finish(done.finish_reason),
            "logprobs": choice_logprobs(plan, done),
        }
        for i, dones in enumerate(results)
        for done in dones
    ]
    generated = 0 if plan.echo_only else sum(done.completion_tokens for dones in results for done in dones)
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": plan.model,
        "choices": choices,
        "usage": usage(sum(len(ids) for ids in plan.prompt_ids), generated),
    }


async def completion_chunks(
    services: Services, plan: CompletionPlan, request_id: str, work: Work
) -> AsyncIterator[bytes]:
    """One prompt, its n choices interleaved; with echo, each choice opens with the prompt (and its logprobs)."""
    head = {"id": request_id, "object": "text_completion", "created": int(time.time()), "model": plan.model}
    prompt_ids = plan.prompt_ids[0]

    offsets: dict[int, int] = {}  # per choice: where its next token starts in its whole text

    def chunk(index: int, text: str, reason: str | None, tokens: list[TokenLogprob] | None) -> bytes:
        logprobs = None
        if plan.logprobs is not None:
            start = offsets.get(index, 0)
            logprobs = completion_logprobs(tokens or [], plan.logprobs, start)
            offsets[index] = start + sum(len(t.token) for t in tokens or [])
        return frame(
            {**head, "choices": [{"index": index, "text": text, "finish_reason": reason, "logprobs": logprobs}]}
        )

    echoed: set[int] = set()
    prompt_logprobs: list[TokenLogprob] | None = None
    tokens: dict[int, int] = {}
    async for delta in services.generator.stream(prompt_ids, plan.sampling, request_id, work):
        prompt_logprobs = prompt_logprobs or delta.prompt_logprobs
        if plan.echo and delta.index not in echoed:
            echoed.add(delta.index)
            yield chunk(delta.index, plan.prompts[0], "length" if plan.echo_only else None, prompt_logprobs)
        if plan.echo_only:
            continue
        tokens[delta.index] = delta.completion_tokens
        if delta.text or delta.finish_reason:
            yield chunk(delta.index, delta.text, finish(delta.finish_reason), delta.logprobs)
    if plan.include_usage:
        yield frame({**head, "choices": [], "usage": usage(len(prompt_ids), sum(tokens.values()))})
    yield DONE
