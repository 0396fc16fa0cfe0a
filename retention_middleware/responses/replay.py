"""``GET /v1/responses/{id}?stream=true``: a stored response replayed as the SSE stream of a create.

Deltas are never stored (see ``capture``), so the stream is rebuilt from the final object: the
events a streamed create produces, in its order (created, in_progress, then per output item: added,
its parts with their text as one delta each, the done events, then the terminal event), each with
its ``sequence_number``. ``starting_after`` drops the events up to that number, as a client
resuming a stream asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from .._types import Send

Event = dict[str, Any]

_TERMINAL = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}


def _in_progress(response: dict[str, Any]) -> dict[str, Any]:
    # The object as it stood before any output: nothing generated, nothing completed or counted.
    early = {**response, "status": "in_progress", "output": []}
    if "completed_at" in early:
        early["completed_at"] = None
    early.pop("usage", None)
    return early


def _started(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as ``response.output_item.added`` shows it."""
    started: dict[str, Any] = {**item, "status": "in_progress"} if "status" in item else dict(item)
    kind = item.get("type")
    if kind == "message":
        started["content"] = []
    elif kind == "function_call":
        started["arguments"] = ""
    elif kind == "reasoning":
        started["summary"] = []
        if "content" in item:
            started["content"] = []
    return started


def _message_events(item: dict[str, Any], where: dict[str, Any]) -> Iterator[Event]:
    for index, part in enumerate(item.get("content") or []):
        if not isinstance(part, dict):
            continue
        at = {**where, "content_index": index}
        kind = part.get("type")
        if kind == "output_text":
            text = part.get("text", "")
            logprobs = part.get("logprobs") or []
            yield {"type": "response.content_part.added", **at, "part": {**part, "text": "", "logprobs": []}}
            yield {"type": "response.output_text.delta", **at, "delta": text, "logprobs": logprobs}
            yield {"type": "response.output_text.done", **at, "text": text, "logprobs": logprobs}
        elif kind == "refusal":
            refusal = part.get("refusal", "")
            yield {"type": "response.content_part.added", **at, "part": {**part, "refusal": ""}}
            yield {"type": "response.refusal.delta", **at, "delta": refusal}
            yield {"type": "response.refusal.done", **at, "refusal": refusal}
        else:
            yield {"type": "response.content_part.added", **at, "part": part}
        yield {"type": "response.content_part.done", **at, "part": part}


def _reasoning_events(item: dict[str, Any], where: dict[str, Any]) -> Iterator[Event]:
    for index, part in enumerate(item.get("summary") or []):
        if not isinstance(part, dict):
            continue
        at = {**where, "summary_index": index}
        text = part.get("text", "")
        yield {"type": "response.reasoning_summary_part.added", **at, "part": {**part, "text": ""}}
        yield {"type": "response.reasoning_summary_text.delta", **at, "delta": text}
        yield {"type": "response.reasoning_summary_text.done", **at, "text": text}
        yield {"type": "response.reasoning_summary_part.done", **at, "part": part}
    for index, part in enumerate(item.get("content") or []):
        if isinstance(part, dict) and part.get("type") == "reasoning_text":
            at = {**where, "content_index": index}
            yield {"type": "response.reasoning_text.delta", **at, "delta": part.get("text", "")}
            yield {"type": "response.reasoning_text.done", **at, "text": part.get("text", "")}


def _item_events(item: dict[str, Any], output_index: int) -> Iterator[Event]:
    yield {"type": "response.output_item.added", "output_index": output_index, "item": _started(item)}
    where = {"item_id": item.get("id", ""), "output_index": output_index}
    kind = item.get("type")
    if kind == "message":
        yield from _message_events(item, where)
    elif kind == "function_call":
        arguments = item.get("arguments", "")
        yield {"type": "response.function_call_arguments.delta", **where, "delta": arguments}
        yield {
            "type": "response.function_call_arguments.done",
            **where,
            "name": item.get("name", ""),
            "arguments": arguments,
        }
    elif kind == "reasoning":
        yield from _reasoning_events(item, where)
    yield {"type": "response.output_item.done", "output_index": output_index, "item": item}


def replay_events(response: dict[str, Any]) -> list[Event]:
    """The whole event sequence of ``response``, numbered from 0."""
    early = _in_progress(response)
    events: list[Event] = [
        {"type": "response.created", "response": early},
        {"type": "response.in_progress", "response": early},
    ]
    for index, item in enumerate(response.get("output") or []):
        if isinstance(item, dict):
            events.extend(_item_events(item, index))
    terminal = _TERMINAL.get(str(response.get("status")))
    if terminal is not None:
        events.append({"type": terminal, "response": response})
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def sse_bytes(events: list[Event], starting_after: int | None) -> bytes:
    """The events after ``starting_after`` as one ``text/event-stream`` body."""
    chunks = [
        b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
        for event in events
        if starting_after is None or event["sequence_number"] > starting_after
    ]
    return b"".join(chunks)


async def send_sse(send: Send, body: bytes) -> None:
    """A complete event stream in one body message: every event is known already."""
    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
