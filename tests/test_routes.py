from __future__ import annotations

from typing import Any

import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send
from retention_middleware.demo import EchoModel
from retention_middleware.routes import Route, classify

from support.asgi_tools import asgi_client, capture_all_logs


@pytest.mark.parametrize(
    ("method", "path", "route", "raw_id"),
    [
        ("POST", "/v1/chat/completions", Route.CHAT, None),
        ("POST", "/chat/completions", Route.CHAT, None),
        ("POST", "/v1/chat/completions/", Route.CHAT, None),
        ("POST", "/v1/completions", Route.COMPLETIONS, None),
        ("POST", "/v1/embeddings", Route.EMBEDDINGS, None),
        ("POST", "/v1/responses", Route.RESPONSES_CREATE, None),
        ("GET", "/v1/responses/resp_123", Route.RESPONSES_RETRIEVE, "resp_123"),
        ("DELETE", "/v1/responses/resp_123", Route.RESPONSES_DELETE, "resp_123"),
        ("GET", "/v1/responses/resp_123/input_items", Route.RESPONSES_INPUT_ITEMS, "resp_123"),
        ("GET", "/v1/models", Route.MODELS, None),
        ("GET", "/v1/models/Qwen/Qwen3-4B", Route.MODELS, None),
        ("DELETE", "/v1/models/ft-1", Route.OTHER, None),
        ("DELETE", "/v1/retention/data", Route.RETENTION_ERASE, None),
        ("GET", "/v1/chat/completions", Route.OTHER, None),
        ("POST", "/v1/responses/resp_123/cancel", Route.OTHER, None),
        ("POST", "/v1/responses/resp_123", Route.OTHER, None),
        ("GET", "/health", Route.OTHER, None),
        ("POST", "/v1/messages", Route.OTHER, None),
        ("GET", '/v1/responses/{"$ne": null}', Route.RESPONSES_RETRIEVE, '{"$ne": null}'),
        # Issue 10 item 14: spellings a lenient upstream routes to an inspected endpoint.
        ("POST", "/v1//responses", Route.RESPONSES_CREATE, None),
        ("POST", "//v1///responses//", Route.RESPONSES_CREATE, None),
        ("POST", "/v1/./responses", Route.RESPONSES_CREATE, None),
        ("POST", "/v1/x/../responses", Route.RESPONSES_CREATE, None),
        ("POST", "/V1/RESPONSES", Route.RESPONSES_CREATE, None),
        ("POST", "/v1/Chat/Completions", Route.CHAT, None),
        ("GET", "/V1/Responses/resp_AbC", Route.RESPONSES_RETRIEVE, "resp_AbC"),  # the id keeps its case
        ("GET", "/v1//responses/resp_1//input_items", Route.RESPONSES_INPUT_ITEMS, "resp_1"),
        ("HEAD", "/v1/responses/resp_1", Route.RESPONSES_RETRIEVE, "resp_1"),
        ("HEAD", "/v1/responses/resp_1/input_items", Route.RESPONSES_INPUT_ITEMS, "resp_1"),
        # Not a plain id: served (and refused with 400) by the middleware, never forwarded.
        ("GET", "/v1/responses/resp_1/other", Route.RESPONSES_RETRIEVE, "resp_1/other"),
        ("DELETE", "/v1/responses/resp_1/input_items", Route.RESPONSES_DELETE, "resp_1/input_items"),
        # The Kelvin sign folds to "k" under Unicode rules, not under the ASCII ones routes use.
        ("POST", "/v1/\u212a", Route.OTHER, None),
    ],
)
def test_classify(method: str, path: str, route: Route, raw_id: str | None) -> None:
    assert classify(method, path) == (route, raw_id)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/conversations"),
        ("POST", "/conversations"),
        ("GET", "/v1/conversations/conv_1"),
        ("DELETE", "/v1/conversations/conv_1/"),
        ("GET", "/v1/conversations/conv_1/items"),
        ("DELETE", "/v1/conversations/conv_1/items/msg_1"),
        ("PUT", "/v1/conversations/conv_1/anything/else"),  # answered by the handler, never forwarded
    ],
)
def test_every_conversations_path_is_kept_from_the_upstream(method: str, path: str) -> None:
    assert classify(method, path) == (Route.CONVERSATIONS, None)


def test_other_paths_naming_conversations_are_not_taken() -> None:
    assert classify("GET", "/v1/conversationsx") == (Route.OTHER, None)
    assert classify("GET", "/v2/conversations") == (Route.OTHER, None)


@pytest.mark.parametrize(
    ("method", "path", "raw_path", "raw_id"),
    [
        ("GET", "/v1/responses/resp_1/x", b"/v1/responses/resp_1%2Fx", "resp_1/x"),
        ("GET", "/v1/responses/resp_1/input_items", b"/v1/responses/resp_1%2finput_items", "resp_1/input_items"),
        ("DELETE", "/v1/responses/a/b", b"/v1/responses/a%2Fb", "a/b"),
    ],
)
def test_an_encoded_slash_is_part_of_the_id_not_a_separator(
    method: str, path: str, raw_path: bytes, raw_id: str
) -> None:
    route, found = classify(method, path, raw_path)
    assert route in (Route.RESPONSES_RETRIEVE, Route.RESPONSES_DELETE)
    assert found == raw_id  # which the handler refuses: ids hold no slash


class RecordingUpstream:
    """The echo model, keeping what reached it: (method, path, parsed body)."""

    def __init__(self) -> None:
        self.model = EchoModel()
        self.seen: list[tuple[str, str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.model(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        self.seen.append((scope["method"], scope["path"], orjson.loads(body) if body else None))
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.model({**scope, "path": classify_path(scope["path"])}, replay, send)


def classify_path(path: str) -> str:
    # The echo model, like vLLM, is case-sensitive; a lenient upstream is played by canonicalising.
    return "/v1/responses" if classify("POST", path)[0] is Route.RESPONSES_CREATE else path


@pytest.mark.parametrize("path", ["/v1//responses", "/V1/RESPONSES", "/v1/./responses/"])
async def test_a_create_under_another_spelling_is_guarded_and_stored(path: str) -> None:
    upstream = RecordingUpstream()
    middleware = RetentionMiddleware(upstream, RetentionSettings())
    key = {"authorization": "Bearer sk-routes"}
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            created = await client.post(path, json={"model": "m", "input": "canary-routes"}, headers=key)
            assert created.status_code == 200
            assert created.json()["store"] is True  # what the client asked, restored
            fetched = await client.get(f"/v1/responses/{created.json()['id']}", headers=key)
    ((method, _, body),) = upstream.seen
    assert method == "POST" and body["store"] is False  # the upstream keeps nothing
    assert fetched.status_code == 200 and fetched.json()["id"] == created.json()["id"]
    assert orjson.loads(logs.access_lines()[0])["stored"] is True


async def test_head_on_a_stored_response_answers_like_get_without_the_body() -> None:
    upstream = RecordingUpstream()
    middleware = RetentionMiddleware(upstream, RetentionSettings())
    async with asgi_client(middleware) as client:
        created = await client.post("/v1/responses", json={"model": "m", "input": "head"})
        response_id = created.json()["id"]
        got = await client.get(f"/v1/responses/{response_id}")
        with capture_all_logs() as logs:
            head = await client.head(f"/v1/responses/{response_id}")
        head_items = await client.head(f"/v1/responses/{response_id}/input_items")
        missing = await client.head("/v1/responses/resp_missing")
    entry = orjson.loads(logs.access_lines()[0])
    assert (entry["method"], entry["status"], entry["bytes_out"]) == ("HEAD", 200, 0)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    assert head_items.status_code == 200 and head_items.content == b""
    assert missing.status_code == 404 and missing.content == b""
    assert [method for method, _, _ in upstream.seen] == ["POST"]  # HEAD never reached the upstream


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/v1/responses/resp_1%2Finput_items"),
        ("GET", "/v1/responses/resp_1%2fx"),
        ("DELETE", "/v1/responses/resp_1%2F..%2F..%2Fmodels"),
        ("GET", "/v1/responses/resp_1/extra/segments"),
        ("HEAD", "/v1/responses/a%2Fb"),
    ],
)
async def test_an_id_that_is_not_a_plain_id_is_400_and_never_forwarded(method: str, url: str) -> None:
    upstream = RecordingUpstream()
    middleware = RetentionMiddleware(upstream, RetentionSettings())
    async with asgi_client(middleware) as client:
        answer = await client.request(method, url)
    assert answer.status_code == 400
    if method != "HEAD":
        assert answer.json()["error"]["param"] == "response_id"
    assert upstream.seen == []
