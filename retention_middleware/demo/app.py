"""The echo model as one plain ASGI app: routing, lifespan, request bodies and ``/v1/models``.

Each POST endpoint is answered by its own module; this one only decides which, reads the JSON body
and turns an ``OpenAIError`` into the error response an OpenAI client expects.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .._types import Receive, Scope, Send
from ..errors import OpenAIError, invalid_request, send_error, send_json
from .chat import create_chat_completion, create_completion
from .compact import compact, count_input_tokens
from .embeddings import create_embeddings
from .responses import create_response
from .text import Body

Handler = Callable[[Body, Receive, Send], Awaitable[None]]


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
            "/v1/responses/compact": self._compact,
            "/v1/responses/input_tokens": self._input_tokens,
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

    # Bound methods rather than the endpoint functions themselves: each request reads model and
    # chunk_delay as the instance holds them at that moment.

    async def _chat(self, body: Body, receive: Receive, send: Send) -> None:
        await create_chat_completion(body, receive, send, model=self.model, delay=self.chunk_delay)

    async def _completions(self, body: Body, receive: Receive, send: Send) -> None:
        await create_completion(body, receive, send, model=self.model, delay=self.chunk_delay)

    async def _embeddings(self, body: Body, receive: Receive, send: Send) -> None:
        await create_embeddings(body, send, model=self.model)

    async def _responses(self, body: Body, receive: Receive, send: Send) -> None:
        await create_response(body, receive, send, model=self.model, delay=self.chunk_delay)

    async def _compact(self, body: Body, receive: Receive, send: Send) -> None:
        await compact(body, send, model=self.model)

    async def _input_tokens(self, body: Body, receive: Receive, send: Send) -> None:
        await count_input_tokens(body, send, model=self.model)


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
