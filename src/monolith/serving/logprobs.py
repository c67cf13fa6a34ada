"""Log probabilities in OpenAI's two shapes: chat's `{"content": [{token, logprob, bytes, top_logprobs}]}` and
completions' `{tokens, token_logprobs, top_logprobs, text_offset}` (with echo, the prompt's tokens first)."""

from __future__ import annotations

from typing import Any

from monolith.engine import TokenLogprob

# JSON has no -inf; vLLM's server writes this floor instead, and so do we.
FLOOR = -9999.0


def _value(logprob: float | None) -> float | None:
    return None if logprob is None else max(logprob, FLOOR)


def _entry(token: str, logprob: float | None) -> dict[str, Any]:
    return {"token": token, "logprob": _value(logprob), "bytes": list(token.encode("utf-8"))}


def chat_logprobs(tokens: list[TokenLogprob], top: int) -> dict[str, Any]:
    return {
        "content": [
            {**_entry(t.token, t.logprob), "top_logprobs": [_entry(text, lp) for _, text, lp in t.top[:top]]}
            for t in tokens
        ],
        "refusal": None,
    }


def completion_logprobs(tokens: list[TokenLogprob], top: int, start_offset: int = 0) -> dict[str, Any]:
    """`top`: alternatives per token beside the chosen one (which is always in its dict, as in vLLM)."""
    offsets, offset = [], start_offset
    for t in tokens:
        offsets.append(offset)
        offset += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [_value(t.logprob) for t in tokens],
        "top_logprobs": [
            None if t.logprob is None else {t.token: _value(t.logprob), **{s: _value(lp) for _, s, lp in t.top[:top]}}
            for t in tokens
        ],
        "text_offset": offsets,
    }
