"""A preempted background generation pauses and goes on from its own tokens (monolith.resume), through the real
background budget, with engine attempts that stand in for vLLM (the real engine's side: a preempted job's answer
equals the uninterrupted one, tests/jobs/test_preemption.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from monolith.admission import ASYNC, Admission
from monolith.engine import Delta, Sampling, chat_prompt_ids
from monolith.resume import RESUME_MARGIN_S, Continuation, can_resume, resumable
from monolith.scheduling import BackgroundBudget
from tests.test_scheduling import settings

CAPACITY = 8
PROMPT = [101, 102, 103]


@dataclass
class Engine:
    """Each request makes token 1000 + its position in the whole answer, one every `gap_s`; abort ends a running
    request with vLLM's own last delta (finish_reason "abort"). With `late_abort` the abort takes effect a step
    late: the step that was running makes its token, which comes merged into that last delta (vLLM's output
    collector merges what the reader has not taken yet)."""

    gap_s: float = 0.01
    late_abort: bool = False
    calls: list[tuple[list[int], Sampling, str]] = field(default_factory=list)
    aborted: set[str] = field(default_factory=set)

    async def attempt(self, ids: list[int], sampling: Sampling, request_id: str) -> AsyncIterator[Delta]:
        self.calls.append((ids, sampling, request_id))
        done = len(ids) - len(PROMPT)
        for i in range(1, sampling.max_tokens + 1):
            await asyncio.sleep(self.gap_s)
            token = 1000 + done + i - 1
            if request_id in self.aborted:
                if self.late_abort:
                    yield Delta(f" t{token}", i, len(ids), "abort", token_ids=(token,))
                else:
                    yield Delta("", i - 1, len(ids), "abort")
                return
            finish = "length" if i == sampling.max_tokens else None
            yield Delta(f" t{token}", i, len(ids), finish, token_ids=(token,))

    async def abort(self, request_id: str) -> None:
        self.aborted.add(request_id)

    @staticmethod
    def decode(ids: list[int]) -> str:
        return "".join(f" t{token}" for token in ids)


async def answer(engine: Engine, budget: BackgroundBudget, sampling: Sampling) -> list[Delta]:
    held = budget.hold(ASYNC, False, time.time())
    try:
        return [
            d
            async for d in resumable(engine.attempt, engine.abort, PROMPT, sampling, "job-1", held, None, engine.decode)
        ]
    finally:
        budget.release(held)


async def test_a_paused_generation_resumes_from_its_tokens_once_there_is_room() -> None:
    admission = Admission()
    budget = BackgroundBudget(settings(realtime_headroom_slots=0), admission)
    budget.start()  # a real-time arrival preempts through it
    budget.limit = CAPACITY
    engine = Engine()
    others = [budget.hold(ASYNC, False, time.time()) for _ in range(CAPACITY - 1)]
    job = asyncio.create_task(answer(engine, budget, Sampling(max_tokens=20, min_tokens=15, temperature=0)))
    while len(engine.calls) < 1 or not budget.holds[-1].pause:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # a few tokens made

    tickets = [admission.admit(30)]  # a real-time arrival to the full engine: the youngest (the job) pauses
    await asyncio.sleep(0.05)
    assert len(budget.paused) == 1 and budget.preempted == 1 and len(engine.calls) == 1
    assert not budget.room(), "a paused generation goes on before any new item starts"
    tickets[0].release()
    budget.release(others.pop())  # a slot frees: the paused job takes it
    deltas = await asyncio.wait_for(job, 10)
    await budget.stop()

    assert len(engine.calls) == 2, "paused once, resumed once"
    (_, _, first_id), (ids, rest, resumed_id) = engine.calls
    made = len(ids) - len(PROMPT)
    assert 0 < made < 20 and ids[: len(PROMPT)] == PROMPT
    assert ids[len(PROMPT) :] == [1000 + i for i in range(made)], "the prompt is the old one plus the tokens made"
    assert (rest.max_tokens, rest.min_tokens) == (20 - made, max(0, 15 - made))
    assert resumed_id != first_id and first_id in engine.aborted
    text = "".join(d.text for d in deltas)
    assert text == "".join(f" t{1000 + i}" for i in range(20)), "one answer, no token twice, none missing"
    assert [d.completion_tokens for d in deltas] == list(range(1, 21))
    assert {d.prompt_tokens for d in deltas} == {len(PROMPT)} and deltas[-1].finish_reason == "length"
    assert all(d.finish_reason != "abort" for d in deltas)
    assert not budget.paused


async def test_a_token_made_after_the_pause_before_the_abort_took_effect_is_kept_not_made_again() -> None:
    budget = BackgroundBudget(settings(), Admission())
    engine = Engine(late_abort=True)
    held = budget.hold(ASYNC, False, time.time())
    generation = resumable(
        engine.attempt, engine.abort, PROMPT, Sampling(max_tokens=10), "job-4", held, None, engine.decode
    )
    deltas = []
    async for delta in generation:
        deltas.append(delta)
        if len(deltas) == 3:
            budget._preempt(held)  # pauses; room at once (nothing else holds a slot), so it resumes
    (_, _, first_id), (ids, rest, _) = engine.calls
    assert first_id in engine.aborted
    assert ids[len(PROMPT) :] == [1000, 1001, 1002, 1003], "the late token is part of the prompt it goes on from"
    assert rest.max_tokens == 6
    assert "".join(d.text for d in deltas) == "".join(f" t{1000 + i}" for i in range(10)), "no token twice"
    assert [d.completion_tokens for d in deltas] == list(range(1, 11))
    assert all(d.finish_reason != "abort" for d in deltas) and deltas[-1].finish_reason == "length"


async def test_a_generation_that_ends_as_it_is_paused_does_not_wait_to_resume() -> None:
    budget = BackgroundBudget(settings(), Admission())
    engine = Engine(gap_s=0.0)
    held = budget.hold(ASYNC, False, time.time())
    deltas = []
    async for delta in resumable(
        engine.attempt, engine.abort, PROMPT, Sampling(max_tokens=3), "job-2", held, None, engine.decode
    ):
        deltas.append(delta)
        if delta.finish_reason:
            budget._preempt(held)  # the last token was out before the pause took effect
    assert len(deltas) == 3 and len(engine.calls) == 1
    assert not budget.paused and budget.room(), "nothing waits to resume"


async def test_a_job_whose_deadline_would_pass_while_paused_starts_over_instead() -> None:
    """A job's ticket runs from its start, pauses included: past RESUME_MARGIN_S before it, the generation gives
    up its tokens and ends as a preempted one did before resuming (its runner requeues it, run not counted)."""
    admission = Admission()
    budget = BackgroundBudget(settings(realtime_headroom_slots=0), admission)
    budget.limit = CAPACITY
    engine = Engine()
    held = budget.hold(ASYNC, False, time.time())
    others = [budget.hold(ASYNC, False, time.time()) for _ in range(CAPACITY - 1)]
    ticket = admission.admit(RESUME_MARGIN_S + 0.3, lane=ASYNC)
    deltas = []
    generation = resumable(
        engine.attempt, engine.abort, PROMPT, Sampling(max_tokens=50), "job-3", held, ticket, engine.decode
    )
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):  # without the deadline's patience: waits for room for ever
            async for delta in generation:
                deltas.append(delta)
                if len(deltas) == 3:
                    budget._preempt(held)
                    budget.hold(ASYNC, False, time.time())  # a real-time burst took the slot: no room to resume
    assert held.preempted and not budget.paused and len(engine.calls) == 1
    ticket.release()
    for other in others:
        budget.release(other)


@pytest.mark.parametrize(
    "change",
    [
        {"n": 2},
        {"seed": 7},
        {"structured": {"choice": ["a", "b"]}},
        {"stop": ["\n"]},
        {"presence_penalty": 0.5},
        {"frequency_penalty": 0.5},
        {"prompt_logprobs": 0},
    ],
)
def test_a_generation_that_would_not_go_on_as_itself_starts_over_instead(change: dict) -> None:
    assert can_resume(Sampling(max_tokens=8, logprobs=2, repetition_penalty=1.2, min_tokens=2))
    assert not can_resume(Sampling(max_tokens=8, **change))


# Characters of several tokens each in SmolLM2's byte-level vocabulary (an emoji is 2-3 byte tokens, a kanji 1-3).
MULTIBYTE = "Grüße 日本語 🤖🎉 ok 😀"


@dataclass
class VllmTextEngine:
    """Makes the tokens of `answer` in order, each delta's text as vLLM's detokenizer gives it: a DecodeStream
    primed with the request's prompt ids (vllm/v1/engine/detokenizer.py), from the real tokenizers library."""

    tokenizer: Any
    answer: list[int]
    calls: int = 0
    aborted: set[str] = field(default_factory=set)

    async def attempt(self, ids: list[int], sampling: Sampling, request_id: str) -> AsyncIterator[Delta]:
        from tokenizers.decoders import DecodeStream

        self.calls += 1
        stream = DecodeStream(ids=ids, skip_special_tokens=True)
        done = len(ids) - len(self.prompt)
        for i in range(1, sampling.max_tokens + 1):
            await asyncio.sleep(0.01)
            if request_id in self.aborted:
                yield Delta("", i - 1, len(ids), "abort")
                return
            token = self.answer[done + i - 1]
            text = stream.step(self.tokenizer.backend_tokenizer, token) or ""
            yield Delta(text, i, len(ids), "length" if i == sampling.max_tokens else None, token_ids=(token,))

    async def abort(self, request_id: str) -> None:
        self.aborted.add(request_id)

    @property
    def prompt(self) -> list[int]:
        return chat_prompt_ids(self.tokenizer, [{"role": "user", "content": "Say hello."}])


@pytest.mark.parametrize("pause_after", range(1, 20))
async def test_a_pause_inside_a_character_gives_it_once_and_nothing_of_the_prompt(tokenizer, pause_after: int) -> None:
    """vLLM, resumed from a prompt that ends inside a character, gives the whole prompt's text again as its first
    text; the generation's text must still be its tokens' text, whichever token the pause came after."""
    answer = tokenizer.encode(MULTIBYTE, add_special_tokens=False)
    inside = [k for k in range(1, len(answer)) if tokenizer.decode(answer[:k]).endswith("\ufffd")]
    assert len(answer) == 20 and len(inside) == 9, "9 of the 19 places to pause are inside a character"
    engine = VllmTextEngine(tokenizer, answer)
    budget = BackgroundBudget(settings(), Admission())
    held = budget.hold(ASYNC, False, time.time())
    decode = partial(tokenizer.decode, skip_special_tokens=True)
    deltas = []
    async for delta in resumable(
        engine.attempt, engine.abort, engine.prompt, Sampling(max_tokens=len(answer)), "job-5", held, None, decode
    ):
        deltas.append(delta)
        if len(deltas) == pause_after:
            budget._preempt(held)  # pauses; room at once, so it resumes
    assert engine.calls == 2
    assert "".join(d.text for d in deltas) == MULTIBYTE
    assert [d.completion_tokens for d in deltas] == list(range(1, len(answer) + 1))


@pytest.mark.parametrize("text", [MULTIBYTE, "plain words, no more", "  spaces\tand\nnewlines ", "ﬁ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 — done"])
def test_a_continuation_adds_the_text_the_tokens_after_any_split_point_add(tokenizer, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    decode = partial(tokenizer.decode, skip_special_tokens=True)
    for split in range(len(ids) + 1):
        # The attempt before the pause gave the text of its tokens up to the last that ended a character: vLLM
        # holds a token back while the text ends inside a character.
        given = next(decode(ids[:end]) for end in range(split, -1, -1) if not decode(ids[:end]).endswith("\ufffd"))
        continuation = Continuation(decode, ids[:split])
        assert given + "".join(continuation.text((token,)) for token in ids[split:]) == text, split
