"""A chat-only upstream, written from the OpenAI Chat Completions reference, for the chat backend tests.

It serves ``POST /v1/chat/completions`` (JSON, and SSE with ``stream: true``) and nothing else: every
other path, ``/v1/responses`` included, is a 404, as on TGI or llama.cpp. What it answers is a
function of the request, so a test can predict it:

- with ``tools`` and a last message from the user, it calls the first tool (two calls, to the first
  two tools, when ``parallel_tool_calls`` is not false and there are two) with arguments naming the
  user's words;
- otherwise it answers ``"echo: "`` + the last user or tool message's text;
- with ``reasoning=True`` it thinks first (``reasoning_content``, as vLLM and llama.cpp send it);
- ``max_tokens`` cuts the answer to that many words, with ``finish_reason: "length"``.

It logs every prompt it gets (as vLLM's ``--enable-log-requests`` does), for the log-guard tests.

Streams send one chunk per word (role first, usage last only with ``stream_options.include_usage``)
and tool-call arguments in 3-character fragments, the way servers split them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from retention_middleware._types import Receive, Scope, Send

from .asgi_tools import read_request_body

# Logs each prompt the way vLLM's --enable-log-requests does, so tests can check the log guard.
logger = logging.getLogger("chat_upstream")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class ChatOnlyUpstream:
    def __init__(self, *, reasoning: bool = False, model: str = "chat-only-model", ignore_stream: bool = False) -> None:
        self.reasoning = reasoning
        self.ignore_stream = ignore_stream  # answer JSON even when asked to stream, as some servers do
        self.model = model
        self.requests: list[tuple[str, str, Any]] = []

    def chat_bodies(self) -> list[Any]:
        return [body for _, path, body in self.requests if path == "/v1/chat/completions"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = await read_request_body(receive)
        self.requests.append((scope["method"], scope["path"], orjson.loads(body) if body else None))
        if (scope["method"], scope["path"]) != ("POST", "/v1/chat/completions"):
            await self._json(send, 404, {"error": {"message": "Not Found", "type": "not_found", "param": None,
                                                   "code": None}})  # fmt: skip
            return
        request = orjson.loads(body)
        logger.info("Received request: messages: %r", request["messages"])
        reasoning, text, calls, finish = self._answer(request)
        usage = {"prompt_tokens": sum(len(_text_of(m.get("content")).split()) for m in request["messages"]),
                 "completion_tokens": len(text.split()) + len(reasoning.split()) + len(calls)}  # fmt: skip
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        usage["completion_tokens_details"] = {"reasoning_tokens": len(reasoning.split())}
        head = {"id": f"chatcmpl-{len(self.requests)}", "created": int(time.time()), "model": self.model}
        if not request.get("stream") or self.ignore_stream:
            message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
            if reasoning:
                message["reasoning_content"] = reasoning
            if calls:
                message["tool_calls"] = [{"id": cid, "type": "function", "function": {"name": n, "arguments": a}}
                                         for cid, n, a in calls]  # fmt: skip
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            await self._json(send, 200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip

        async def chunk(delta: dict[str, Any], finish_reason: Any = None) -> None:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            data = {**head, "object": "chat.completion.chunk", "choices": [choice]}
            await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(data) + b"\n\n",
                        "more_body": True})  # fmt: skip

        await chunk({"role": "assistant", "content": ""})
        for word in _words(reasoning):
            await chunk({"reasoning_content": word})
        for word in _words(text):
            await chunk({"content": word})
        for index, (call_id, name, arguments) in enumerate(calls):
            await chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                         "function": {"name": name, "arguments": ""}}]})  # fmt: skip
            for start in range(0, len(arguments), 3):
                await chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[start : start + 3]}}]})
        await chunk({}, finish)
        options = request.get("stream_options") or {}
        if options.get("include_usage"):
            data = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(data) + b"\n\n",
                        "more_body": True})  # fmt: skip
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    def _answer(self, request: dict[str, Any]) -> tuple[str, str, list[tuple[str, str, str]], str]:
        messages = request["messages"]
        last = messages[-1]
        reasoning = f"thinking about {len(messages)} messages" if self.reasoning else ""
        tools = [tool["function"]["name"] for tool in request.get("tools") or []]
        if tools and last["role"] == "user" and request.get("tool_choice") != "none":
            wanted = tools[:2] if request.get("parallel_tool_calls", True) is not False else tools[:1]
            said = _text_of(last.get("content"))
            calls = [(f"call_{len(self.requests)}_{i}", name, orjson.dumps({"query": said, "n": i}).decode())
                     for i, name in enumerate(wanted)]  # fmt: skip
            return reasoning, "", calls, "tool_calls"
        words = f"echo: {_text_of(last.get('content'))}".split()
        limit = request.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "length"
        return reasoning, " ".join(words), [], finish

    @staticmethod
    async def _json(send: Send, status: int, value: Any) -> None:
        body = orjson.dumps(value)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)] if text else []
