"""G2/G4/G8 and failure modes of the Responses API: bad input, a delete racing a stream, the store
down, a canary's whole life, and two replicas sharing one MongoDB."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send
from retention_middleware.demo import EchoModel
from retention_middleware.store import MemoryStore, MongoStore
from retention_middleware.store.base import ResponseStore, StoredResponse

from support.asgi_tools import (
    CountingUpstream,
    asgi_client,
    capture_all_logs,
    read_request_body,
    run_lifespan,
    send_pieces,
)
from support.mongo_fixtures import MONGO_TENANT_SECRET, FakeClock, MongoClient, MongoStoreFactory
from support.mongo_server import MongoTestServer
from support.servers import aserve


class CountingStore:
    """Delegates to a real store and counts the writes, so a test can say "the store is unchanged"."""

    def __init__(self, inner: ResponseStore) -> None:
        self.inner = inner
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name in ("put", "replace", "delete", "delete_tenant", "put_content", "delete_tenant_content"):

            async def counted(*args: Any, **kwargs: Any) -> Any:
                self.writes.append(name)
                return await attribute(*args, **kwargs)

            return counted
        return attribute


@pytest.fixture
async def guarded(
    response_store: ResponseStore, clock: FakeClock
) -> AsyncIterator[tuple[httpx.AsyncClient, CountingStore, CountingUpstream]]:
    store = CountingStore(response_store)
    upstream = CountingUpstream()
    middleware = RetentionMiddleware(
        upstream,
        RetentionSettings(max_body=64 * 1024),
        store=store,
        clock=clock,  # type: ignore[arg-type]
    )
    async with asgi_client(middleware) as client:
        yield client, store, upstream


INJECTIONS: list[Any] = [{"$ne": None}, {"$gt": ""}, ["resp_1"], 12, True, "resp_1'; drop", "resp 1", ""]


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        (b'{"model": "m", "input": ', 400, None, "invalid_json"),
        (b'[{"model": "m"}]', 400, None, "invalid_json"),
        (b'"text"', 400, None, "invalid_json"),
        (b'{"model": "m", "input": "caf\xe9"}', 400, None, "invalid_json"),
        (b'{"model": "m", "input": "x", "store": "yes"}', 400, "store", "invalid_type"),
        (b'{"model": "m", "input": 42}', 400, "input", "invalid_type"),
        (b'{"model": "m", "input": ["not an item"]}', 400, "input[0]", "invalid_type"),
        (b'{"model": "m", "input": "x", "background": true}', 400, "background", "unsupported_parameter"),
        *[(orjson.dumps({"model": "m", "input": "x", "previous_response_id": value}), 400,
           "previous_response_id", "invalid_type" if not isinstance(value, str) else "invalid_value")
          for value in INJECTIONS],
        (orjson.dumps({"model": "m", "input": "x" * 70_000}), 413, None, "request_too_large"),
        # Nested past RETENTION_MAX_JSON_DEPTH (128), and past the 254 levels orjson serialises.
        (b'{"model": "m", "input": "x", "metadata": ' + b"[" * 128 + b"]" * 128 + b"}", 400, None, "json_too_deep"),
        (b'{"model": "m", "input": "x", "tools": ' + b"[" * 300 + b"]" * 300 + b"}", 400, None, "json_too_deep"),
        # More than RETENTION_MAX_INPUT_ITEMS (10,000) items, well under the body limit.
        (orjson.dumps({"model": "m", "input": [{}] * 10_001}), 400, "input", "too_many_input_items"),
    ],
)  # fmt: skip
async def test_bad_create_requests_get_a_clear_4xx_and_change_nothing(
    guarded: tuple[httpx.AsyncClient, CountingStore, CountingUpstream],
    body: bytes, status: int, param: str | None, code: str,
) -> None:  # fmt: skip
    client, store, upstream = guarded
    with capture_all_logs() as logs:
        response = await client.post("/v1/responses", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"]
    assert store.writes == [] and upstream.calls == 0
    entry = json.loads(logs.access_lines()[0])
    assert entry["status"] == status and entry["error"] == code


@pytest.mark.parametrize(
    ("method", "path", "params", "param"),
    [
        ("GET", '/v1/responses/{"$ne": null}', {}, "response_id"),
        ("DELETE", '/v1/responses/{"$gt": ""}', {}, "response_id"),
        ("GET", "/v1/responses/resp$where/input_items", {}, "response_id"),
        ("GET", "/v1/responses/resp_1/input_items", {"limit": "0"}, "limit"),
        ("GET", "/v1/responses/resp_1/input_items", {"limit": "101"}, "limit"),
        ("GET", "/v1/responses/resp_1/input_items", {"limit": "ten"}, "limit"),
        ("GET", "/v1/responses/resp_1/input_items", {"limit": "1" * 5000}, "limit"),
        ("GET", "/v1/responses/resp_1/input_items", {"limit": "\uff11\uff10"}, "limit"),  # full-width 10
        ("GET", "/v1/responses/resp_1/input_items", {"limit": "\u00b2"}, "limit"),  # superscript two
        ("GET", "/v1/responses/resp_1/input_items", {"limit": " 10"}, "limit"),
        ("GET", "/v1/responses/resp_1/input_items", {"order": "sideways"}, "order"),
        ("GET", "/v1/responses/resp_1/input_items", {"after": '{"$gt": ""}'}, "after"),
    ],
)
async def test_bad_ids_and_parameters_on_served_endpoints(
    guarded: tuple[httpx.AsyncClient, CountingStore, CountingUpstream],
    method: str, path: str, params: dict[str, str], param: str,
) -> None:  # fmt: skip
    client, store, upstream = guarded
    created = (await client.post("/v1/responses", json={"model": "m", "input": "x"})).json()
    writes_before = list(store.writes)
    response = await client.request(method, path.replace("resp_1", created["id"]), params=params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert store.writes == writes_before and upstream.calls == 1
    assert (await client.get(f"/v1/responses/{created['id']}")).status_code == 200


class GatedResponses:
    """Streams response.created, then waits for the test before finishing the response. It runs in
    the server's thread, so the gate is a threading.Event."""

    def __init__(self) -> None:
        self.release = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await read_request_body(receive)
        response = {"id": "resp_racing", "object": "response", "status": "in_progress", "store": False,
                    "previous_response_id": None, "output": []}  # fmt: skip
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        created = {"type": "response.created", "response": response, "sequence_number": 0}
        await send({"type": "http.response.body", "more_body": True,
                    "body": b"event: response.created\ndata: " + orjson.dumps(created) + b"\n\n"})  # fmt: skip
        await asyncio.to_thread(self.release.wait, 10)
        done = {"type": "response.completed", "response": {**response, "status": "completed"}, "sequence_number": 1}
        await send({"type": "http.response.body", "more_body": False,
                    "body": b"event: response.completed\ndata: " + orjson.dumps(done) + b"\n\n"})  # fmt: skip


async def test_a_delete_racing_a_stream_is_honoured() -> None:
    upstream = GatedResponses()
    store = CountingStore(MemoryStore())
    middleware = RetentionMiddleware(upstream, RetentionSettings(), store=store)  # type: ignore[arg-type]
    # A real server, so the client reads the stream while it is still open.
    async with aserve(middleware) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        async with client.stream("POST", "/v1/responses", json={"model": "m", "input": "x", "stream": True}) as stream:
            lines = stream.aiter_lines()
            async for line in lines:
                if line.startswith("data: "):
                    assert json.loads(line[6:])["response"]["id"] == "resp_racing"
                    break
            deleted = await client.delete("/v1/responses/resp_racing")
            assert deleted.status_code == 200 and deleted.json()["deleted"] is True
            upstream.release.set()
            rest = [line async for line in lines]
        assert any("response.completed" in line for line in rest)
        assert (await client.get("/v1/responses/resp_racing")).status_code == 404
        assert (await client.delete("/v1/responses/resp_racing")).status_code == 404
    # Only the in_progress record was ever written, and the delete removed it: nothing came back.
    assert store.writes.count("put") == 1 and "replace" not in store.writes
    assert len(store.inner) == 0


async def test_without_the_delete_the_same_stream_is_stored() -> None:
    """The control for the race above: the gated stream is stored when nobody deletes it."""
    upstream = GatedResponses()
    upstream.release.set()
    middleware = RetentionMiddleware(upstream, RetentionSettings(), store=MemoryStore())
    async with aserve(middleware) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        await client.post("/v1/responses", json={"model": "m", "input": "x", "stream": True})
        assert (await client.get("/v1/responses/resp_racing")).status_code == 200


async def _raw_documents(mongo_client: MongoClient, database: str) -> list[dict[str, Any]]:
    return [doc async for doc in mongo_client[database]["responses"].find({})]


async def test_a_stored_canary_is_in_the_store_only_and_gone_after_delete(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str, clock: FakeClock
) -> None:
    canary = "CANARY-stored-4e8f1a2b3c"
    store = make_mongo_store()
    middleware = RetentionMiddleware(EchoModel(), RetentionSettings(), store=store, clock=clock)
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            created = (await client.post("/v1/responses", json={"model": "m", "input": f"remember {canary}"})).json()
            documents = await _raw_documents(mongo_client, mongo_db_name)
            assert len(documents) == 1 and canary.encode() in bytes(documents[0]["input_items"])
            assert canary.encode() in bytes(documents[0]["response"])
            assert (await client.get(f"/v1/responses/{created['id']}")).status_code == 200
            await client.delete(f"/v1/responses/{created['id']}")
            assert await _raw_documents(mongo_client, mongo_db_name) == []
    assert canary not in logs.text()
    assert len(logs.access_lines()) == 3
    # pymongo logged every command at DEBUG (the capture sets the root to DEBUG), without documents.
    assert '"commandName": "insert"' in logs.text() and '"commandName": "find"' in logs.text()
    assert "$binary" not in logs.text() and "firstBatch" not in logs.text()


async def test_memory_store_holds_the_canary_only_until_delete(clock: FakeClock) -> None:
    canary = "CANARY-memory-9d8c7b6a"
    store = MemoryStore(clock=clock)
    middleware = RetentionMiddleware(EchoModel(), RetentionSettings(), store=store, clock=clock)
    async with asgi_client(middleware) as client:
        created = (await client.post("/v1/responses", json={"model": "m", "input": f"keep {canary}"})).json()
        assert len(store) == 1 and store.used_bytes > 0
        await client.delete(f"/v1/responses/{created['id']}")
    assert len(store) == 0 and store.used_bytes == 0
    await store.close()


@pytest.fixture
def fast_failing_settings(mongo_server: MongoTestServer, mongo_db_name: str) -> RetentionSettings:
    return RetentionSettings(
        store=mongo_server.uri,
        mongo_db=mongo_db_name,
        mongo_timeout=timedelta(milliseconds=300),
        tenant_secret=MONGO_TENANT_SECRET,
    )


async def test_store_down_serve_mode_answers_and_records_not_stored(
    mongo_server: MongoTestServer, fast_failing_settings: RetentionSettings
) -> None:
    store = MongoStore(fast_failing_settings)
    middleware = RetentionMiddleware(EchoModel(), fast_failing_settings, store=store)
    try:
        async with asgi_client(middleware) as client:
            mongo_server.stop()
            with capture_all_logs() as logs:
                plain = await client.post("/v1/responses", json={"model": "m", "input": "still served"})
                streamed = await client.post("/v1/responses", json={"model": "m", "input": "s", "stream": True})
                fetched = await client.get("/v1/responses/resp_anything")
            assert plain.status_code == 200 and plain.json()["output"][0]["content"][0]["text"] == "still served"
            assert streamed.status_code == 200 and "response.completed" in streamed.text
            assert fetched.status_code == 503 and fetched.json()["error"]["code"] == "store_unavailable"
            entries = [json.loads(line) for line in logs.access_lines()]
            assert [(e["stored"], e["error"]) for e in entries[:2]] == [(False, "store_unavailable")] * 2
            mongo_server.restart()
            recovered = await client.post("/v1/responses", json={"model": "m", "input": "back"})
            assert (await client.get(f"/v1/responses/{recovered.json()['id']}")).status_code == 200
            assert (await client.get(f"/v1/responses/{plain.json()['id']}")).status_code == 404  # no partial record
    finally:
        await store.close()


async def test_store_down_reject_mode_answers_503_before_the_upstream(
    mongo_server: MongoTestServer, fast_failing_settings: RetentionSettings
) -> None:
    settings = RetentionSettings(**{**fast_failing_settings.__dict__, "store_failure": "reject"})
    store = MongoStore(settings)
    upstream = CountingUpstream()
    middleware = RetentionMiddleware(upstream, settings, store=store)
    try:
        async with asgi_client(middleware) as client:
            mongo_server.stop()
            refused = await client.post("/v1/responses", json={"model": "m", "input": "x"})
            assert refused.status_code == 503
            assert refused.json()["error"] == {
                "message": "The response store is unavailable; please retry shortly.", "type": "server_error",
                "param": None, "code": "store_unavailable",
            }  # fmt: skip
            assert upstream.calls == 0
            unstored = await client.post("/v1/responses", json={"model": "m", "input": "x", "store": False})
            assert unstored.status_code == 200  # nothing to store, nothing to refuse
            mongo_server.restart()
            assert (await client.post("/v1/responses", json={"model": "m", "input": "x"})).status_code == 200
    finally:
        await store.close()


async def test_a_full_memory_store_refuses_and_the_answer_is_still_served(clock: FakeClock) -> None:
    store = MemoryStore(budget=3000, clock=clock)
    middleware = RetentionMiddleware(EchoModel(), RetentionSettings(), store=store, clock=clock)
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            answers = [await client.post("/v1/responses", json={"model": "m", "input": "word " * 50}) for _ in range(5)]
    assert all(answer.status_code == 200 for answer in answers)
    entries = [json.loads(line) for line in logs.access_lines()]
    assert entries[0]["stored"] is True
    assert ("store_full" in [e["error"] for e in entries]) and len(store) < 5
    await store.close()


async def test_two_replicas_share_one_mongodb(make_mongo_store: MongoStoreFactory, clock: FakeClock) -> None:
    settings = RetentionSettings(tenant_secret="shared-secret-0123456789")
    upstream_a, upstream_b = CountingUpstream(), CountingUpstream()
    replica_a = RetentionMiddleware(upstream_a, settings, store=make_mongo_store(), clock=clock)
    replica_b = RetentionMiddleware(upstream_b, settings, store=make_mongo_store(), clock=clock)
    key = {"authorization": "Bearer sk-shared"}
    async with (
        asgi_client(replica_a, headers=key) as a,
        asgi_client(replica_b, headers=key) as b,
    ):
        first = (await a.post("/v1/responses", json={"model": "m", "input": "made on a"})).json()
        assert (await b.get(f"/v1/responses/{first['id']}")).json() == first
        second = (await b.post("/v1/responses", json={"model": "m", "input": "continued on b",
                                                       "previous_response_id": first["id"]})).json()  # fmt: skip
        assert second["usage"]["input_tokens"] == 3 + 3 + 3  # a's turn, its answer, then b's input
        assert (await b.delete(f"/v1/responses/{first['id']}")).status_code == 200
        assert (await a.get(f"/v1/responses/{first['id']}")).status_code == 404
        refused = await a.post("/v1/responses", json={"model": "m", "input": "x",
                                                       "previous_response_id": second["id"]})  # fmt: skip
        assert refused.status_code == 400 and first["id"] in refused.json()["error"]["message"]


async def test_lifespan_startup_prepares_the_store_and_a_conflict_fails_it(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str
) -> None:
    ok = await run_lifespan(RetentionMiddleware(EchoModel(), RetentionSettings(), store=make_mongo_store()))
    assert ok[0] == {"type": "lifespan.startup.complete"}
    names = {index["name"] async for index in await mongo_client[mongo_db_name]["responses"].list_indexes()}
    assert {"expires_at_ttl", "tenant_created_at"} <= names
    await mongo_client[mongo_db_name]["responses"].drop_index("expires_at_ttl")
    await mongo_client[mongo_db_name]["responses"].create_index(
        "expires_at", name="expires_at_ttl", expireAfterSeconds=3600
    )
    failed = await run_lifespan(RetentionMiddleware(EchoModel(), RetentionSettings(), store=make_mongo_store()))
    assert failed[0]["type"] == "lifespan.startup.failed"
    assert "expires_at_ttl" in failed[0]["message"]


async def test_stored_record_fields(response_store: ResponseStore, clock: FakeClock) -> None:
    middleware = RetentionMiddleware(EchoModel(), RetentionSettings(ttl=timedelta(hours=12)),
                                     store=response_store, clock=clock)  # fmt: skip
    async with asgi_client(middleware) as client:
        first = (await client.post("/v1/responses", json={"model": "demo", "input": "a b"})).json()
        second = (await client.post("/v1/responses", json={"model": "demo", "input": "c",
                                                            "previous_response_id": first["id"]})).json()  # fmt: skip
    record = await response_store.get("anonymous", second["id"])
    assert isinstance(record, StoredResponse)
    assert record.expires_at - record.created_at == timedelta(hours=12)
    assert record.created_at == clock()
    assert (record.model, record.status, record.previous_response_id) == ("demo", "completed", first["id"])
    assert record.ancestors == (first["id"],)
    assert record.input_items == [{"type": "message", "role": "user", "content": "c"}]
    assert record.usage == {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6, "cached_tokens": 0,
                            "reasoning_tokens": 0}  # fmt: skip


async def test_upstream_errors_are_passed_through_and_nothing_is_stored(
    response_store: ResponseStore, clock: FakeClock
) -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        await read_request_body(receive)
        error = orjson.dumps({"error": {"message": "model not found", "type": "NotFoundError", "code": 404}})
        await send_pieces(send, 404, b"application/json", [error])

    store = CountingStore(response_store)
    middleware = RetentionMiddleware(failing, RetentionSettings(), store=store, clock=clock)  # type: ignore[arg-type]
    async with asgi_client(middleware) as client:
        answer = await client.post("/v1/responses", json={"model": "nope", "input": "x"})
    assert answer.status_code == 404 and answer.json()["error"]["message"] == "model not found"
    assert store.writes == []


@pytest.mark.parametrize(
    ("policy", "path", "body"),
    [
        ("standard", "/v1/responses", {"model": "m", "input": "CANARY-G2", "store": False}),
        ("standard", "/v1/responses", {"model": "m", "input": "CANARY-G2", "store": False, "stream": True}),
        ("zero", "/v1/responses", {"model": "m", "input": "CANARY-G2"}),
        ("zero", "/v1/responses", {"model": "m", "input": "CANARY-G2", "store": True, "stream": True}),
        ("standard", "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "CANARY-G2"}]}),
        ("standard", "/v1/completions", {"model": "m", "prompt": "CANARY-G2", "stream": True}),
        ("standard", "/v1/embeddings", {"model": "m", "input": "CANARY-G2"}),
    ],
)
async def test_g2_nothing_reaches_the_store_unless_a_response_is_stored(
    response_store: ResponseStore, clock: FakeClock, policy: str, path: str, body: dict[str, Any]
) -> None:
    store = CountingStore(response_store)
    middleware = RetentionMiddleware(
        EchoModel(),
        RetentionSettings(policy=policy),
        store=store,
        clock=clock,  # type: ignore[arg-type]
    )
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            answer = await client.post(path, json=body)
    assert answer.status_code == 200
    assert ("CANARY-G2" in answer.text) is (path != "/v1/embeddings")  # echoed back, except as a vector
    assert store.writes == []
    assert await response_store.count_content("anonymous") == 0
    assert "CANARY-G2" not in logs.text()


async def test_millions_of_input_items_are_refused_naming_the_limit_and_others_are_answered() -> None:
    upstream = CountingUpstream()
    store = CountingStore(MemoryStore())
    middleware = RetentionMiddleware(upstream, RetentionSettings(), store=store)
    # 5 M items in 15 MB, under the 16 MiB body limit: listing such a response froze the process.
    hostile = b'{"model": "m", "input": [' + b",".join([b"{}"] * 5_000_000) + b"]}"
    async with asgi_client(middleware) as client:
        innocent = (await client.post("/v1/responses", json={"model": "m", "input": "hello"})).json()
        refused, listed = await asyncio.gather(
            client.post("/v1/responses", content=hostile, headers={"content-type": "application/json"}),
            client.get(f"/v1/responses/{innocent['id']}/input_items", params={"limit": "1"}),
        )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["param"], error["code"]) == ("input", "too_many_input_items")
    assert "10000" in error["message"] and "RETENTION_MAX_INPUT_ITEMS" in error["message"]
    assert listed.status_code == 200 and len(listed.json()["data"]) == 1
    assert upstream.calls == 1 and store.writes == ["put"]


async def test_a_page_of_a_response_at_the_item_limit_builds_only_its_own_items() -> None:
    middleware = RetentionMiddleware(CountingUpstream(), RetentionSettings(max_input_items=10_000))
    items = [{"type": "message", "role": "user", "content": f"item {n}"} for n in range(10_000)]
    async with asgi_client(middleware) as client:
        created = (await client.post("/v1/responses", json={"model": "m", "input": items})).json()
        url = f"/v1/responses/{created['id']}/input_items"
        last_two = (await client.get(url, params={"limit": "2"})).json()
        after = (await client.get(url, params={"limit": "1", "after": last_two["data"][0]["id"]})).json()
        first = (await client.get(url, params={"limit": "1", "order": "asc"})).json()
    assert [item["content"][0]["text"] for item in last_two["data"]] == ["item 9999", "item 9998"]
    assert last_two["has_more"] is True
    assert [item["content"][0]["text"] for item in after["data"]] == ["item 9998"]
    assert [item["content"][0]["text"] for item in first["data"]] == ["item 0"] and first["has_more"] is True
