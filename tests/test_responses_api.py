"""The Responses API served by the middleware in front of a stateless upstream (the echo model),
on both stores: capture, restore, rehydrate, read, page, delete, expire, tenants, zero policy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send
from retention_middleware.demo import EchoModel
from retention_middleware.store import MemoryStore
from retention_middleware.store.base import ResponseStore
from retention_middleware.wire.request_body import replay

from support.asgi_tools import asgi_client, capture_all_logs, read_request_body
from support.mongo_fixtures import FakeClock
from support.servers import aserve

SECRET = "test-tenant-secret-0123456789"
KEY_A = {"authorization": "Bearer sk-tenant-a"}
KEY_B = {"authorization": "Bearer sk-tenant-b"}


class RecordingUpstream:
    """The echo model, remembering every body it was sent."""

    def __init__(self) -> None:
        self.model = EchoModel()
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.model(scope, receive, send)
            return
        body = await read_request_body(receive)
        self.bodies.append(json.loads(body) if body else {})
        await self.model(scope, replay(body, receive), send)


Client = Callable[..., httpx.AsyncClient]


@pytest.fixture
def upstream() -> RecordingUpstream:
    return RecordingUpstream()


@pytest.fixture
async def api(
    upstream: RecordingUpstream, response_store: ResponseStore, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    middleware = RetentionMiddleware(
        upstream, RetentionSettings(tenant_secret=SECRET), store=response_store, clock=clock
    )
    async with asgi_client(middleware, headers=KEY_A) as client:
        yield client


def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


async def test_create_stores_what_the_client_saw_and_get_returns_it(
    api: httpx.AsyncClient, upstream: RecordingUpstream
) -> None:
    created = await api.post("/v1/responses", json={"model": "m", "input": "one two three"})
    assert created.status_code == 200
    body = created.json()
    assert body["store"] is True  # restored: the upstream was asked for store false
    assert upstream.bodies[0]["store"] is False
    fetched = await api.get(f"/v1/responses/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body
    assert len(upstream.bodies) == 1  # the GET never went upstream


async def test_streamed_create_is_stored_from_the_terminal_event(api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/responses", json={"model": "m", "input": "alpha beta", "stream": True})
    events = sse_events(created.text)
    assert [e["type"] for e in events][0] == "response.created"
    assert all(e["response"]["store"] is True for e in events if "response" in e)
    completed = events[-1]["response"]
    fetched = await api.get(f"/v1/responses/{completed['id']}")
    assert fetched.json() == completed
    assert fetched.json()["output"][0]["content"][0]["text"] == "alpha beta"


async def test_store_false_leaves_nothing(api: httpx.AsyncClient, upstream: RecordingUpstream) -> None:
    raw = b'{"model": "m", "input": "keep nothing", "store": false}'
    created = await api.post("/v1/responses", content=raw)
    assert created.json()["store"] is False
    assert (await api.get(f"/v1/responses/{created.json()['id']}")).status_code == 404
    assert upstream.bodies == [json.loads(raw)]


async def test_a_three_turn_conversation_reaches_the_upstream_whole(
    api: httpx.AsyncClient, upstream: RecordingUpstream
) -> None:
    first = (await api.post("/v1/responses", json={"model": "m", "input": "red green",
                                                    "instructions": "FIRST-INSTRUCTIONS"})).json()  # fmt: skip
    second = (await api.post("/v1/responses", json={"model": "m", "input": "blue",
                                                     "previous_response_id": first["id"]})).json()  # fmt: skip
    third_response = await api.post(
        "/v1/responses", json={"model": "m", "input": [{"role": "user", "content": "yellow"}],
                               "previous_response_id": second["id"], "stream": True}
    )  # fmt: skip
    third = sse_events(third_response.text)[-1]["response"]
    assert second["previous_response_id"] == first["id"]
    assert third["previous_response_id"] == second["id"]
    sent = upstream.bodies[2]
    assert "previous_response_id" not in sent
    texts = [item["content"] if isinstance(item["content"], str) else item["content"][0]["text"]
             for item in sent["input"]]  # fmt: skip
    assert texts == ["red green", "red green", "blue", "blue", "yellow"]
    assert [item["role"] for item in sent["input"]] == ["user", "assistant", "user", "assistant", "user"]
    assert "instructions" not in sent or sent["instructions"] is None  # not carried over
    assert third["usage"]["input_tokens"] == 7  # the echo model counted every word it was sent


async def test_input_items_pages_both_ways(api: httpx.AsyncClient) -> None:
    items = [{"role": "user", "content": f"item {n}"} for n in range(5)]
    created = (await api.post("/v1/responses", json={"model": "m", "input": items})).json()
    url = f"/v1/responses/{created['id']}/input_items"
    everything = (await api.get(url, params={"order": "asc"})).json()
    assert everything["object"] == "list" and everything["has_more"] is False
    assert [i["content"][0]["text"] for i in everything["data"]] == [f"item {n}" for n in range(5)]
    assert all(i["id"].startswith("msg_") and i["type"] == "message" for i in everything["data"])
    ids = [i["id"] for i in everything["data"]]
    page = (await api.get(url, params={"order": "asc", "limit": 2})).json()
    assert [i["id"] for i in page["data"]] == ids[:2] and page["has_more"] is True
    assert page["first_id"] == ids[0] and page["last_id"] == ids[1]
    page = (await api.get(url, params={"order": "asc", "limit": 2, "after": page["last_id"]})).json()
    assert [i["id"] for i in page["data"]] == ids[2:4] and page["has_more"] is True
    page = (await api.get(url, params={"order": "asc", "limit": 2, "after": page["last_id"]})).json()
    assert [i["id"] for i in page["data"]] == ids[4:] and page["has_more"] is False
    default = (await api.get(url)).json()  # desc, 20
    assert [i["id"] for i in default["data"]] == ids[::-1]
    page = (await api.get(url, params={"limit": 3, "after": ids[3]})).json()
    assert [i["id"] for i in page["data"]] == ids[2::-1]
    again = (await api.get(url, params={"order": "asc"})).json()
    assert [i["id"] for i in again["data"]] == ids  # ids are stable between reads


async def test_delete_removes_and_answers_like_openai(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v1/responses", json={"model": "m", "input": "gone soon"})).json()
    deleted = await api.delete(f"/v1/responses/{created['id']}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": created["id"], "object": "response", "deleted": True}
    for method, path in (("GET", ""), ("GET", "/input_items"), ("DELETE", "")):
        again = await api.request(method, f"/v1/responses/{created['id']}{path}")
        assert again.status_code == 404
        assert again.json()["error"]["message"] == f"Response with id '{created['id']}' not found."
        assert again.json()["error"]["type"] == "invalid_request_error"


async def test_continuing_through_a_deleted_ancestor_names_it(api: httpx.AsyncClient) -> None:
    first = (await api.post("/v1/responses", json={"model": "m", "input": "a"})).json()
    second = (await api.post("/v1/responses", json={"model": "m", "input": "b",
                                                     "previous_response_id": first["id"]})).json()  # fmt: skip
    await api.delete(f"/v1/responses/{first['id']}")
    refused = await api.post("/v1/responses", json={"model": "m", "input": "c",
                                                     "previous_response_id": second["id"]})  # fmt: skip
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "previous_response_not_found" and error["param"] == "previous_response_id"
    assert first["id"] in error["message"]


async def test_expired_responses_are_gone_before_any_cleanup(api: httpx.AsyncClient, clock: FakeClock) -> None:
    created = (await api.post("/v1/responses", json={"model": "m", "input": "short lived"})).json()
    clock.advance(timedelta(days=30, seconds=1))
    assert (await api.get(f"/v1/responses/{created['id']}")).status_code == 404
    refused = await api.post("/v1/responses", json={"model": "m", "input": "x",
                                                     "previous_response_id": created["id"]})  # fmt: skip
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "previous_response_not_found"


async def test_another_tenant_sees_nothing(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v1/responses", json={"model": "m", "input": "mine"})).json()
    rid = created["id"]
    for headers in (KEY_B, {"authorization": ""}):
        assert (await api.get(f"/v1/responses/{rid}", headers=headers)).status_code == 404
        assert (await api.get(f"/v1/responses/{rid}/input_items", headers=headers)).status_code == 404
        assert (await api.delete(f"/v1/responses/{rid}", headers=headers)).status_code == 404
        refused = await api.post("/v1/responses", headers=headers,
                                 json={"model": "m", "input": "x", "previous_response_id": rid})  # fmt: skip
        assert refused.status_code == 400
    missing = await api.get("/v1/responses/resp_never_existed", headers=KEY_B)
    other = await api.get(f"/v1/responses/{rid}", headers=KEY_B)
    assert other.json()["error"] == {**missing.json()["error"], "message": other.json()["error"]["message"]}
    assert (await api.get(f"/v1/responses/{rid}")).status_code == 200  # the owner still has it


async def test_zero_policy_stores_nothing_and_refuses_previous_response_id(
    upstream: RecordingUpstream, response_store: ResponseStore, clock: FakeClock
) -> None:
    middleware = RetentionMiddleware(upstream, RetentionSettings(policy="zero"), store=response_store, clock=clock)
    async with asgi_client(middleware) as api:
        created = await api.post("/v1/responses", json={"model": "m", "input": "hello", "store": True})
        assert created.status_code == 200 and created.json()["store"] is False
        assert upstream.bodies[0]["store"] is False
        assert (await api.get(f"/v1/responses/{created.json()['id']}")).status_code == 404
        refused = await api.post("/v1/responses", json={"model": "m", "input": "x",
                                                         "previous_response_id": created.json()["id"]})  # fmt: skip
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "unsupported_parameter"
        assert refused.json()["error"]["param"] == "previous_response_id"
    assert len(upstream.bodies) == 1


async def test_persisted_before_the_terminal_event_reaches_the_client(
    upstream: RecordingUpstream, response_store: ResponseStore, clock: FakeClock
) -> None:
    middleware = RetentionMiddleware(upstream, RetentionSettings(), store=response_store, clock=clock)
    found_at_completion: list[bool] = []

    async def client_side(scope: Scope, receive: Receive, send: Send) -> None:
        async def checking_send(message: Any) -> None:
            body = message.get("body", b"")
            if b"response.completed" in body:
                response_id = sse_events(body.decode())[-1]["response"]["id"]
                found_at_completion.append(await response_store.get("anonymous", response_id) is not None)
            await send(message)

        await middleware(scope, receive, checking_send)

    async with asgi_client(client_side) as api:
        await api.post("/v1/responses", json={"model": "m", "input": "quick", "stream": True})
    assert found_at_completion == [True]


async def test_access_log_says_stored(api: httpx.AsyncClient) -> None:
    with capture_all_logs() as logs:
        await api.post("/v1/responses", json={"model": "m", "input": "x y"})
        await api.post("/v1/responses", json={"model": "m", "input": "x y", "store": False})
    first, second = (json.loads(line) for line in logs.access_lines())
    assert first["stored"] is True and second["stored"] is False
    assert first["usage"] == {"input_tokens": 2, "output_tokens": 2, "total_tokens": 4, "cached_tokens": 0,
                              "reasoning_tokens": 0}  # fmt: skip


async def test_the_stored_copy_restores_store_and_previous_id_too(api: httpx.AsyncClient) -> None:
    first = (await api.post("/v1/responses", json={"model": "m", "input": "a"})).json()
    second = (await api.post("/v1/responses", json={"model": "m", "input": "b",
                                                     "previous_response_id": first["id"]})).json()  # fmt: skip
    fetched = (await api.get(f"/v1/responses/{second['id']}")).json()
    assert fetched["store"] is True and fetched["previous_response_id"] == first["id"]


@pytest.mark.parametrize("pretty", [False, True])
async def test_restoration_keeps_every_other_byte(pretty: bool, response_store: ResponseStore,
                                                  clock: FakeClock) -> None:  # fmt: skip
    """An upstream answering with pretty-printed JSON (as api.openai.com does) keeps its bytes."""
    answer = {"id": "resp_pretty", "object": "response", "status": "completed", "store": False,
              "previous_response_id": None, "output": [], "usage": None, "text": "é \"quoted\""}  # fmt: skip
    raw = json.dumps(answer, indent=2 if pretty else None, ensure_ascii=False).encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_request_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        for start in range(0, len(raw), 7):
            await send(
                {"type": "http.response.body", "body": raw[start : start + 7], "more_body": start + 7 < len(raw)}
            )

    middleware = RetentionMiddleware(app, RetentionSettings(), store=response_store, clock=clock)
    async with asgi_client(middleware) as api:
        first = await api.post("/v1/responses", json={"model": "m", "input": "x"})
        assert first.content == raw.replace(b'"store": false', b'"store": true').replace(
            b'"store":false', b'"store":true'
        )
        assert orjson.loads(first.content)["store"] is True


async def test_framing_stays_valid_when_restoration_changes_the_length(clock: FakeClock) -> None:
    """Restoring store/previous_response_id changes the body's length: the upstream's content-length
    must not survive it (over a real server a wrong one truncates or hangs the answer)."""
    middleware = RetentionMiddleware(EchoModel(), RetentionSettings(), store=MemoryStore(clock=clock), clock=clock)
    async with aserve(middleware) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        first = await client.post("/v1/responses", json={"model": "m", "input": "one"})
        assert first.status_code == 200 and first.json()["store"] is True
        second = await client.post("/v1/responses", json={"model": "m", "input": "two",
                                                          "previous_response_id": first.json()["id"]})  # fmt: skip
        assert second.json()["previous_response_id"] == first.json()["id"]
        streamed = await client.post("/v1/responses", json={"model": "m", "input": "three", "stream": True})
        assert streamed.text.rstrip().endswith("}") and '"store":true' in streamed.text
        for answer in (first, second):
            assert "content-length" not in answer.headers or int(answer.headers["content-length"]) == len(
                answer.content
            )
