"""/tokenize and /detokenize: the served model's tokenizer and chat template, as the engine sees a prompt."""

from __future__ import annotations

from monolith.errors import BadRequest
from monolith.protocol.tokenize import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse
from monolith.serving.chat import message_dicts
from monolith.serving.models import resolve_model
from monolith.serving.services import Services


def tokenize(services: Services, data: TokenizeRequest) -> TokenizeResponse:
    generator = services.generator
    if data.model is not None:
        resolve_model(services.settings, data.model)
    if (data.prompt is None) == (data.messages is None):
        raise BadRequest("give either prompt or messages", param="prompt")
    if data.messages is not None:
        if data.add_special_tokens:  # the chat template writes the special tokens itself
            raise BadRequest("add_special_tokens applies to a prompt, not to messages", param="add_special_tokens")
        messages = message_dicts(data.messages, generator.template_knows_tools, generator.tool_reader is not None)
        ids = generator.chat_ids(messages, data.add_generation_prompt)
    else:
        special = True if data.add_special_tokens is None else data.add_special_tokens
        ids = generator.encode(data.prompt or "", add_special_tokens=special)
    strs = [generator.decode([i]) for i in ids] if data.return_token_strs else None
    return TokenizeResponse(len(ids), generator.max_model_len, ids, strs)


def detokenize(services: Services, data: DetokenizeRequest) -> DetokenizeResponse:
    if data.model is not None:
        resolve_model(services.settings, data.model)
    services.generator.check_token_ids(data.tokens, "tokens")
    return DetokenizeResponse(services.generator.decode(data.tokens))
