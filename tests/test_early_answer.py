"""A JSON answer is guarded from the moment it passes, not from its final body message.

Apps behind Starlette's ``BaseHTTPMiddleware`` (any FastAPI app with ``@app.middleware("http")``)
send their JSON answer as one body message with ``more_body=True`` and then an empty final one;
between the two, every other coroutine of the process runs. Whatever anybody logs then must not
carry the answer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from fastapi import FastAPI, Request, Response

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Message, Receive, Scope, Send

from support.asgi_tools import asgi_client, capture_all_logs, read_request_body

app_logger = logging.getLogger("app.after_answer")


def chat_answer(text: str) -> dict[str, Any]:
    return {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5}}  # fmt: skip


def response_answer(text: str) -> dict[str, Any]:
    return {"id": "resp_early1", "object": "response", "status": "completed",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}]}  # fmt: skip


def fastapi_app(answer: Callable[[str], dict[str, Any]], text: str) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def passthrough(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        return await call_next(request)

    async def handle() -> dict[str, Any]:
        return answer(text)

    app.post("/v1/chat/completions")(handle)
    app.post("/v1/responses")(handle)
    return app


async def call_logging_in_the_window(app: Any, path: str, request: dict[str, Any], text: str) -> list[Message]:
    """Drive ``app`` as a server would; while the answer's body has passed but its final message has
    not, another part of the process logs the answer (as vLLM's output logging would)."""
    body = [{"type": "http.request", "body": orjson.dumps(request), "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return body.pop(0) if body else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("more_body"):
            app_logger.info("answered: %s", text)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "server": ("test", 80),
             "client": ("127.0.0.1", 5050), "headers": [(b"content-type", b"application/json")]}  # fmt: skip
    await app(scope, receive, send)
    return sent


def hand_written_app(answer: Callable[[str], dict[str, Any]], text: str) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_request_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": orjson.dumps(answer(text)), "more_body": True})
        app_logger.info("answered: %s", text)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


ANSWERS = [("/v1/chat/completions", chat_answer), ("/v1/responses", response_answer)]


def request_for(path: str) -> dict[str, Any]:
    if path == "/v1/responses":
        return {"model": "m", "input": "which ticket?", "store": False}
    return {"model": "m", "messages": [{"role": "user", "content": "which ticket?"}]}


@pytest.mark.parametrize(("path", "answer"), ANSWERS)
async def test_a_fastapi_answer_logged_between_its_body_and_the_empty_final_message_is_redacted(
    path: str, answer: Callable[[str], dict[str, Any]]
) -> None:
    canary = f"OUTPUT-CANARY-{uuid.uuid4().hex}"
    text = f"The ticket you asked about is {canary}, closed yesterday."
    middleware = RetentionMiddleware(fastapi_app(answer, text), RetentionSettings())
    with capture_all_logs() as logs:
        sent = await call_logging_in_the_window(middleware, path, request_for(path), text)
    bodies = [(m["body"], m.get("more_body", False)) for m in sent if m["type"] == "http.response.body"]
    assert len(bodies) == 2 and bodies[0][1] and bodies[1] == (b"", False)  # the shape this is about
    assert canary.encode() in bodies[0][0]
    assert "answered: [redacted]" in logs.text()
    assert canary not in logs.text()


@pytest.mark.parametrize(("path", "answer"), ANSWERS)
async def test_an_answer_the_app_logs_between_its_body_and_the_empty_final_message_is_redacted(
    path: str, answer: Callable[[str], dict[str, Any]]
) -> None:
    canary = f"OUTPUT-CANARY-{uuid.uuid4().hex}"
    text = f"The ticket you asked about is {canary}, closed yesterday."
    with capture_all_logs() as logs:
        async with asgi_client(RetentionMiddleware(hand_written_app(answer, text), RetentionSettings())) as client:
            response = await client.post(path, json=request_for(path))
    assert response.status_code == 200 and canary in response.text  # the client gets it all
    assert "answered: [redacted]" in logs.text()  # the app did log, in the window
    assert canary not in logs.text()
