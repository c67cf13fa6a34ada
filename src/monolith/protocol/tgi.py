"""Hugging Face Text Generation Inference's API (`/generate`, `/generate_stream`, `POST /`), with TGI's own
parameter names, answers and error shape, so a TGI client (huggingface_hub's InferenceClient, `text-generation`,
a SageMaker endpoint's business service) works unchanged."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from monolith.protocol.common import Name, Refused, RefusedUnlessFalse, RefusedUnlessOne, Schema, StopString

# TGI's own bounds where it has them (temperature > 0, 0 < top_p < 1, top_k > 0, repetition_penalty > 0, at most
# 4 stop sequences); the upper ones are this server's, so that a value never reaches the engine unchecked.
TgiTemperature = Annotated[float, Meta(gt=0.0, le=2.0)]  # vLLM: at most 2
TgiTopP = Annotated[float, Meta(gt=0.0, lt=1.0)]
TgiTopK = Annotated[int, Meta(gt=0, le=1_000_000)]
TgiPenalty = Annotated[float, Meta(gt=0.0, le=10.0)]
TgiFrequencyPenalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
TgiStop = Annotated[list[StopString], Meta(max_length=4)]
TgiInputs = Annotated[str, Meta(min_length=1, max_length=1_000_000)]


class TgiGrammar(msgspec.Struct, forbid_unknown_fields=True):
    """TGI's `grammar`: a JSON schema (an object) or a regular expression (a string)."""

    type: Literal["json", "regex"]
    value: Schema | Annotated[str, Meta(min_length=1, max_length=100_000)]  # Schema: at most 1000 keys

    __schema_rules__: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"type": {"const": "regex"}}},
        "then": {"properties": {"value": {"type": "string"}}},
        "else": {"properties": {"value": {"type": "object"}}},
    }


class TgiParameters(msgspec.Struct, forbid_unknown_fields=True):
    """TGI's GenerateParameters. Fields this server cannot honour are refused by name (serving.tgi)."""

    max_new_tokens: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None  # 0 is a 422, as TGI's
    temperature: TgiTemperature | None = None
    top_p: TgiTopP | None = None
    top_k: TgiTopK | None = None
    repetition_penalty: TgiPenalty | None = None
    frequency_penalty: TgiFrequencyPenalty | None = None
    do_sample: bool = False
    stop: TgiStop = []
    seed: Annotated[int, Meta(ge=0, le=2**63 - 1)] | None = None  # TGI: an unsigned 64-bit integer
    return_full_text: bool | None = None
    details: bool = False
    decoder_input_details: bool = False
    truncate: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    grammar: TgiGrammar | None = None
    # Recognised and not honoured: any other value is a 422 naming the field (serving.tgi says why).
    best_of: RefusedUnlessOne = None
    watermark: RefusedUnlessFalse = None
    top_n_tokens: Refused = None
    typical_p: Refused = None
    adapter_id: Name | None = None  # a twin's name: its LoRA adapter answers (None: the base model)


class TgiRequest(msgspec.Struct, forbid_unknown_fields=True):
    inputs: TgiInputs
    parameters: TgiParameters = msgspec.field(default_factory=TgiParameters)
    stream: bool = False  # `POST /` (and /invocations) only: /generate never streams, /generate_stream always


class TgiToken(msgspec.Struct):
    id: int
    text: str
    logprob: float | None
    special: bool


class TgiDetails(msgspec.Struct):
    finish_reason: str  # "length", "eos_token" or "stop_sequence"
    generated_tokens: int
    seed: int | None
    prefill: list[TgiToken]
    tokens: list[TgiToken]


class TgiResponse(msgspec.Struct, omit_defaults=True):
    generated_text: str
    details: TgiDetails | None = None


class TgiStreamDetails(msgspec.Struct):
    finish_reason: str
    generated_tokens: int
    seed: int | None
    input_length: int


class TgiStreamEvent(msgspec.Struct):
    index: int
    token: TgiToken
    top_tokens: list[TgiToken] | None = None
    generated_text: str | None = None
    details: TgiStreamDetails | None = None


class TgiError(msgspec.Struct):
    """TGI's error body: `error_type` is validation (422), overloaded (429), generation or incomplete_generation."""

    error: str
    error_type: str
