"""A deterministic OpenAI-compatible echo model: the upstream for ``--demo``, tests and benchmarks.

It answers like vLLM without a response store. The generated text is the last user text, split on
whitespace; one word is one token and one stream chunk. With ``max_tokens`` (or
``max_completion_tokens`` / ``max_output_tokens``) the words repeat cyclically until exactly that
many tokens, so a benchmark can ask for a stream of any length. Input tokens are the words of every
input text the request carried (all messages, the whole ``input`` history, ``instructions``).

Like vLLM without its store it keeps nothing, so a ``previous_response_id`` is answered with 400
``previous_response_not_found``: a test can prove the middleware stripped it. Texts are
deterministic; ids are unique per request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from itertools import cycle, islice
from typing import Any

import orjson

from ._types import Receive, Scope, Send
from .errors import OpenAIError, invalid_request, send_error, send_json

Body = dict[str, Any]
Handler = Callable[[Body, Receive, Send], Awaitable[None]]

_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_DONE = b"data: [DONE]\n\n"


def _missing(param: str) -> OpenAIError:
    return invalid_request(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def _invalid(param: str, expected: str) -> OpenAIError:
    return invalid_request(f"Invalid '{param}': expected {expected}.", param=param, code="invalid_type")


def _words(content: Any) -> list[str]:
    """Words of a string, or of the ``text`` of each content part in a list."""
    if isinstance(content, str):
        return content.split()
    words: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                words += part["text"].split()
    return words


def _limit(body: Body, *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _invalid(name, "an integer of at least 1")
        return value
    return None


def _generate(words: list[str], limit: int | None) -> list[str]:
    """The output tokens: the echoed words, repeated cyclically up to ``limit`` when given."""
    if limit is None or not words:
        return words
    return list(islice(cycle(words), limit))


def _pieces(tokens: list[str]) -> Iterator[str]:
    """Stream deltas whose concatenation is ``" ".join(tokens)``."""
    for index, token in enumerate(tokens):
        yield token if index == 0 else " " + token


def _flag(body: Body, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(name, "a boolean")
    return value


def _model(body: Body, default: str) -> str:
    model = body.get("model")
    if model is None:
        return default
    if not isinstance(model, str) or not model:
        raise _invalid("model", "a non-empty string")
    return model


class _Stream:
    """One SSE response; watches ``receive`` so generation stops when the client goes away."""

    def __init__(self, receive: Receive, send: Send, delay: float) -> None:
        self._send = send
        self._delay = delay
        self.gone = False
        self._watcher = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True

    async def start(self) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})

    async def emit(self, chunk: bytes, *, token: bool = False) -> None:
        if token:
            # Yield to the loop per token even without a delay, as a real server does between
            # tokens: other requests interleave, and the disconnect watcher gets to run.
            await asyncio.sleep(self._delay)
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def finish(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def close(self) -> None:
        self._watcher.cancel()


def _data(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _chat_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": None,
    }


class EchoModel:
    """The echo model as a plain ASGI app (lifespan included).

    ``model`` is the id listed by ``/v1/models`` and used when a request names none (a request's own
    ``model`` is echoed back). ``chunk_delay`` seconds pass before each streamed token.
    """

    def __init__(self, model: str = "demo-echo", *, chunk_delay: float = 0.0, max_model_len: int = 32768) -> None:
        if not model:
            raise ValueError("EchoModel: model must be a non-empty model id, e.g. 'demo-echo'")
        if not chunk_delay >= 0:
            raise ValueError("EchoModel: chunk_delay must be a number of seconds >= 0")
        self.model = model
        self.chunk_delay = chunk_delay
        self.max_model_len = max_model_len
        self._created = int(time.time())
        self._posts: dict[str, Handler] = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completions,
            "/v1/embeddings": self._embeddings,
            "/v1/responses": self._responses,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        try:
            await self._route(scope, receive, send)
        except OpenAIError as error:
            await send_error(send, error)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        handler = self._posts.get(path)
        if handler is not None and method == "POST":
            body = await _read_json(receive)
            if body is not None:
                await handler(body, receive, send)
        elif path == "/v1/models" and method == "GET":
            await send_json(send, 200, orjson.dumps(self.models()))
        elif path == "/health" and method == "GET":
            await send_json(send, 200, b"{}")
        elif handler is not None or path in ("/v1/models", "/health"):
            raise OpenAIError(405, f"Method {method} is not allowed here.", code="method_not_allowed")
        else:
            raise OpenAIError(404, "Unknown endpoint.", code="not_found")

    def models(self) -> dict[str, Any]:
        """The ``/v1/models`` list, in vLLM's shape."""
        permission = {
            "id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission", "created": self._created,
            "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
            "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
            "organization": "*", "group": None, "is_blocking": False,
        }  # fmt: skip
        entry = {
            "id": self.model, "object": "model", "created": self._created, "owned_by": "retention-demo",
            "root": self.model, "parent": None, "max_model_len": self.max_model_len,
            "permission": [permission],
        }  # fmt: skip
        return {"object": "list", "data": [entry]}

    # -- chat completions and completions ---------------------------------------------------------

    async def _chat(self, body: Body, receive: Receive, send: Send) -> None:
        messages = body.get("messages")
        if messages is None:
            raise _missing("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _invalid("messages", "an array of message objects")
        prompt = 0
        last_user: list[str] = []
        for message in messages:
            words = _words(message.get("content"))
            for call in message.get("tool_calls") or ():
                if isinstance(call, dict) and isinstance(call.get("function"), dict):
                    words += _words(call["function"].get("arguments"))
            prompt += len(words)
            if message.get("role") == "user":
                last_user = words
        limit = _limit(body, "max_completion_tokens", "max_tokens")
        await self._complete(body, receive, send, chat=True, prompt=prompt, words=last_user, limit=limit)

    async def _completions(self, body: Body, receive: Receive, send: Send) -> None:
        prompts = _prompts(body, "prompt")
        prompt = sum(len(words) for words in prompts)
        limit = _limit(body, "max_tokens")
        await self._complete(body, receive, send, chat=False, prompt=prompt, words=prompts[-1], limit=limit)

    async def _complete(
        self, body: Body, receive: Receive, send: Send, *,
        chat: bool, prompt: int, words: list[str], limit: int | None,
    ) -> None:  # fmt: skip
        tokens = _generate(words, limit)
        finish = "length" if limit is not None else "stop"
        head = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": _model(body, self.model),
        }
        usage = _chat_usage(prompt, len(tokens))
        if not _flag(body, "stream"):
            text = " ".join(tokens)
            choice: dict[str, Any]
            if chat:
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": text,
                    "reasoning_content": None,
                    "tool_calls": [],
                }
                choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            choice["stop_reason"] = None
            result = {**head, "object": "chat.completion" if chat else "text_completion", "choices": [choice]}
            await send_json(send, 200, orjson.dumps({**result, "usage": usage}))
            return
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise _invalid("stream_options", "an object")
        include_usage = _flag(options or {}, "include_usage")

        def chunk(choice: dict[str, Any]) -> bytes:
            return _data({**head, "choices": [{"index": 0, **choice, "logprobs": None}]})

        stream = _Stream(receive, send, self.chunk_delay)
        try:
            await stream.start()
            if chat:
                await stream.emit(chunk({"delta": {"role": "assistant", "content": ""}, "finish_reason": None}))
            for piece in _pieces(tokens):
                if stream.gone:
                    return
                delta: dict[str, Any] = {"delta": {"content": piece}} if chat else {"text": piece}
                await stream.emit(chunk({**delta, "finish_reason": None}), token=True)
            end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
            await stream.emit(chunk({**end, "finish_reason": finish, "stop_reason": None}))
            if include_usage:
                await stream.emit(_data({**head, "choices": [], "usage": usage}))
            await stream.emit(_DONE)
            await stream.finish()
        finally:
            stream.close()

    # -- embeddings -------------------------------------------------------------------------------

    async def _embeddings(self, body: Body, receive: Receive, send: Send) -> None:
        inputs = _prompts(body, "input")
        dimensions = _limit(body, "dimensions") or 8
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise invalid_request(
                "Invalid 'encoding_format': use 'float' or 'base64'.", param="encoding_format",
                code="invalid_value",
            )  # fmt: skip
        data = []
        for index, words in enumerate(inputs):
            vector = _vector(" ".join(words), dimensions)
            embedding: Any = vector
            if encoding == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii")
            data.append({"index": index, "object": "embedding", "embedding": embedding})
        tokens = sum(len(words) for words in inputs)
        result = {
            "id": f"embd-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
            "model": _model(body, self.model), "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                      "prompt_tokens_details": None},
        }  # fmt: skip
        await send_json(send, 200, orjson.dumps(result))

    # -- responses --------------------------------------------------------------------------------

    async def _responses(self, body: Body, receive: Receive, send: Send) -> None:
        previous = body.get("previous_response_id")
        if previous is not None:
            # Stateless like vLLM without its store: nothing to continue from.
            raise invalid_request(
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id", code="previous_response_not_found",
            )  # fmt: skip
        if "input" not in body or body["input"] is None:
            raise _missing("input")
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise _invalid("instructions", "a string")
        prompt, last_user = _response_input(body["input"])
        prompt += len(_words(instructions))
        tokens = _generate(last_user, _limit(body, "max_output_tokens"))
        response = self._response_object(body, instructions)
        item_id = f"msg_{uuid.uuid4().hex}"
        text = " ".join(tokens)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
        usage = {
            "input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": len(tokens), "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + len(tokens),
        }  # fmt: skip
        completed = {**response, "status": "completed", "output": [item], "usage": usage}
        if not _flag(body, "stream"):
            await send_json(send, 200, orjson.dumps(completed))
            return

        sequence = 0

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal sequence
            data = orjson.dumps({"type": kind, **fields, "sequence_number": sequence})
            sequence += 1
            return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        stream = _Stream(receive, send, self.chunk_delay)
        try:
            await stream.start()
            await stream.emit(event("response.created", response=response))
            await stream.emit(event("response.in_progress", response=response))
            added = {**item, "status": "in_progress", "content": []}
            await stream.emit(event("response.output_item.added", item=added, output_index=0))
            await stream.emit(event("response.content_part.added", **where, part={**part, "text": ""}))
            for piece in _pieces(tokens):
                if stream.gone:
                    return
                await stream.emit(event("response.output_text.delta", **where, delta=piece, logprobs=[]), token=True)
            await stream.emit(event("response.output_text.done", **where, text=text, logprobs=[]))
            await stream.emit(event("response.content_part.done", **where, part=part))
            await stream.emit(event("response.output_item.done", item=item, output_index=0))
            await stream.emit(event("response.completed", response=completed))
            await stream.finish()
        finally:
            stream.close()

    def _response_object(self, body: Body, instructions: str | None) -> dict[str, Any]:
        """The response as ``response.created`` shows it; the request's settings echoed back."""
        return {
            "id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "background": False, "error": None, "incomplete_details": None,
            "instructions": instructions, "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": None, "metadata": body.get("metadata"), "model": _model(body, self.model),
            "output": [], "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None, "prompt": None, "reasoning": body.get("reasoning"),
            "service_tier": body.get("service_tier") or "auto", "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0), "text": body.get("text"),
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "top_logprobs": None, "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation") or "disabled", "usage": None, "user": body.get("user"),
        }  # fmt: skip


def _prompts(body: Body, name: str) -> list[list[str]]:
    """A completions prompt or embeddings input: string, strings, token ids, or lists of token ids."""
    value = body.get(name)
    if value is None:
        raise _missing(name)
    if isinstance(value, str):
        return [value.split()]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [[str(v) for v in value]]
        if all(isinstance(v, str) for v in value):
            return [v.split() for v in value]
        if all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in value):
            return [[str(i) for i in v] for v in value]
    raise _invalid(name, "a string, an array of strings, or token ids")


def _response_input(value: Any) -> tuple[int, list[str]]:
    """Words over every input item (the whole history), and the last user message's words."""
    if isinstance(value, str):
        words = value.split()
        return len(words), words
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _invalid("input", "a string or an array of input items")
    total = 0
    last_user: list[str] = []
    for item in value:
        words = _words(item.get("content"))
        for key in ("arguments", "output"):
            words += _words(item.get(key))
        words += _words(item.get("summary"))
        total += len(words)
        if item.get("role") == "user":
            last_user = words
    return total, last_user


def _vector(text: str, dimensions: int) -> list[float]:
    """A unit vector derived from a hash of ``text``: the same input always embeds the same way."""
    digest = hashlib.shake_256(text.encode("utf-8")).digest(2 * dimensions)
    raw = [value / 32767.5 - 1.0 for value in struct.unpack(f"<{dimensions}H", digest)]
    norm = math.hypot(*raw) or 1.0
    return [value / norm for value in raw]


async def _read_json(receive: Receive) -> Body | None:
    """The request body as a JSON object; None when the client went away before sending it all."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise invalid_request("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return body


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_echo_app(model: str = "demo-echo", *, chunk_delay: float = 0.0, max_model_len: int = 32768) -> EchoModel:
    """The echo model app; see ``EchoModel``."""
    return EchoModel(model, chunk_delay=chunk_delay, max_model_len=max_model_len)
