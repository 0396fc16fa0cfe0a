"""The writes of a stored response (responses/turn.py): an ``in_progress`` record every replica sees,
a final write that never resurrects a deleted one, and ``RETENTION_STORE_FAILURE=reject`` never
serving an unstored answer as stored."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Message, Receive, Scope, Send
from retention_middleware.demo import EchoModel
from retention_middleware.store import MemoryStore, MongoStore
from retention_middleware.store.base import ResponseStore

from support.asgi_tools import asgi_client, capture_all_logs, read_request_body
from support.mongo_fixtures import FakeClock, MongoClient, MongoStoreFactory
from support.mongo_server import MongoTestServer


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: ".encode() + orjson.dumps(payload) + b"\n\n"


class GatedStream:
    """Streams ``response.created`` for ``resp_gated``, then waits for ``release`` before the final
    event (or, with ``complete=False``, before ending the stream without one)."""

    def __init__(self, *, complete: bool = True, output_text: str = "the answer") -> None:
        self.release = asyncio.Event()
        self.complete = complete
        self.output_text = output_text
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        await read_request_body(receive)
        response = {"id": "resp_gated", "object": "response", "status": "in_progress", "model": "m",
                    "store": False, "previous_response_id": None, "output": []}  # fmt: skip
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        created = {"type": "response.created", "sequence_number": 0, "response": response}
        await send({"type": "http.response.body", "body": _event("response.created", created), "more_body": True})
        await self.release.wait()
        if not self.complete:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        output = [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": self.output_text, "annotations": []}]}]  # fmt: skip
        done = {**response, "status": "completed", "output": output}
        final = {"type": "response.completed", "sequence_number": 1, "response": done}
        await send({"type": "http.response.body", "body": _event("response.completed", final), "more_body": False})


class HandDriven:
    """One streamed ``POST /v1/responses`` driven by hand, so a test can act while it streams."""

    def __init__(self, app: Any, body: dict[str, Any]) -> None:
        self.app = app
        self.request = orjson.dumps(body)
        self.chunks: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.request, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            await self.chunks.put(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/responses", "raw_path": b"/v1/responses", "query_string": b"", "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(self.request)).encode())],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        }  # fmt: skip
        self.task = asyncio.ensure_future(self.app(scope, receive, send))

    async def next_body(self) -> bytes:
        while True:
            message = await asyncio.wait_for(self.chunks.get(), 10)
            if message["type"] == "http.response.body":
                return bytes(message.get("body", b""))

    async def rest(self) -> bytes:
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)
        out = b""
        while not self.chunks.empty():
            message = self.chunks.get_nowait()
            out += message.get("body", b"")
        return out


def _events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]


@pytest.fixture(params=["memory", "mongo"])
def two_stores(request: pytest.FixtureRequest) -> tuple[ResponseStore, ResponseStore]:
    """The stores of two replicas on one backend: one MemoryStore both share, or two MongoStores on
    one database of the wire-protocol test server. (A plain fixture: see mongo_fixtures.store.)"""
    if request.param == "memory":
        shared: MemoryStore = request.getfixturevalue("memory_store")
        return shared, shared
    factory: MongoStoreFactory = request.getfixturevalue("make_mongo_store")
    return factory(), factory()


async def test_a_delete_on_another_replica_while_streaming_is_honoured(
    two_stores: tuple[ResponseStore, ResponseStore], store_clock: FakeClock
) -> None:
    store_a, store_b = two_stores
    upstream = GatedStream()
    replica_a = RetentionMiddleware(upstream, RetentionSettings(), store=store_a, clock=store_clock)
    replica_b = RetentionMiddleware(EchoModel(), RetentionSettings(), store=store_b, clock=store_clock)
    stream = HandDriven(replica_a, {"model": "m", "input": "question", "stream": True})
    with capture_all_logs() as logs:
        stream.start()
        created = _events(await stream.next_body())[0]
        assert created["type"] == "response.created" and created["response"]["store"] is True
        async with asgi_client(replica_b) as b:
            seen = await b.get("/v1/responses/resp_gated")
            assert seen.status_code == 200
            assert (seen.json()["status"], seen.json()["store"]) == ("in_progress", True)
            items = (await b.get("/v1/responses/resp_gated/input_items")).json()["data"]
            assert items[0]["content"][0]["text"] == "question"
            deleted = await b.delete("/v1/responses/resp_gated")
            assert deleted.status_code == 200 and deleted.json()["deleted"] is True
            upstream.release.set()
            rest = _events(await stream.rest())
            assert [event["type"] for event in rest] == ["response.completed"]  # the client is served
            assert (await b.get("/v1/responses/resp_gated")).status_code == 404  # and it stays deleted
        async with asgi_client(replica_a) as a:
            assert (await a.get("/v1/responses/resp_gated")).status_code == 404
    (entry,) = [json.loads(line) for line in logs.access_lines() if '"method":"POST"' in line]
    assert (entry["stored"], entry["error"]) == (False, "deleted_while_streaming")


async def test_without_a_delete_the_in_progress_record_becomes_the_final_one(
    two_stores: tuple[ResponseStore, ResponseStore], store_clock: FakeClock
) -> None:
    store_a, store_b = two_stores
    upstream = GatedStream()
    replica_a = RetentionMiddleware(upstream, RetentionSettings(), store=store_a, clock=store_clock)
    replica_b = RetentionMiddleware(EchoModel(), RetentionSettings(), store=store_b, clock=store_clock)
    stream = HandDriven(replica_a, {"model": "m", "input": "question", "stream": True})
    stream.start()
    await stream.next_body()
    async with asgi_client(replica_b) as b:
        assert (await b.get("/v1/responses/resp_gated")).json()["status"] == "in_progress"
        # An unfinished turn has no output to continue from: a clear 400, not a half conversation.
        early = await b.post(
            "/v1/responses", json={"model": "m", "input": "next", "previous_response_id": "resp_gated"}
        )
        assert early.status_code == 400 and early.json()["error"]["code"] == "previous_response_in_progress"
        upstream.release.set()
        await stream.rest()
        final = (await b.get("/v1/responses/resp_gated")).json()
        assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == "the answer"
        later = await b.post(
            "/v1/responses", json={"model": "m", "input": "next", "previous_response_id": "resp_gated"}
        )
        assert later.status_code == 200


async def test_a_stream_that_ends_without_a_final_response_leaves_no_record(
    two_stores: tuple[ResponseStore, ResponseStore], store_clock: FakeClock
) -> None:
    store_a, store_b = two_stores
    upstream = GatedStream(complete=False)
    replica_a = RetentionMiddleware(upstream, RetentionSettings(), store=store_a, clock=store_clock)
    stream = HandDriven(replica_a, {"model": "m", "input": "question", "stream": True})
    stream.start()
    await stream.next_body()
    assert await store_b.get("anonymous", "resp_gated") is not None  # in progress, seen by the other
    upstream.release.set()
    await stream.rest()
    assert await store_b.get("anonymous", "resp_gated") is None


# -- RETENTION_STORE_FAILURE=reject ------------------------------------------------------------------


class BigAnswer:
    """Answers every Responses request with a 20 KB output, as JSON or as a stream."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        streamed = orjson.loads(await read_request_body(receive)).get("stream") is True
        upstream = GatedStream(output_text="y" * 20_000)
        upstream.release.set()
        if streamed:
            await upstream(scope, _no_body, send)
            return
        output = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "y" * 20_000}]}]
        body = orjson.dumps({"id": f"resp_big{self.calls}", "object": "response", "status": "completed",
                             "store": False, "previous_response_id": None, "output": output})  # fmt: skip
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body[:100], "more_body": True})
        await send({"type": "http.response.body", "body": body[100:], "more_body": False})


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"{}", "more_body": False}


REJECT = RetentionSettings(store_failure="reject")


async def test_reject_answers_503_before_the_upstream_when_the_memory_store_cannot_take_the_request() -> None:
    upstream = BigAnswer()
    store = MemoryStore(budget=4 * 1024)  # empty, but with no room for a 6 KB input
    middleware = RetentionMiddleware(upstream, REJECT, store=store)
    async with asgi_client(middleware) as client:
        refused = await client.post("/v1/responses", json={"model": "m", "input": "z" * 6_000})
        unstored = await client.post("/v1/responses", json={"model": "m", "input": "z" * 6_000, "store": False})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable"
    assert unstored.status_code == 200  # nothing to store, nothing to refuse
    assert upstream.calls == 1 and len(store) == 0


async def test_reject_never_tells_the_client_store_true_for_an_answer_the_store_refused() -> None:
    upstream = BigAnswer()
    store = MemoryStore(budget=8 * 1024)  # room for the request, not for its 20 KB answer
    middleware = RetentionMiddleware(upstream, REJECT, store=store)
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            plain = await client.post("/v1/responses", json={"model": "m", "input": "hi"})
            streamed = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    assert upstream.calls == 2
    assert plain.status_code == 503 and plain.json()["error"]["code"] == "store_unavailable"
    assert '"store":true' not in plain.text.replace(" ", "")
    events = _events(streamed.content)
    assert [event["type"] for event in events] == ["response.created", "error"]  # no response.completed
    assert events[-1]["code"] == "store_unavailable"
    assert events[-1]["sequence_number"] > events[0]["sequence_number"]
    assert len(store) == 0  # the in_progress record went with the failed final write
    entries = [json.loads(line) for line in logs.access_lines()]
    assert [(entry["stored"], entry["error"]) for entry in entries] == [(False, "store_full")] * 2


async def test_reject_answers_503_before_the_upstream_when_mongodb_hangs(
    mongo_server: MongoTestServer, mongo_client: MongoClient, mongo_db_name: str
) -> None:
    settings = RetentionSettings(
        store=mongo_server.uri,
        mongo_db=mongo_db_name,
        mongo_timeout=timedelta(milliseconds=300),
        store_failure="reject",
        tenant_secret="t" * 32,
    )
    store = MongoStore(settings)
    upstream = BigAnswer()
    middleware = RetentionMiddleware(upstream, settings, store=store)
    try:
        async with asgi_client(middleware) as client:
            await store.start()
            # Connected, its monitor content, and every command now hangs: a MongoDB that stopped answering.
            hang = {"failCommands": ["ping", "insert", "update", "find"], "blockConnection": True, "blockTimeMS": 1000}
            await mongo_client.admin.command({"configureFailPoint": "failCommand", "mode": "alwaysOn", "data": hang})
            try:
                refused = await client.post("/v1/responses", json={"model": "m", "input": "x"})
            finally:
                await mongo_client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable"
        assert upstream.calls == 0
    finally:
        await store.close()
