"""DELETE /v1/retention/data erases everything held for the calling tenant, and only for it."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from typing import Any

import httpx
import orjson

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send
from retention_middleware.demo import EchoModel
from retention_middleware.store import MemoryStore
from retention_middleware.store.base import ResponseStore
from retention_middleware.tenancy import TenantResolver

from support.asgi_tools import asgi_client, capture_all_logs, read_request_body
from support.mongo_fixtures import FakeClock, MongoStoreFactory
from support.mongo_server import MongoTestServer
from support.servers import aserve

SECRET = "erasure-secret-0123456789abc"
KEY_A, KEY_B = {"authorization": "Bearer sk-a"}, {"authorization": "Bearer sk-b"}
TENANT_A = TenantResolver(SECRET, None).tenant_of([(b"authorization", b"Bearer sk-a")])
TENANT_B = TenantResolver(SECRET, None).tenant_of([(b"authorization", b"Bearer sk-b")])


def settings(**overrides: Any) -> RetentionSettings:
    return RetentionSettings(tenant_secret=SECRET, opt_in_tenants=frozenset({TENANT_A, TENANT_B}), **overrides)


async def fill(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    ids = []
    for text in ("first", "second"):
        answer = await client.post("/v1/responses", headers=headers, json={"model": "m", "input": text})
        ids.append(answer.json()["id"])
    await client.post("/v1/chat/completions", headers=headers, json={"model": "m", "messages": [
        {"role": "user", "content": "chat"}]})  # fmt: skip
    return ids


async def test_erasure_removes_one_tenants_data_and_leaves_the_other(
    response_store: ResponseStore, clock: FakeClock
) -> None:
    app = RetentionMiddleware(EchoModel(), settings(), store=response_store, clock=clock)
    async with asgi_client(app) as client:
        ids_a = await fill(client, KEY_A)
        ids_b = await fill(client, KEY_B)
        erased = await client.delete("/v1/retention/data", headers=KEY_A)
        assert erased.status_code == 200
        # two stored responses; three content records (two responses and a chat, all opted in)
        assert erased.json() == {
            "object": "retention.erasure",
            "responses_deleted": 2,
            "content_records_deleted": 3,
            "conversations_deleted": 0,
        }
        for response_id in ids_a:
            assert (await client.get(f"/v1/responses/{response_id}", headers=KEY_A)).status_code == 404
        for response_id in ids_b:
            assert (await client.get(f"/v1/responses/{response_id}", headers=KEY_B)).status_code == 200
        again = await client.delete("/v1/retention/data", headers=KEY_A)
        assert again.json()["responses_deleted"] == 0 and again.json()["content_records_deleted"] == 0
    assert await response_store.count_content(TENANT_A) == 0
    assert await response_store.count_content(TENANT_B) == 3


async def test_erasure_needs_an_identified_tenant(response_store: ResponseStore, clock: FakeClock) -> None:
    app = RetentionMiddleware(EchoModel(), RetentionSettings(), store=response_store, clock=clock)
    async with asgi_client(app) as client:
        created = (await client.post("/v1/responses", json={"model": "m", "input": "shared"})).json()
        refused = await client.delete("/v1/retention/data")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "tenant_required"
        assert (await client.get(f"/v1/responses/{created['id']}")).status_code == 200


class GatedStream:
    """A Responses stream that waits (in the server's thread) before its terminal event."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.model = EchoModel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/responses":
            await self.model(scope, receive, send)
            return
        await read_request_body(receive)
        response = {"id": "resp_erased_in_flight", "object": "response", "status": "completed", "store": False,
                    "previous_response_id": None, "output": []}  # fmt: skip
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        created = {"type": "response.created", "response": {**response, "status": "in_progress"}}
        await send({"type": "http.response.body", "more_body": True,
                    "body": b"event: response.created\ndata: " + orjson.dumps(created) + b"\n\n"})  # fmt: skip
        await asyncio.to_thread(self.release.wait, 10)
        done = {"type": "response.completed", "response": response}
        await send({"type": "http.response.body", "more_body": False,
                    "body": b"event: response.completed\ndata: " + orjson.dumps(done) + b"\n\n"})  # fmt: skip


async def test_a_stream_in_flight_during_erasure_is_not_stored() -> None:
    upstream = GatedStream()
    store = MemoryStore()
    app = RetentionMiddleware(upstream, settings(), store=store)
    async with aserve(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        body = {"model": "m", "input": "in flight", "stream": True}
        async with client.stream("POST", "/v1/responses", json=body, headers=KEY_A) as stream:
            lines = stream.aiter_lines()
            async for line in lines:
                if line.startswith("data: "):
                    break
            erased = await client.delete("/v1/retention/data", headers=KEY_A)
            assert erased.status_code == 200
            upstream.release.set()
            assert any("response.completed" in line for line in [line async for line in lines])
        assert (await client.get("/v1/responses/resp_erased_in_flight", headers=KEY_A)).status_code == 404
    assert len(store) == 0 and await store.count_content(TENANT_A) == 0


class FailingHalfWay:
    """The real MongoStore, with the database stopped between the two deletes of an erasure."""

    def __init__(self, inner: Any, server: MongoTestServer) -> None:
        self.inner, self.server, self.armed = inner, server, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def delete_tenant(self, tenant: str) -> int:
        deleted: int = await self.inner.delete_tenant(tenant)
        if self.armed:
            self.armed = False
            self.server.stop()
        return deleted


async def test_an_erasure_that_fails_half_way_says_so_and_a_retry_finishes(
    make_mongo_store: MongoStoreFactory, mongo_server: MongoTestServer, clock: FakeClock
) -> None:
    store = FailingHalfWay(make_mongo_store(mongo_timeout=timedelta(milliseconds=400)), mongo_server)
    app = RetentionMiddleware(EchoModel(), settings(), store=store, clock=clock)  # type: ignore[arg-type]
    async with asgi_client(app) as client:
        await fill(client, KEY_A)
        await fill(client, KEY_B)
        failed = await client.delete("/v1/retention/data", headers=KEY_A)
        assert failed.status_code == 503
        body = failed.json()
        assert body["error"]["code"] == "erasure_incomplete" and body["error"]["type"] == "server_error"
        assert body["responses_deleted"] == 2 and body["content_records_deleted"] is None
        assert "2 stored responses were deleted but content records were not" in body["error"]["message"]
        mongo_server.restart()
        for _ in range(40):  # the driver notices the server is back within its heartbeat
            retried = await client.delete("/v1/retention/data", headers=KEY_A)
            if retried.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert retried.json() == {
            "object": "retention.erasure",
            "responses_deleted": 0,
            "content_records_deleted": 3,
            "conversations_deleted": 0,
        }
    assert await store.inner.count_content(TENANT_A) == 0
    assert await store.inner.count_content(TENANT_B) == 3


async def test_an_erasure_is_access_logged_like_any_request(response_store: ResponseStore) -> None:
    app = RetentionMiddleware(EchoModel(), settings(), store=response_store)
    with capture_all_logs() as logs:
        async with asgi_client(app) as client:
            await client.delete("/v1/retention/data", headers=KEY_A)
    entry = json.loads(logs.access_lines()[0])
    assert entry["path"] == "/v1/retention/data" and entry["status"] == 200 and entry["tenant"] == TENANT_A
