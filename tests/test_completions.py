"""Streams are always metered: usage is requested upstream and its extra chunk hidden from clients
that did not ask for it. The streams follow OpenAI's chat-completions reference format."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send
from retention_middleware.completions import without_null_usage

from support.asgi_tools import SentMessages, asgi_client, capture_all_logs, random_split, read_request_body, send_pieces

USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 3,
    "total_tokens": 15,
    "prompt_tokens_details": {"cached_tokens": 8},
    "completion_tokens_details": {"reasoning_tokens": 1},
}


def chat_chunks(include_usage: bool) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    extra = {"usage": None} if include_usage else {}  # OpenAI adds a null usage to every chunk then
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
         **extra},
        *({**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}], **extra}
          for w in ["Hel", "lo", "!"]),
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], **extra},
    ]  # fmt: skip
    if include_usage:
        chunks.append({**base, "choices": [], "usage": USAGE})
    return chunks


def completion_chunks(include_usage: bool) -> list[dict[str, Any]]:
    base = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m"}
    chunks = [{**base, "choices": [{"index": 0, "text": w, "finish_reason": None}]} for w in ["Hel", "lo"]]
    if include_usage:
        chunks.append({**base, "choices": [], "usage": USAGE})
    return chunks


class StreamingServer:
    """Honours stream_options.include_usage exactly as OpenAI and vLLM do."""

    def __init__(self, split_seed: int | None = None) -> None:
        self.requests: list[tuple[dict[str, Any], dict[str, bytes]]] = []
        self.split_seed = split_seed
        self.sent: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_request_body(receive)
        request = json.loads(body)
        headers = {k.decode(): v for k, v in scope["headers"]}
        self.requests.append((request, headers))
        assert int(headers["content-length"]) == len(body)
        include = (request.get("stream_options") or {}).get("include_usage") is True
        make = chat_chunks if "messages" in request else completion_chunks
        events = [b"data: " + orjson.dumps(c) + b"\n\n" for c in make(include)] + [b"data: [DONE]\n\n"]
        if self.split_seed is not None:
            events = random_split(b"".join(events), random.Random(self.split_seed), max_piece=20)
        self.sent = events
        await send_pieces(send, 200, b"text/event-stream", events)


async def post(app: Any, path: str, body: dict[str, Any]) -> httpx.Response:
    async with asgi_client(app) as client:
        return await client.post(path, json=body)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_usage_is_requested_upstream_and_hidden_from_a_client_that_did_not_ask(path: str) -> None:
    server = StreamingServer()
    outer = SentMessages(RetentionMiddleware(server, RetentionSettings()))
    body: dict[str, Any] = {"model": "m", "stream": True}
    body.update({"messages": [{"role": "user", "content": "hi"}]} if "chat" in path else {"prompt": "hi"})
    with capture_all_logs() as logs:
        response = await post(outer, path, body)
    upstream_request, _ = server.requests[0]
    assert upstream_request["stream_options"] == {"include_usage": True}
    expected = b"".join(
        b"data: " + orjson.dumps(c) + b"\n\n" for c in (chat_chunks if "chat" in path else completion_chunks)(False)
    )  # fmt: skip
    received = response.content
    assert b'"usage":{' not in received
    assert received.endswith(b"data: [DONE]\n\n")
    chunks = [json.loads(line[6:]) for line in received.decode().split("\n") if line.startswith("data: {")]
    assert all(chunk["choices"] for chunk in chunks)  # no usage-only chunk reached the client
    # The usage-only chunk and every "usage": null the request made the upstream add are gone: the
    # client's stream is exactly the one it would have had without include_usage.
    assert b'"usage"' not in received
    assert received == expected + b"data: [DONE]\n\n"
    # one message out per message in; the usage chunk's message leaves empty
    assert len(outer.body_messages) == len(server.sent)
    assert [m["body"] for m in outer.body_messages if m["body"]] == [
        e.replace(b',"usage":null', b"") for e in server.sent if b'"usage":{' not in e
    ]
    entry = json.loads(logs.access_lines()[0])
    assert entry["usage"] == {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15, "cached_tokens": 8,
                              "reasoning_tokens": 1}  # fmt: skip
    assert entry["stream"] is True


@pytest.mark.parametrize("seed", range(20))
async def test_usage_chunk_split_across_messages_is_still_removed(seed: int) -> None:
    server = StreamingServer(split_seed=seed)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with capture_all_logs() as logs:
        response = await post(RetentionMiddleware(server, RetentionSettings()), "/v1/chat/completions", body)
    expected = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chat_chunks(False)) + b"data: [DONE]\n\n"
    assert response.content == expected  # the same bytes as a stream never asked for usage
    assert json.loads(logs.access_lines()[0])["usage"]["total_tokens"] == 15


@pytest.mark.parametrize(
    "raw",
    [
        b'data: {"id":"c","choices":[],"usage":null}\n\n',
        b'data: {"id":"c","usage":null,"choices":[]}\n\n',
        b'data: {"id": "c", "choices": [], "usage": null}\n\n',
        b'data: {"usage" : null , "id":"c"}\n\n',
    ],
)
def test_a_null_usage_member_is_cut_with_its_comma(raw: bytes) -> None:
    cut = without_null_usage(raw)
    assert b"usage" not in cut
    assert json.loads(cut[6:]) == {k: v for k, v in json.loads(raw[6:]).items() if k != "usage"}


async def test_a_client_that_asked_for_usage_gets_everything_byte_for_byte() -> None:
    server = StreamingServer()
    outer = SentMessages(RetentionMiddleware(server, RetentionSettings()))
    body = {"model": "m", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    raw = orjson.dumps(body)
    async with asgi_client(outer) as client:
        with capture_all_logs() as logs:
            response = await client.post("/v1/chat/completions", content=raw,
                                         headers={"content-type": "application/json"})  # fmt: skip
    assert response.content == b"".join(server.sent)
    assert [m["body"] for m in outer.body_messages] == server.sent
    _, headers = server.requests[0]
    assert int(headers["content-length"]) == len(raw)  # the body was not rewritten
    assert json.loads(logs.access_lines()[0])["usage"]["input_tokens"] == 12


async def test_existing_stream_options_are_kept_when_usage_is_added() -> None:
    server = StreamingServer()
    body = {"model": "m", "stream": True, "stream_options": {"continuous_usage_stats": False},
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    await post(RetentionMiddleware(server, RetentionSettings()), "/v1/chat/completions", body)
    assert server.requests[0][0]["stream_options"] == {"continuous_usage_stats": False, "include_usage": True}


async def test_non_streamed_requests_are_not_rewritten() -> None:
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await read_request_body(receive))
        answer = {"choices": [{"message": {"content": "x"}}], "usage": USAGE}
        await send_pieces(send, 200, b"application/json", [orjson.dumps(answer)[:10], orjson.dumps(answer)[10:]])

    raw = b'{ "model" : "m",  "messages": [{"role":"user","content":"hi"}] }'
    with capture_all_logs() as logs:
        async with asgi_client(RetentionMiddleware(app, RetentionSettings())) as client:
            await client.post("/v1/chat/completions", content=raw)
    assert seen == [raw]
    assert json.loads(logs.access_lines()[0])["usage"]["total_tokens"] == 15


class NestingUpstream:
    """Holds any request nested deeper than a few levels until released; streams every other one,
    logging a line mid-stream the way an inference server logs per request."""

    def __init__(self) -> None:
        import asyncio

        self.deep_arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        import logging

        body = await read_request_body(receive)
        if b"[[[[" in body:
            self.deep_arrived.set()
            await self.release.wait()
            await send_pieces(send, 200, b"application/json", [b'{"choices": []}'])
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for piece in sse_pieces():
            logging.getLogger("upstream.engine").info("streaming a chunk for a request")
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def sse_pieces() -> list[bytes]:
    return [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chat_chunks(True)] + [b"data: [DONE]\n\n"]


async def test_a_deeply_nested_chat_request_is_a_400_and_harms_no_other_request() -> None:
    import asyncio
    import logging

    upstream = NestingUpstream()
    middleware = RetentionMiddleware(upstream, RetentionSettings())
    # ~1000 levels: orjson parses it (its limit is 1024), Python's recursion limit is about the same.
    deep = b'{"model": "m", "messages": [{"role": "user", "content": ' + b"[" * 1000 + b"]" * 1000 + b"}]}"
    innocent = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            hostile = asyncio.ensure_future(client.post("/v1/chat/completions", content=deep))
            arrived = asyncio.ensure_future(upstream.deep_arrived.wait())
            # Either the hostile request is answered at once or it is now in flight upstream.
            await asyncio.wait([hostile, arrived], return_when=asyncio.FIRST_COMPLETED)
            logging.getLogger("an.unrelated.module").warning("a log call while it is in flight")
            answered = await client.post("/v1/chat/completions", json=innocent)
            upstream.release.set()
            refused = await hostile
            arrived.cancel()
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "json_too_deep")
    assert "RETENTION_MAX_JSON_DEPTH" in error["message"]
    assert not upstream.deep_arrived.is_set()  # never forwarded
    assert answered.status_code == 200 and answered.text.endswith("data: [DONE]\n\n")
    assert "a log call while it is in flight" in logs.text()
    assert "RecursionError" not in logs.text() and "Traceback" not in logs.text()
