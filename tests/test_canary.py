"""G1: no canary from a prompt (or from output already streamed) reaches any log line.

The wrapped app logs its prompts the way vLLM does with ``--enable-log-requests`` (a rendered chat
template through ``%r``), dumps its whole body at DEBUG, logs an error with the prompt in the
exception, and logs its full output once it has streamed it. Output is captured from the root logger
and from a handler added after the middleware started.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import httpx
import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send

from support.asgi_tools import LogCapture, asgi_client, capture_all_logs, read_request_body, send_pieces, sse_body
from support.servers import aserve

app_logger = logging.getLogger("vllm.entrypoints.logger")


def rendered_prompt(request: dict[str, Any]) -> str:
    if "messages" in request:
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in request["messages"])
    if "prompt" in request:
        return str(request["prompt"])
    value = request.get("input")
    return value if isinstance(value, str) else json.dumps(value)


class LoggingUpstream:
    """A server that logs everything a careless deployment would."""

    def __init__(self, output_canary: str, fail: bool = False) -> None:
        self.output_canary = output_canary
        self.fail = fail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_request_body(receive)
        request = json.loads(body)
        prompt = rendered_prompt(request)
        app_logger.info("Received request %s: prompt: %r, params: %s", "cmpl-1", prompt, {"temperature": 0})
        app_logger.debug("raw body: %s", body.decode())
        if self.fail:
            try:
                raise ValueError(f"prompt rejected by validator: {prompt}")
            except ValueError as error:
                app_logger.error("Error in request %s", "cmpl-1", exc_info=True)
                message = orjson.dumps({"error": {"message": str(error), "type": "BadRequestError"}})
            await send_pieces(send, 400, b"application/json", [message])
            return
        words = ["Sure,", " here", " is", f" {self.output_canary}", " done."]
        full = "".join(words)
        streaming = request.get("stream") is True
        if scope["path"].endswith("/responses"):
            await self._responses(send, words, streaming)
        elif streaming:
            key = "text" if scope["path"].endswith("/completions") and "messages" not in request else "delta"
            chunks = [{"choices": [{"index": 0, key: {"content": w} if key == "delta" else w}]} for w in words]
            await send_pieces(send, 200, b"text/event-stream", [sse_body([c])[: -len(b"data: [DONE]\n\n")]
                                                               for c in chunks] + [b"data: [DONE]\n\n"])  # fmt: skip
        else:
            answer = {"choices": [{"index": 0, "message": {"content": full}}], "usage": {"prompt_tokens": 3}}
            await send_pieces(send, 200, b"application/json", [orjson.dumps(answer)])
        app_logger.info("Generated response %s: output: %r", "cmpl-1", full)

    async def _responses(self, send: Send, words: list[str], streaming: bool) -> None:
        text = "".join(words)
        response = {"id": "resp_1", "object": "response", "status": "completed",
                    "output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}]}  # fmt: skip
        if not streaming:
            await send_pieces(send, 200, b"application/json", [orjson.dumps(response)])
            return
        events = [{"type": "response.created", "response": {**response, "status": "in_progress", "output": []}}]
        events += [{"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "content_index": 0,
                    "delta": w} for w in words]  # fmt: skip
        events += [{"type": "response.completed", "response": response}]
        pieces = [f"event: {e['type']}\ndata: ".encode() + orjson.dumps(e) + b"\n\n" for e in events]
        await send_pieces(send, 200, b"text/event-stream", pieces)


def request_for(endpoint: str, canary: str, stream: bool) -> dict[str, Any]:
    text = f"Please look up the ticket {canary} and summarise it.\nThanks!"
    if endpoint == "/v1/chat/completions":
        return {"model": "m", "stream": stream, "messages": [{"role": "system", "content": "Be brief."},
                                                              {"role": "user", "content": text}]}  # fmt: skip
    if endpoint == "/v1/completions":
        return {"model": "m", "stream": stream, "prompt": text}
    return {"model": "m", "stream": stream, "input": [{"role": "user", "content": text}]}


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/completions", "/v1/responses"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fail", [False, True])
async def test_no_canary_in_any_log(endpoint: str, stream: bool, fail: bool) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    output_canary = f"OUTPUT-CANARY-{uuid.uuid4().hex}"
    upstream = LoggingUpstream(output_canary, fail=fail)
    with capture_all_logs() as logs:
        middleware = RetentionMiddleware(upstream, RetentionSettings())
        late = LogCapture()  # a handler configured after the middleware started
        late.attach(app_logger)
        try:
            async with asgi_client(middleware) as client:
                response = await client.post(endpoint, json=request_for(endpoint, canary, stream))
        finally:
            late.detach()
    assert response.status_code == (400 if fail else 200)
    everything = logs.text() + late.text()
    # The app really did log, at INFO and DEBUG, so the assertions below could fail.
    assert "Received request cmpl-1: prompt:" in everything and "raw body:" in everything
    assert ("Generated response" in everything) is not fail
    assert canary not in everything
    assert canary[:15] not in everything
    assert output_canary not in everything
    assert len(logs.access_lines()) == 1
    if not fail:
        assert output_canary in response.text  # the client still gets everything


async def test_without_the_guard_the_canary_would_leak() -> None:
    """The control experiment: proves the test above detects a leak."""
    canary = f"CANARY-{uuid.uuid4().hex}"
    with capture_all_logs() as logs:
        middleware = RetentionMiddleware(LoggingUpstream("x"), RetentionSettings(log_guard=False))
        async with asgi_client(middleware) as client:
            await client.post("/v1/chat/completions", json=request_for("/v1/chat/completions", canary, False))
    assert canary in logs.text()


async def test_the_servers_own_exception_log_is_redacted_too() -> None:
    """uvicorn logs "Exception in ASGI application" with the traceback right after the exception
    leaves the middleware; the request's content must still be guarded at that moment."""
    canary = f"CANARY-{uuid.uuid4().hex}"

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = json.loads(await read_request_body(receive))
        raise ValueError(f"cannot render prompt {request['messages'][-1]['content']}")

    with capture_all_logs() as logs:
        async with aserve(RetentionMiddleware(failing, RetentionSettings())) as base_url:
            async with httpx.AsyncClient(base_url=base_url) as client:
                answer = await client.post(
                    "/v1/chat/completions", json=request_for("/v1/chat/completions", canary, False)
                )
    assert answer.status_code == 500 and answer.json()["error"]["type"] == "server_error"
    assert "Exception in ASGI application" in logs.text() and "ValueError" in logs.text()
    assert canary not in logs.text()
