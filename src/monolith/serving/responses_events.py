"""/v1/responses streamed: Responses' own SSE events (`response.created` ... `response.output_text.delta` ...
`response.completed`, or `response.incomplete` at max_output_tokens), numbered in order."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec

from monolith.serving.responses import (
    ResponsePlan,
    message_item,
    output_items,
    output_text,
    response_object,
    response_usage,
    status_of,
)
from monolith.serving.services import Services
from monolith.work import Work


class Events:
    """Responses' SSE events, numbered in order (`sequence_number`), each with its type as the SSE event."""

    def __init__(self) -> None:
        self._sequence = itertools.count()

    def __call__(self, kind: str, **fields: Any) -> bytes:
        payload = msgspec.json.encode({"type": kind, "sequence_number": next(self._sequence), **fields})
        return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"

    def message_opened(self, index: int, item: dict[str, Any]) -> Iterator[bytes]:
        yield self("response.output_item.added", output_index=index, item={**item, "content": []})
        yield self(
            "response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=output_text("")
        )

    def text_delta(self, index: int, item: dict[str, Any], text: str) -> bytes:
        return self(
            "response.output_text.delta",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def message_closed(self, index: int, item: dict[str, Any]) -> Iterator[bytes]:
        part = item["content"][0]
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        yield self("response.output_text.done", **where, text=part["text"], logprobs=[])
        yield self("response.content_part.done", **where, part=part)
        yield self("response.output_item.done", output_index=index, item=item)

    def whole_item(self, index: int, item: dict[str, Any]) -> Iterator[bytes]:
        """An item known only once the answer ends (a tool-mode answer): its events in one go."""
        if item["type"] == "message":
            yield from self.message_opened(index, item)
            yield self.text_delta(index, item, item["content"][0]["text"])
            yield from self.message_closed(index, item)
            return
        where = {"item_id": item["id"], "output_index": index}
        yield self(
            "response.output_item.added", output_index=index, item={**item, "arguments": "", "status": "in_progress"}
        )
        yield self("response.function_call_arguments.delta", **where, delta=item["arguments"])
        yield self("response.function_call_arguments.done", **where, name=item["name"], arguments=item["arguments"])
        yield self("response.output_item.done", output_index=index, item=item)


async def response_events(services: Services, plan: ResponsePlan, work: Work) -> AsyncIterator[bytes]:
    """created, in_progress, the output items' events, then completed (or incomplete at max_output_tokens).
    Plain text streams as it is made; a tool-mode answer is held until whole (a call is only known then)."""
    event, chat = Events(), plan.chat
    yield event("response.created", response=response_object(plan, "in_progress", []))
    yield event("response.in_progress", response=response_object(plan, "in_progress", []))
    streaming = message_item("", "in_progress") if chat.tools is None else None
    if streaming is not None:
        for opened in event.message_opened(0, streaming):
            yield opened
    texts: list[str] = []
    tokens, reason = 0, None
    async for delta in services.generator.stream(chat.prompt_ids, chat.sampling, plan.id, work):
        texts.append(delta.text)
        tokens, reason = delta.completion_tokens, delta.finish_reason or reason
        if streaming is not None and delta.text:
            yield event.text_delta(0, streaming, delta.text)
    status, text = status_of(reason), "".join(texts)
    if streaming is not None:
        output = [{**streaming, "status": status, "content": [output_text(text)]}]
        for closed in event.message_closed(0, output[0]):
            yield closed
    else:
        output = output_items(plan, text, reason)
        for index, item in enumerate(output):
            for sent in event.whole_item(index, item):
                yield sent
    final = response_object(plan, status, output, response_usage(len(chat.prompt_ids), tokens))
    yield event("response.completed" if status == "completed" else "response.incomplete", response=final)
