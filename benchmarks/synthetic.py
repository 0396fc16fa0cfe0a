"""A streaming upstream of any length whose own memory does not grow with it, for the memory section.

The echo model builds its whole answer up front (and a Responses API terminal event carries the
whole text), so its footprint grows with the stream and would hide the middleware's. This app sends
the same pre-built event again and again until ``total_bytes`` have gone, in the shape of a chat
completion stream or a Responses API stream, and ends with a small terminal event. The largest event
is therefore ``event_bytes`` (about), whatever the stream length.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from retention_middleware._types import Receive, Scope, Send

from .payloads import prose

_SSE = [(b"content-type", b"text/event-stream; charset=utf-8")]


def _data(obj: Any, event: str | None = None) -> bytes:
    head = b"" if event is None else b"event: " + event.encode() + b"\n"
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


def _chat_events(text: str) -> tuple[bytes, list[bytes]]:
    head = {"id": "chatcmpl-synthetic", "object": "chat.completion.chunk", "created": 0, "model": "synthetic"}
    delta = _data({**head, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    tail = [
        _data({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        _data({**head, "choices": [], "usage": usage}),
        b"data: [DONE]\n\n",
    ]
    return delta, tail


def _responses_terminal() -> list[bytes]:
    # A fresh id per stream: the store keeps one record per response id.
    response = {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": 0,
        "status": "completed",
        "model": "synthetic",
        "store": False,
        "output": [
            {
                "id": "msg_synthetic",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "done", "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    }
    return [_data({"type": "response.completed", "response": response}, "response.completed")]


def _responses_delta(text: str) -> bytes:
    where = {"item_id": "msg_synthetic", "output_index": 0, "content_index": 0}
    return _data({"type": "response.output_text.delta", **where, "delta": text}, "response.output_text.delta")


class SyntheticStream:
    """Streams ``total_bytes`` of SSE in events of about ``event_bytes``; see the module docstring."""

    def __init__(self, total_bytes: int, event_bytes: int) -> None:
        self.total_bytes = total_bytes
        text = prose(event_bytes - 150)  # the JSON envelope takes the rest of the event
        self._chat = _chat_events(text)
        self._responses_delta = _responses_delta(text)
        self.largest_sent = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body", False):
            pass  # the request body is not needed: the stream's shape comes from the path
        if scope["path"].endswith("/responses"):
            delta, tail = self._responses_delta, _responses_terminal()
        else:
            delta, tail = self._chat
        self.largest_sent = max(len(delta), *(len(event) for event in tail))
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        sent = 0
        while sent < self.total_bytes:
            await send({"type": "http.response.body", "body": delta, "more_body": True})
            sent += len(delta)
        for event in tail:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
