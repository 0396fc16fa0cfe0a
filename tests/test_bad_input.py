"""Bad input on the endpoints the upstream owns (completions, chat, embeddings): the middleware does
not judge it. It is forwarded byte for byte and the upstream answers; the middleware raises nothing
and logs one line. Only a body over RETENTION_MAX_BODY is stopped, with an OpenAI-shaped 413."""

from __future__ import annotations

import json

import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send

from support.asgi_tools import asgi_client, capture_all_logs, read_request_body, send_pieces


class JudgingUpstream:
    """Answers 400 to anything that is not a JSON object, as vLLM does, and records what it got."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_request_body(receive)
        self.bodies.append(body)
        try:
            ok = isinstance(json.loads(body), dict)
        except ValueError:
            ok = False
        status, answer = (200, {"choices": [], "usage": {"prompt_tokens": 1, "total_tokens": 1}}) if ok else (
            400, {"error": {"message": "bad body", "type": "BadRequestError", "param": None, "code": 400}})  # fmt: skip
        await send_pieces(send, status, b"application/json", [orjson.dumps(answer)])


HUGE_TEXT = "word " * 1_000_000  # 5 MB, under the 16 MiB default


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"model": "m", "messages": [', 400),
        (b'[{"model": "m"}]', 400),
        (b'"just a string"', 400),
        (b"", 400),
        (b'{"model": "m", "prompt": "caf\xe9 \xff\xfe not utf-8"}', 400),
        (b'{"model": {"$ne": null}, "stream": "yes", "messages": 7}', 200),
        (orjson.dumps({"model": "m", "prompt": HUGE_TEXT, "messages": [{"role": "user", "content": "x"}]}), 200),
    ],
    ids=["truncated-json", "json-array", "json-string", "empty", "non-utf8", "wrong-types", "huge"],
)
async def test_bad_input_is_forwarded_unchanged_and_logged_once(path: str, body: bytes, status: int) -> None:
    upstream = JudgingUpstream()
    middleware = RetentionMiddleware(upstream, RetentionSettings())
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert upstream.bodies == [body]
    lines = logs.access_lines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["status"] == status and entry["bytes_in"] == len(body)
    assert entry["model"] is None or isinstance(entry["model"], str)
    assert "Traceback" not in logs.text()


@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_over_the_limit_gets_413_without_reaching_the_upstream(declared: bool) -> None:
    upstream = JudgingUpstream()
    middleware = RetentionMiddleware(upstream, RetentionSettings(max_body=1000))

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(5):
            yield b"x" * 300

    content = b"x" * 1500 if declared else chunks()
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            response = await client.post("/v1/chat/completions", content=content)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert upstream.bodies == []
    entry = json.loads(logs.access_lines()[0])
    assert entry["status"] == 413 and entry["error"] == "request_too_large"


async def test_unknown_routes_have_no_body_limit() -> None:
    upstream = JudgingUpstream()
    middleware = RetentionMiddleware(upstream, RetentionSettings(max_body=10))
    async with asgi_client(middleware) as client:
        response = await client.post("/v1/other", content=b'{"model": "a long enough body"}')
    assert response.status_code == 200


@pytest.mark.parametrize("declared", [b"9" * 5000, b"\xef\xbc\x91\xef\xbc\x90"], ids=["5000-digits", "full-width"])
async def test_an_absurd_content_length_is_a_4xx_never_a_500(declared: bytes) -> None:
    upstream = JudgingUpstream()
    middleware = RetentionMiddleware(upstream, RetentionSettings(max_body=1000))
    sent: list[dict[str, object]] = []
    messages = [{"type": "http.request", "body": b'{"model": "m"}', "more_body": False}]

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
        "headers": [(b"content-length", declared), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    await middleware(scope, receive, send)
    status = sent[0]["status"]
    assert isinstance(status, int) and 200 <= status < 500
