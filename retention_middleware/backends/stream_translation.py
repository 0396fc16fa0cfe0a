"""A Chat Completions SSE stream as the Responses API event sequence, chunk by chunk.

Each upstream body message becomes one body message of Responses events, written as soon as the
chat chunks in it are parsed: the first text delta leaves with the first chunk that carries text.
The work per message is proportional to the message; what is kept is the text so far of each open
item, which the ``*.done`` events and the terminal event carry whole (as a native upstream's do).

The sequence: ``response.created`` and ``response.in_progress`` with the first bytes; then per
output item ``output_item.added``, ``content_part.added``, its deltas, and the matching done events;
then ``response.completed`` (``incomplete`` after ``finish_reason: length``), made when the chat
stream ends (``[DONE]``, or the end of the body). A stream cut before any ``finish_reason`` ends in
``response.failed``. Reasoning and text items close when the other kind starts; function calls stay
open to the end, since a server may interleave the deltas of parallel calls.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..wire.json_object import json_object
from ..wire.sse import DONE, SSEParser
from .response_translation import (
    base_response,
    finish,
    function_call_item,
    message_item,
    mint,
    reasoning_item,
    reasoning_of,
    response_usage,
    text_part,
)
from .stream_items import OpenCall, OpenItem

_DELTA_EVENTS = {
    "output_text": b"response.output_text.delta",
    "refusal": b"response.refusal.delta",
    "reasoning_text": b"response.reasoning_text.delta",
}


class StreamTranslator:
    """Feed the chat stream's body messages; each call returns the Responses bytes to send for it."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.response = base_response(request, mint("resp"), int(time.time()))
        self.parser = SSEParser()
        self.sequence = 0
        self.output: list[dict[str, Any] | None] = []  # by output_index; None while the item is open
        self.item: OpenItem | None = None  # the open reasoning or message item
        self.calls: dict[Any, OpenCall] = {}
        self.finish_reason: Any = None
        self.usage: Any = None
        self.started = False
        self.ended = False

    def feed(self, body: bytes, *, final: bool) -> bytes:
        out: list[bytes] = []
        if not self.started:
            self.started = True
            self._event(out, "response.created", response=self.response)
            self._event(out, "response.in_progress", response=self.response)
        for event in self.parser.feed(body):
            if self.ended:
                break
            if event.data == DONE:
                self._end(out)
                continue
            chunk = json_object(event.data)
            if chunk is not None:
                self._chunk(chunk, out)
        if final and not self.ended:
            self._end(out)
        return b"".join(out)

    def _event(self, out: list[bytes], kind: str, **fields: Any) -> None:
        data = orjson.dumps({"type": kind, **fields, "sequence_number": self.sequence})
        self.sequence += 1
        out.append(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")

    def _chunk(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        error = chunk.get("error")
        if error is not None:  # vLLM reports a failure mid-stream as a chunk of its own
            message = error.get("message") if isinstance(error, dict) else None
            self._fail(out, str(message or "The upstream server failed while streaming."))
            return
        if isinstance(chunk.get("model"), str):
            self.response["model"] = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # n > 1 is never asked for
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, choice, out)
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]

    def _delta(self, delta: dict[str, Any], choice: dict[str, Any], out: list[bytes]) -> None:
        reasoning = reasoning_of(delta)
        if reasoning is not None:
            self._text(out, "reasoning", "reasoning_text", reasoning, None)
        content = delta.get("content")
        if isinstance(content, str) and content:
            logprobs = choice.get("logprobs")
            entries = logprobs.get("content") if isinstance(logprobs, dict) else None
            self._text(out, "message", "output_text", content, entries if isinstance(entries, list) else [])
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._text(out, "message", "refusal", refusal, None)
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            for call in tool_calls:
                if isinstance(call, dict):
                    self._call(call, out)

    # -- reasoning and message items --------------------------------------------------------------

    def _text(self, out: list[bytes], kind: str, part_kind: str, text: str, logprobs: list[Any] | None) -> None:
        item = self.item
        if item is not None and item.kind != kind:
            self._close_item(out)
            item = None
        if item is None:
            item = self.item = OpenItem(kind, mint("rs" if kind == "reasoning" else "msg"), len(self.output))
            self.output.append(None)
            added = (
                {**reasoning_item(item.item_id, ""), "content": [], "status": "in_progress"}
                if kind == "reasoning"
                else message_item(item.item_id, [], "in_progress")
            )
            self._event(out, "response.output_item.added", output_index=item.output_index, item=added)
        if item.part_kind != part_kind:
            self._close_part(out, item)
            item.part_kind = part_kind
            self._event(out, "response.content_part.added", **self._where(item), part=self._part(item, ""))
        item.pieces.append(text)
        if logprobs:
            item.logprobs += logprobs
        # The hot path of every stream: the delta event's fixed head is encoded once per part.
        head = item.delta_head
        if head is None:
            event_type = _DELTA_EVENTS[part_kind]
            where = orjson.dumps(self._where(item))[1:-1]
            head = item.delta_head = b'event: %s\ndata: {"type":"%s",%s,"delta":' % (event_type, event_type, where)
        tail = (
            (b',"logprobs":' + (orjson.dumps(logprobs) if logprobs else b"[]")) if part_kind == "output_text" else b""
        )
        out.append(b'%s%s%s,"sequence_number":%d}\n\n' % (head, orjson.dumps(text), tail, self.sequence))
        self.sequence += 1

    @staticmethod
    def _where(item: OpenItem) -> dict[str, Any]:
        return {"item_id": item.item_id, "output_index": item.output_index, "content_index": len(item.parts)}

    @staticmethod
    def _part(item: OpenItem, text: str) -> dict[str, Any]:
        if item.part_kind == "output_text":
            return text_part(text, item.logprobs if text else [])
        if item.part_kind == "refusal":
            return {"type": "refusal", "refusal": text}
        return {"type": "reasoning_text", "text": text}

    def _close_part(self, out: list[bytes], item: OpenItem) -> None:
        if item.part_kind is None:
            return
        text = "".join(item.pieces)
        where = self._where(item)
        if item.part_kind == "output_text":
            self._event(out, "response.output_text.done", **where, text=text, logprobs=item.logprobs)
        elif item.part_kind == "refusal":
            self._event(out, "response.refusal.done", **where, refusal=text)
        else:
            self._event(out, "response.reasoning_text.done", **where, text=text)
        part = self._part(item, text)
        self._event(out, "response.content_part.done", **where, part=part)
        item.parts.append(part)
        item.pieces = []
        item.part_kind = None
        item.delta_head = None
        item.logprobs = []

    def _close_item(self, out: list[bytes]) -> None:
        item = self.item
        if item is None:
            return
        self._close_part(out, item)
        if item.kind == "reasoning":
            done = {**reasoning_item(item.item_id, ""), "content": item.parts}
        else:
            done = message_item(item.item_id, item.parts)
        self.output[item.output_index] = done
        self._event(out, "response.output_item.done", output_index=item.output_index, item=done)
        self.item = None

    # -- function calls ---------------------------------------------------------------------------

    def _call(self, delta: dict[str, Any], out: list[bytes]) -> None:
        index = delta.get("index", 0)
        call = self.calls.get(index)
        if call is None:
            call_id = delta.get("id")
            call = self.calls[index] = OpenCall(call_id if isinstance(call_id, str) and call_id else mint("call"))
        function: dict[str, Any] = delta["function"] if isinstance(delta.get("function"), dict) else {}
        name = function.get("name")
        if isinstance(name, str) and name and not call.name:
            call.name = name  # some servers repeat the name in every fragment: the first one counts
        arguments = function.get("arguments")
        fragment = arguments if isinstance(arguments, str) else ""
        if call.output_index < 0:
            if not call.name:
                call.arguments.append(fragment)  # held until the call has a name to announce
                return
            self._close_item(out)
            call.output_index = len(self.output)
            self.output.append(None)
            added = function_call_item(call.item_id, call.call_id, call.name, "", "in_progress")
            self._event(out, "response.output_item.added", output_index=call.output_index, item=added)
            fragment = "".join(call.arguments) + fragment
            call.arguments = []
        if fragment:
            call.arguments.append(fragment)
            self._event(out, "response.function_call_arguments.delta", item_id=call.item_id,
                        output_index=call.output_index, delta=fragment)  # fmt: skip

    def _close_calls(self, out: list[bytes]) -> None:
        for call in sorted(self.calls.values(), key=lambda call: call.output_index):
            if call.output_index < 0:
                continue  # never named: nothing a client could call
            arguments = "".join(call.arguments)
            where = {"item_id": call.item_id, "output_index": call.output_index}
            self._event(out, "response.function_call_arguments.done", **where, name=call.name, arguments=arguments)
            done = function_call_item(call.item_id, call.call_id, call.name, arguments)
            self.output[call.output_index] = done
            self._event(out, "response.output_item.done", output_index=call.output_index, item=done)
        self.calls = {}

    # -- the end ----------------------------------------------------------------------------------

    def _end(self, out: list[bytes]) -> None:
        if self.finish_reason is None:
            self._fail(out, "The upstream server ended the stream before the answer was finished.")
            return
        self._close_item(out)
        self._close_calls(out)
        if not self.output:
            self._text(out, "message", "output_text", "", [])  # an empty answer is one empty message
            self._close_item(out)
        response = self.response
        response["output"] = [item for item in self.output if item is not None]
        response["usage"] = response_usage(self.usage)
        finish(response, self.finish_reason)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        self._event(out, kind, response=response)
        self.ended = True

    def _fail(self, out: list[bytes], message: str) -> None:
        self._close_item(out)
        self._close_calls(out)
        response = self.response
        response["output"] = [item for item in self.output if item is not None]
        response["usage"] = response_usage(self.usage)
        response["status"] = "failed"
        response["error"] = {"code": "server_error", "message": message}
        self._event(out, "response.failed", response=response)
        self.ended = True
