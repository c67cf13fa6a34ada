"""OpenAI-compatible routes. A chat request asks for RAG with the model `<served>-rag` or `"rag": true`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import Provide

from monolith.api.deps import provide_services, provide_state
from monolith.api.rag import check_query, rag_options, sources_out
from monolith.api.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    ModelCard,
    ModelList,
    RagOverrides,
)
from monolith.api.state import ServerState, Services
from monolith.api.streaming import DONE, frame, sse, unless_disconnected
from monolith.engine import Sampling
from monolith.errors import BadRequest, NotFound
from monolith.generation import Completion

RAG_SUFFIX = "-rag"


def model_names(server: ServerState) -> tuple[str, str]:
    served = server.settings.engine.served_model_name
    return served, served + RAG_SUFFIX


def resolve_model(server: ServerState, model: str) -> bool:
    """Returns whether the model name itself asks for RAG; unknown names are a 404 like OpenAI's."""
    served, rag = model_names(server)
    if model not in (served, rag):
        raise NotFound(f"the model '{model}' does not exist; this server serves '{served}' and '{rag}'", param="model")
    return model == rag


def message_dicts(messages: list[ChatMessage]) -> list[dict[str, str]]:
    out = []
    for i, m in enumerate(messages):
        if isinstance(m.content, list):
            texts = []
            for part in m.content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise BadRequest("only text content parts are supported", param=f"messages[{i}].content")
                texts.append(part["text"])
            content = "".join(texts)
        else:
            content = m.content or ""
        role = "system" if m.role == "developer" else m.role
        out.append({"role": role, "content": content})
    return out


def stop_list(stop: str | list[str] | None) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or [])


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def finish(reason: str | None) -> str | None:
    return "stop" if reason == "abort" else reason


class OpenAIController(Controller):
    path = "/v1"
    dependencies = {
        "services": Provide(provide_services, sync_to_thread=False),
        "server": Provide(provide_state, sync_to_thread=False),
    }
    tags = ["openai"]

    @get("/models", summary="The served model, and its RAG alias")
    async def models(self, server: ServerState) -> ModelList:
        served, rag = model_names(server)
        return ModelList(
            [
                ModelCard(served, max_model_len=server.settings.engine.max_model_len),
                ModelCard(rag, max_model_len=server.settings.engine.max_model_len),
            ]
        )

    @post("/chat/completions", status_code=200)
    async def chat(self, request: Request, data: ChatCompletionRequest, server: ServerState, services: Services) -> Any:
        use_rag = resolve_model(server, data.model) or bool(data.rag)
        request_id = "chatcmpl-" + request.state.request_id.removeprefix("req-")
        messages = message_dicts(data.messages)
        max_tokens = services.generator.max_tokens(data.max_completion_tokens or data.max_tokens)
        sampling = Sampling(
            max_tokens=max_tokens,
            temperature=data.temperature,
            top_p=data.top_p,
            stop=stop_list(data.stop),
            seed=data.seed,
            presence_penalty=data.presence_penalty,
            frequency_penalty=data.frequency_penalty,
            ignore_eos=data.ignore_eos,
        )
        if use_rag:
            if messages[-1]["role"] != "user":
                raise BadRequest("a RAG request must end with a user message", param="messages")
            check_query(services, messages[-1]["content"], f"messages[{len(messages) - 1}].content")
            over = data.rag if isinstance(data.rag, RagOverrides) else RagOverrides()
            opts = rag_options(services, over.k, max_tokens, data.temperature, over.expand, over.self_query)
            prepared = await unless_disconnected(
                request, services.rag.prepare(messages, opts, request_id, param="messages")
            )
            prompt_ids, extra = prepared.prompt_ids, {"sources": msgspec.to_builtins(sources_out(prepared))}
        else:
            prompt_ids, extra = services.generator.chat_ids(messages), {}
            services.generator.check_fits(prompt_ids, max_tokens, "messages")
        created = int(time.time())
        if data.stream:
            include_usage = bool(data.stream_options and data.stream_options.include_usage)
            chunks = self._chat_chunks(
                services, prompt_ids, sampling, request_id, data.model, created, include_usage, extra
            )
            return sse(chunks, request_id)
        done = await unless_disconnected(request, services.generator.complete(prompt_ids, sampling, request_id))
        return {
            "id": request_id,
            "object": "chat.completion",
            "created": created,
            "model": data.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.text},
                    "finish_reason": finish(done.finish_reason),
                    "logprobs": None,
                }
            ],
            "usage": usage(done.prompt_tokens, done.completion_tokens),
            **extra,
        }

    async def _chat_chunks(
        self,
        services: Services,
        prompt_ids: list[int],
        sampling: Sampling,
        request_id: str,
        model: str,
        created: int,
        include_usage: bool,
        extra: dict,
    ) -> AsyncIterator[bytes]:
        head = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model}
        yield frame(
            {
                **head,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                **extra,
            }
        )
        completion_tokens = 0
        async for delta in services.generator.stream(prompt_ids, sampling, request_id):
            completion_tokens = delta.completion_tokens
            if delta.text or delta.finish_reason:
                yield frame(
                    {
                        **head,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"content": delta.text} if delta.text else {},
                                "finish_reason": finish(delta.finish_reason),
                            }
                        ],
                    }
                )
        if include_usage:
            yield frame({**head, "choices": [], "usage": usage(len(prompt_ids), completion_tokens)})
        yield DONE

    @post("/completions", status_code=200)
    async def completions(
        self, request: Request, data: CompletionRequest, server: ServerState, services: Services
    ) -> Any:
        resolve_model(server, data.model)
        prompts = [data.prompt] if isinstance(data.prompt, str) else data.prompt
        if not prompts:
            raise BadRequest("the prompt list is empty", param="prompt")
        if data.stream and len(prompts) > 1:
            raise BadRequest("streaming takes a single prompt", param="prompt")
        request_id = "cmpl-" + request.state.request_id.removeprefix("req-")
        max_tokens = services.generator.max_tokens(data.max_tokens)
        sampling = Sampling(
            max_tokens=max_tokens,
            temperature=data.temperature,
            top_p=data.top_p,
            stop=stop_list(data.stop),
            seed=data.seed,
            presence_penalty=data.presence_penalty,
            frequency_penalty=data.frequency_penalty,
            ignore_eos=data.ignore_eos,
        )
        all_ids = [services.generator.text_ids(p) for p in prompts]
        for ids in all_ids:
            services.generator.check_fits(ids, max_tokens, "prompt")
        created = int(time.time())
        if data.stream:
            include_usage = bool(data.stream_options and data.stream_options.include_usage)
            return sse(
                self._text_chunks(services, prompts[0], all_ids[0], sampling, request_id, data, created, include_usage),
                request_id,
            )

        async def run_all() -> list[Completion]:
            return await asyncio.gather(
                *(services.generator.complete(ids, sampling, f"{request_id}-{i}") for i, ids in enumerate(all_ids))
            )

        results = await unless_disconnected(request, run_all())
        return {
            "id": request_id,
            "object": "text_completion",
            "created": created,
            "model": data.model,
            "choices": [
                {
                    "index": i,
                    "text": (prompts[i] if data.echo else "") + r.text,
                    "finish_reason": finish(r.finish_reason),
                    "logprobs": None,
                }
                for i, r in enumerate(results)
            ],
            "usage": usage(sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)),
        }

    async def _text_chunks(
        self,
        services: Services,
        prompt: str,
        prompt_ids: list[int],
        sampling: Sampling,
        request_id: str,
        data: CompletionRequest,
        created: int,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        head = {"id": request_id, "object": "text_completion", "created": created, "model": data.model}
        if data.echo:
            yield frame({**head, "choices": [{"index": 0, "text": prompt, "finish_reason": None, "logprobs": None}]})
        completion_tokens = 0
        async for delta in services.generator.stream(prompt_ids, sampling, request_id):
            completion_tokens = delta.completion_tokens
            if delta.text or delta.finish_reason:
                yield frame(
                    {
                        **head,
                        "choices": [
                            {
                                "index": 0,
                                "text": delta.text,
                                "finish_reason": finish(delta.finish_reason),
                                "logprobs": None,
                            }
                        ],
                    }
                )
        if include_usage:
            yield frame({**head, "choices": [], "usage": usage(len(prompt_ids), completion_tokens)})
        yield DONE
