"""Sampling from the wire: the OpenAI routes' fields (and vLLM's extensions) as the engine's, structured outputs,
and a RAG answer's options."""

from __future__ import annotations

from typing import Any

import msgspec

from monolith.config import Settings
from monolith.engine import Sampling
from monolith.errors import BadRequest
from monolith.generation import Generator
from monolith.protocol.chat import CHAT_TEMPERATURE, ChatCompletionRequest
from monolith.protocol.common import honoured
from monolith.protocol.completions import CompletionRequest
from monolith.retrieval.pipeline import RagOptions
from monolith.serving.models import ModelChoice


def wire_sampling(
    generator: Generator,
    data: ChatCompletionRequest | CompletionRequest,
    max_tokens: int,
    structured: dict[str, Any] | None = None,
    logprobs: int | None = None,
    prompt_logprobs: int | None = None,
    adapter: str | None = None,
    tools: bool = False,
    named_tool: bool = False,
) -> Sampling:
    """The OpenAI routes' sampling fields (and vLLM's extensions), as the engine takes them; `adapter`: the twin
    the model name chose; `tools`: `structured` is the tools' grammar, not the client's format; `named_tool`: the
    grammar of one named function's arguments."""
    if not honoured(data.best_of, None, 1):
        raise BadRequest("best_of is not supported (vLLM's engine dropped it); use n", param="best_of")
    if data.stop_token_ids:
        generator.check_token_ids(data.stop_token_ids, "stop_token_ids")
    if data.min_tokens > max_tokens:
        raise BadRequest(f"min_tokens is {data.min_tokens}, above max_tokens ({max_tokens})", param="min_tokens")
    return Sampling(
        max_tokens=max_tokens,
        temperature=answer_temperature(generator.settings, data, tools),
        top_p=data.top_p,
        stop=stop_list(data.stop),
        seed=data.seed,
        presence_penalty=data.presence_penalty,
        frequency_penalty=tool_default(
            data.frequency_penalty, named_tool, generator.settings.engine.tool_frequency_penalty, 0.0
        ),
        repetition_penalty=repetition_penalty(generator.settings, data, structured, tools),
        ignore_eos=data.ignore_eos,
        structured=structured,
        n=data.n,
        top_k=data.top_k or 0,
        min_p=data.min_p,
        min_tokens=data.min_tokens,
        stop_token_ids=list(data.stop_token_ids or []),
        logit_bias=token_biases(generator, data.logit_bias),
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        priority=data.priority,
        adapter=adapter,
    )


def answer_temperature(settings: Settings, data: ChatCompletionRequest | CompletionRequest, tools: bool) -> float:
    """The client's; with none, under the tools' grammar engine.tool_temperature (a small model copies the
    request's values into the arguments more often at 0), else the chat default."""
    return tool_default(data.temperature, tools, settings.engine.tool_temperature, CHAT_TEMPERATURE)


def tool_default(asked: float | None, tools: bool, for_tools: float | None, otherwise: float) -> float:
    """A sampling field: the client's value; with none, the server's choice for an answer under the tools'
    grammar (if it has one), else the route's default. Never over a value the client set."""
    if asked is not None:
        return asked
    if tools and for_tools is not None:
        return for_tools
    return otherwise


def token_biases(generator: Generator, bias: dict[str, float] | None) -> dict[int, float] | None:
    """OpenAI's {"token id as a string": bias}, each id checked against the vocabulary."""
    if not bias:
        return None
    out = {}
    for key, value in bias.items():
        if not key.strip().isdigit():
            raise BadRequest(f"logit_bias key '{key}' is not a token id", param="logit_bias")
        out[int(key)] = value
    generator.check_token_ids(list(out), "logit_bias")
    return out


def repetition_penalty(
    settings: Settings, data: ChatCompletionRequest | CompletionRequest, structured: dict[str, Any] | None, tools: bool
) -> float:
    """The client's, or under a JSON format it asked for (not the tools' grammar, which was not measured) and with
    none set, engine.json_repetition_penalty: a small model under the grammar otherwise nests objects or loops
    inside a string until max_tokens."""
    if data.repetition_penalty is not None:
        return data.repetition_penalty
    penalty = settings.engine.json_repetition_penalty
    if penalty is not None and not tools and structured and ("json" in structured or "json_object" in structured):
        return penalty
    return 1.0


def structured_constraint(data: ChatCompletionRequest | CompletionRequest) -> tuple[dict[str, Any] | None, str]:
    """response_format or vLLM's structured_outputs as the engine's constraint, and the field it came from."""
    fmt, extension = data.response_format, data.structured_outputs
    asked = fmt is not None and fmt.type != "text"
    if asked and extension is not None:
        raise BadRequest(
            "response_format and structured_outputs both constrain the output; set one", param="structured_outputs"
        )
    if extension is not None:
        fields = {k: v for k, v in msgspec.structs.asdict(extension).items() if v is not None and v is not False}
        kinds = [k for k in ("json", "regex", "choice", "grammar", "json_object") if k in fields]
        if len(kinds) != 1:
            raise BadRequest(
                "structured_outputs takes exactly one of json, regex, choice, grammar, json_object",
                param="structured_outputs",
            )
        return fields, "structured_outputs"
    if fmt is None or fmt.type == "text":
        return None, "response_format"
    if fmt.type == "json_object":
        return {"json_object": True}, "response_format"
    if fmt.json_schema is None or fmt.json_schema.schema is None:
        raise BadRequest("a json_schema response format needs json_schema.schema", param="response_format.json_schema")
    return {"json": fmt.json_schema.schema}, "response_format.json_schema"


def stop_list(stop: str | list[str] | None) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or [])


def rag_options(
    settings: Settings,
    k: int | None,
    max_tokens: int,
    temperature: float | None,
    expand: bool | None,
    self_query: bool | None,
    defaults: dict[str, float] | None = None,
    priority: int = 0,
    model: ModelChoice | None = None,
) -> RagOptions:
    """The request's choices over the answer defaults (`defaults`: the model's generation config, then
    rag.answer) and the configured RAG switches; a twin's `model` fixes the adapter and the author."""
    cfg = settings.rag
    answer = {**cfg.answer.model_dump(), **(defaults or {})}
    return RagOptions(
        k=k or cfg.k,
        max_tokens=max_tokens,
        temperature=answer["temperature"] if temperature is None else temperature,
        expand=cfg.expand if expand is None else expand,
        self_query=cfg.self_query if self_query is None else self_query,
        top_p=answer["top_p"],
        repetition_penalty=answer["repetition_penalty"],
        priority=priority,
        adapter=model.twin if model else None,
        author=model.author if model else None,
    )


def answer_sampling(opts: RagOptions) -> Sampling:
    return Sampling(
        max_tokens=opts.max_tokens,
        temperature=opts.temperature,
        top_p=opts.top_p,
        repetition_penalty=opts.repetition_penalty,
        priority=opts.priority,
        adapter=opts.adapter,
    )
