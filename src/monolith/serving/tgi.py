"""TGI's text generation on this engine: TGI's parameters as the engine's sampling, TGI's answers and stream
events. TGI's rules where they differ from OpenAI's: greedy unless `do_sample` or a sampling parameter asks
otherwise; `return_full_text` puts the prompt before the answer; `truncate` keeps the prompt's last tokens;
`max_new_tokens` 0 is refused (422, as TGI does)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from monolith.engine import Delta, Sampling, TokenLogprob
from monolith.errors import BadRequest
from monolith.protocol.common import honoured
from monolith.protocol.tgi import (
    TgiDetails,
    TgiParameters,
    TgiRequest,
    TgiResponse,
    TgiStreamDetails,
    TgiStreamEvent,
    TgiToken,
)
from monolith.serving.answers import frame
from monolith.serving.models import resolve_adapter
from monolith.serving.services import Services
from monolith.work import Work

# TGI's parameters this server recognises and cannot honour: a 422 naming each.
# Parameters TGI has and this server does not honour: why, and the values that ask for nothing (the schema's enum).
REFUSED = {
    "watermark": ("watermarking is not supported", (None, False)),
    "typical_p": ("typical_p sampling is not supported by this engine", (None,)),
    "top_n_tokens": ("top_n_tokens is not supported", (None,)),
}


@dataclass
class TgiPlan:
    prompt: str
    prompt_ids: list[int]
    sampling: Sampling
    params: TgiParameters


def refuse_unsupported(params: TgiParameters) -> None:
    for name, (why, off) in REFUSED.items():
        if not honoured(getattr(params, name), *off):
            raise BadRequest(why, param=f"parameters.{name}")
    if not honoured(params.best_of, None, 1):
        raise BadRequest("best_of above 1 is not supported (vLLM's engine dropped it)", param="parameters.best_of")


def tgi_sampling(services: Services, params: TgiParameters) -> Sampling:
    settings, generator = services.settings, services.generator
    model = resolve_adapter(settings, params.adapter_id, "parameters.adapter_id")
    max_tokens = params.max_new_tokens or settings.engine.default_max_tokens
    # TGI samples when asked to, or when any sampling parameter is set; otherwise it decodes greedily.
    sampling = params.do_sample or any(v is not None for v in (params.temperature, params.top_p, params.top_k))
    structured = None
    if params.grammar is not None and (params.grammar.type == "regex") != isinstance(params.grammar.value, str):
        why = "a regex grammar's value is a string, a json grammar's a JSON schema object"
        raise BadRequest(why, param="parameters.grammar.value")
    if params.grammar is not None:
        structured = {"json" if params.grammar.type == "json" else "regex": params.grammar.value}
    chosen = Sampling(
        max_tokens=max_tokens,
        temperature=(params.temperature or 1.0) if sampling else 0.0,
        top_p=params.top_p or 1.0,
        top_k=params.top_k or 0,
        stop=list(params.stop),
        seed=params.seed,
        repetition_penalty=params.repetition_penalty or 1.0,
        frequency_penalty=params.frequency_penalty or 0.0,
        structured=structured,
        logprobs=0,  # the chosen token's id and logprob: TGI's tokens carry both
        prompt_logprobs=0 if params.details and params.decoder_input_details else None,
        adapter=model.twin,
    )
    limit = settings.engine.max_tokens_limit
    if max_tokens > limit:
        message = f"max_new_tokens is {max_tokens}, above this server's limit of {limit}"
        raise BadRequest(message, param="parameters.max_new_tokens")
    generator.check_sampling(chosen, "parameters.grammar")
    return chosen


def plan_tgi(services: Services, data: TgiRequest) -> TgiPlan:
    """Every 422 of TGI's, before anything is queued (runs on the tokenizer thread)."""
    params = data.parameters
    refuse_unsupported(params)
    generator = services.generator
    prompt_ids = generator.text_ids(data.inputs)
    if params.truncate is not None and len(prompt_ids) > params.truncate:
        prompt_ids = prompt_ids[-params.truncate :]
    sampling = tgi_sampling(services, params)
    generator.check_fits(prompt_ids, sampling.max_tokens, "inputs")
    return TgiPlan(data.inputs, prompt_ids, sampling, params)


def finish_reason(delta: Delta) -> str:
    """TGI's names: the answer ran to max_new_tokens, the model ended it, or a stop sequence did."""
    if delta.finish_reason == "length":
        return "length"
    return "stop_sequence" if delta.stop_reason is not None else "eos_token"


def tgi_token(services: Services, token: TokenLogprob) -> TgiToken:
    return TgiToken(token.token_id, token.token, token.logprob, services.generator.is_special(token.token_id))


async def run_tgi(services: Services, plan: TgiPlan, request_id: str, work: Work) -> TgiResponse:
    texts: list[str] = []
    tokens: list[TokenLogprob] = []
    prefill: list[TokenLogprob] = []
    last: Delta | None = None
    async for delta in services.generator.stream(plan.prompt_ids, plan.sampling, request_id, work):
        texts.append(delta.text)
        tokens += delta.logprobs or []
        prefill = prefill or delta.prompt_logprobs or []
        last = delta
    assert last is not None
    text = "".join(texts)
    generated = (plan.prompt + text) if plan.params.return_full_text else text
    if not plan.params.details:
        return TgiResponse(generated)
    details = TgiDetails(
        finish_reason(last),
        last.completion_tokens,
        plan.sampling.seed,
        [tgi_token(services, t) for t in prefill],
        [tgi_token(services, t) for t in tokens],
    )
    return TgiResponse(generated, details)


async def tgi_events(services: Services, plan: TgiPlan, request_id: str, work: Work) -> AsyncIterator[bytes]:
    """TGI's stream: an event per token; the last carries the whole text and the details."""
    texts: list[str] = []
    index = 0
    async for delta in services.generator.stream(plan.prompt_ids, plan.sampling, request_id, work):
        texts.append(delta.text)
        tokens = delta.logprobs or []
        for i, token in enumerate(tokens):
            index += 1
            event = TgiStreamEvent(index, tgi_token(services, token))
            if delta.finish_reason is not None and i == len(tokens) - 1:
                text = "".join(texts)
                event.generated_text = (plan.prompt + text) if plan.params.return_full_text else text
                event.details = TgiStreamDetails(
                    finish_reason(delta), delta.completion_tokens, plan.sampling.seed, len(plan.prompt_ids)
                )
            yield frame(event)
