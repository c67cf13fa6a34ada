"""A preempted background generation pauses and resumes from its own tokens instead of starting over.

vLLM frees a slot only when a sequence ends, so the background budget makes room for real-time arrivals by
aborting the youngest background generation (scheduling.BackgroundBudget). Started over, everything it had
generated is decoded again: `make bench` (mixed) preempted 37-45 of 48 background items per run, and the engine
spent about half as much CPU again as `vllm serve` for the same backlog. Here the abort keeps the tokens made so
far; when the budget has room again (before any new background item starts), the generation goes on as a new
engine request whose prompt is the old prompt plus those tokens, for the tokens still to make. That is how vLLM
itself resumes a sequence it preempted for KV-cache space (recompute), and the prefix cache still holds most of
those blocks. The caller sees one generation: text, token counts and logprobs run on across the pause.

The text of a resumed attempt is decoded here, from the tokens, as the rest of the text so far (`Continuation`):
vLLM decodes a new request's tokens after its prompt, and when that prompt ends inside a character (a pause
between the byte tokens of an emoji, whose text vLLM had held back) its first text is the whole prompt again,
chat template and all (vllm-project/vllm#48853: its DecodeStream, primed with those ids, has no text to start
from; seen on this engine with SmolLM2, tests/test_resume.py).

Only where the continuation is the same generation: one choice, no seed (a seeded sample would no longer be the
one the seed promises), no structured output (the grammar's state is not carried over), no presence or
frequency penalty (vLLM counts those over output tokens, which become prompt tokens), no stop strings (one
spanning the pause would be missed) and no prompt logprobs (they would cover the tokens made). Anything else
starts over.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace

from monolith import tracing
from monolith.admission import Ticket
from monolith.engine import Delta, Sampling
from monolith.scheduling import Hold

Attempt = Callable[[list[int], Sampling, str], AsyncIterator[Delta]]
Decode = Callable[[list[int]], str]  # token ids to text, special tokens skipped (as vLLM decodes an answer)

REPLACEMENT = "\ufffd"  # what a decoder gives for the bytes of a character it has not seen the end of
CONTEXT_TOKENS = 8  # decoded with each step: more tokens than the longest character takes (4 bytes)

RESUME_MARGIN_S = 30.0  # a paused job resumes only while its deadline leaves it this long to finish
_aborting: set[asyncio.Task] = set()  # strong references to the abort tasks a pause starts


async def resume_in_time(held: Hold, ticket: Ticket | None) -> None:
    """Waits for room to resume, while the request's deadline leaves time to finish: a job's one ticket runs from
    its start, pauses included. Past that the generation starts over as a preempted one does (its runner requeues
    it, and the next run has a deadline of its own). `ticket`: None for a batch line, whose every engine request
    has a deadline of its own."""
    patience = None if ticket is None else max(0.0, ticket.deadline - time.monotonic() - RESUME_MARGIN_S)
    try:
        async with asyncio.timeout(patience):
            await held.budget.resume(held)
    except TimeoutError:
        held.preempted = True
        raise asyncio.CancelledError from None


class Continuation:
    """The text of the tokens a resumed attempt makes, as they continue `made`: each step decodes the last few
    tokens with the new ones and gives what the new ones add. Like vLLM's own stream it holds back a character
    whose bytes have not all come, and the earlier attempts held back the same: the text they gave ends at the
    last whole character of `made`."""

    def __init__(self, decode: Decode, made: list[int]) -> None:
        self.decode = decode
        whole = len(made)  # the tokens whose text was given: all but those of an unfinished last character
        while whole > max(0, len(made) - CONTEXT_TOKENS) and decode(self._context(made, whole)).endswith(REPLACEMENT):
            whole -= 1
        self.ids = self._context(made, whole) + made[whole:]
        self.given = decode(self._context(made, whole))

    @staticmethod
    def _context(made: list[int], end: int) -> list[int]:
        return made[max(0, end - CONTEXT_TOKENS) : end]

    def text(self, new: tuple[int, ...]) -> str:
        self.ids += new
        decoded = self.decode(self.ids)
        if not new or decoded.endswith(REPLACEMENT):
            return ""
        added = decoded[len(self.given) :]
        self.ids = self.ids[-CONTEXT_TOKENS:]
        self.given = self.decode(self.ids)
        return added


def can_resume(sampling: Sampling) -> bool:
    return (
        sampling.n == 1
        and sampling.seed is None
        and not sampling.structured
        and not sampling.stop
        and not sampling.presence_penalty
        and not sampling.frequency_penalty
        and sampling.prompt_logprobs is None
    )


async def resumable(
    attempt: Attempt,
    abort: Callable[[str], Awaitable[None]],
    prompt_ids: list[int],
    sampling: Sampling,
    request_id: str,
    held: Hold,
    ticket: Ticket | None,
    decode: Decode,
) -> AsyncIterator[Delta]:
    """`attempt` runs one engine request; `abort` stops one by id; `held` is the background slot the generation
    holds, `ticket` its request's (whose deadline bounds a pause). Yields the deltas of every attempt as one
    generation's (completion_tokens a running total over all of them; after a pause the text is `decode`d here).
    Each attempt reads the slot's `overdue` anew: a generation that waited past its time goes on as real-time."""
    made: list[int] = []
    paused = False

    def pause() -> None:
        nonlocal paused
        paused = True
        task = asyncio.get_running_loop().create_task(abort(request_id_now))  # frees the slot at once
        _aborting.add(task)
        task.add_done_callback(_aborting.discard)

    try:
        for number in itertools.count():
            request_id_now = request_id if number == 0 else f"{request_id}-resumed-{number}"
            rest = replace(
                sampling,
                max_tokens=sampling.max_tokens - len(made),
                min_tokens=max(0, sampling.min_tokens - len(made)),
            )
            held.pause = pause
            finished = False
            # Paused before its first token, the attempt's prompt is the original one: vLLM's text is right.
            continuation = Continuation(decode, made) if made else None
            try:
                async with aclosing(attempt(prompt_ids + made, rest, request_id_now)) as deltas:
                    async for delta in deltas:
                        # After a pause the engine may still run a step before the abort takes effect: its tokens
                        # are kept (started again, they were made twice: `make test` saw 405 tokens for 404), and
                        # vLLM's last output for the abort (finish_reason "abort", those tokens merged into it when
                        # we read late) ends this attempt, not the generation.
                        ended_by_pause = paused and delta.finish_reason == "abort"
                        if ended_by_pause:
                            delta = replace(delta, finish_reason=None, stop_reason=None)
                        if continuation is not None:
                            delta = replace(delta, text=continuation.text(delta.token_ids))
                        if delta.token_ids or not ended_by_pause:
                            made += delta.token_ids
                            finished = delta.finish_reason is not None
                            yield replace(delta, completion_tokens=len(made), prompt_tokens=len(prompt_ids))
                        if ended_by_pause:
                            break
            finally:
                held.pause = None
            if finished or not paused:
                return
            paused = False
            # On the work's span (a job's run, a batch line): where its time went while real-time had the slot.
            tracing.event("preempted", {"monolith.attempt": number, "gen_ai.usage.output_tokens": len(made)})
            await resume_in_time(held, ticket)
            tracing.event("resumed", {"monolith.attempt": number + 1})
    finally:
        held.budget.forget_pause(held)  # a pause that came after the last delta: nothing is waiting to resume
