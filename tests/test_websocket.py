"""The Responses API's WebSocket mode on ``/v1/responses``: the official ``openai`` client's
``responses.connect()`` and the ``websockets`` client against the middleware under uvicorn, and
against ``retention-proxy --demo``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import websockets
from openai import AsyncOpenAI
from test_cli import Proxy
from test_openai_client import MODEL, RecordingUpstream, sent_text

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send

from support.asgi_tools import capture_all_logs
from support.servers import aserve

WS = "websockets-sansio"  # uvicorn's WebSocket protocol on the websockets library
TERMINAL = ("response.completed", "response.incomplete", "response.failed", "error")


@pytest.fixture
async def upstream() -> RecordingUpstream:
    return RecordingUpstream()


@pytest.fixture
async def url(upstream: RecordingUpstream) -> AsyncIterator[str]:
    app = RetentionMiddleware(upstream, RetentionSettings())
    async with aserve(app, lifespan="on", ws=WS) as base:
        yield base


async def turn(socket: Any, **event: Any) -> list[dict[str, Any]]:
    """Send one client event and read the server's events up to the turn's terminal one."""
    await socket.send(orjson.dumps(event).decode())
    events = []
    while True:
        events.append(json.loads(await socket.recv()))
        if events[-1]["type"] in TERMINAL:
            return events


async def test_the_openai_client_runs_a_two_turn_conversation_over_one_socket(
    url: str, upstream: RecordingUpstream
) -> None:
    async with AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0, timeout=10) as client:
        async with client.responses.connect() as connection:
            await connection.response.create(model=MODEL, input="the code word is plum")
            first = [event async for event in _until_terminal(connection)]
            first_id = first[-1].response.id
            await connection.response.create(model=MODEL, input="what was it", previous_response_id=first_id)
            second = [event async for event in _until_terminal(connection)]
        assert [e.type for e in first][:2] == ["response.created", "response.in_progress"]
        assert first[-1].type == second[-1].type == "response.completed"
        assert second[-1].response.previous_response_id == first_id
        assert second[-1].response.output_text == "what was it"
        # Rehydrated from the store, the upstream stateless; stored as over HTTP.
        sent = upstream.bodies("/v1/responses")[1]
        assert "previous_response_id" not in sent and sent["store"] is False
        assert [sent_text(item) for item in sent["input"]] == ["the code word is plum"] * 2 + ["what was it"]
        stored = await client.responses.retrieve(second[-1].response.id)
        assert stored.previous_response_id == first_id and stored.output_text == "what was it"


async def _until_terminal(connection: Any) -> AsyncIterator[Any]:
    async for event in connection:
        yield event
        if event.type in TERMINAL:
            return


async def test_store_false_continues_on_its_socket_only(url: str, upstream: RecordingUpstream) -> None:
    socket_url = url.replace("http://", "ws://") + "/v1/responses"
    async with websockets.connect(socket_url) as socket:
        first = await turn(socket, type="response.create", model=MODEL, input="alpha beta", store=False)
        first_id = first[-1]["response"]["id"]
        second = await turn(
            socket, type="response.create", model=MODEL, input="gamma", store=False, previous_response_id=first_id
        )
    assert second[-1]["type"] == "response.completed"
    assert second[-1]["response"]["previous_response_id"] == first_id
    assert second[-1]["response"]["store"] is False
    sent = upstream.bodies("/v1/responses")[1]
    assert "previous_response_id" not in sent
    assert [sent_text(item) for item in sent["input"]] == ["alpha beta", "alpha beta", "gamma"]
    async with websockets.connect(socket_url) as socket:  # a new socket: that response is gone
        again = await turn(socket, type="response.create", model=MODEL, input="x", previous_response_id=first_id)
    assert again == [
        {
            "type": "error",
            "status": 400,
            "error": {
                "type": "invalid_request_error",
                "code": "previous_response_not_found",
                "message": f"Previous response with id '{first_id}' not found.",
                "param": "previous_response_id",
            },
        }
    ]


async def test_a_failed_continuation_evicts_the_cached_response(url: str) -> None:
    socket_url = url.replace("http://", "ws://") + "/v1/responses"
    async with websockets.connect(socket_url) as socket:
        first = await turn(socket, type="response.create", model=MODEL, input="hello", store=False)
        first_id = first[-1]["response"]["id"]
        orphan = [{"type": "function_call_output", "call_id": "call_missing", "output": "nothing called me"}]
        failed = await turn(
            socket, type="response.create", model=MODEL, store=False, previous_response_id=first_id, input=orphan
        )
        retry = await turn(socket, type="response.create", model=MODEL, store=False, previous_response_id=first_id)
    assert failed[-1]["type"] == "error" and failed[-1]["status"] == 400
    assert retry[-1]["error"]["code"] == "previous_response_not_found"


async def test_errors_are_error_events_and_the_socket_stays_open(url: str) -> None:
    socket_url = url.replace("http://", "ws://") + "/v1/responses"
    async with websockets.connect(socket_url) as socket:
        await socket.send("not json")
        bad_json = json.loads(await socket.recv())
        await socket.send('{"type": "response.cancel"}')
        bad_type = json.loads(await socket.recv())
        fine = await turn(socket, type="response.create", model=MODEL, input="still here", stream_id="lane-1")
    assert bad_json["type"] == "error" and bad_json["error"]["code"] == "invalid_json"
    assert bad_type["type"] == "error" and bad_type["error"]["param"] == "type"
    assert fine[-1]["type"] == "response.completed"
    assert {event["stream_id"] for event in fine} == {"lane-1"}
    assert [event["sequence_number"] for event in fine] == list(range(len(fine)))


async def test_events_are_processed_in_order_and_each_turn_is_logged_guarded_and_metered(url: str) -> None:
    canary = "canary-socket-5c1e77"
    socket_url = url.replace("http://", "ws://") + "/v1/responses"
    with capture_all_logs() as logs:
        async with websockets.connect(socket_url) as socket:
            for number in range(3):  # sent at once; answered one after another
                await socket.send(orjson.dumps({"type": "response.create", "model": MODEL,
                                                "input": f"{canary} turn {number}"}).decode())  # fmt: skip
            completed = []
            while len(completed) < 3:
                event = json.loads(await socket.recv())
                if event["type"] == "response.completed":
                    completed.append(event["response"]["output_text"] if "output_text" in event["response"] else
                                     event["response"]["output"][0]["content"][0]["text"])  # fmt: skip
    assert completed == [f"{canary} turn {n}" for n in range(3)]
    lines = [json.loads(line) for line in logs.access_lines()]
    assert [(line["method"], line["path"], line["stored"]) for line in lines] == [("POST", "/v1/responses", True)] * 3
    assert all(line["usage"]["output_tokens"] == 3 and line["stream"] is True for line in lines)
    assert canary not in logs.text()


async def test_other_websocket_paths_reach_the_app_unchanged() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            seen.append(scope["path"])
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "from the app"})
            await send({"type": "websocket.close", "code": 1000})
        elif scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    async with aserve(RetentionMiddleware(app, RetentionSettings()), lifespan="on", ws=WS) as base:
        async with websockets.connect(base.replace("http://", "ws://") + "/v1/realtime") as socket:
            assert await socket.recv() == "from the app"
    assert seen == ["/v1/realtime"]


async def test_retention_proxy_demo_accepts_the_websocket_upgrade() -> None:
    proxy = Proxy("--demo")
    try:
        async with websockets.connect(proxy.url.replace("http://", "ws://") + "/v1/responses") as socket:
            events = await turn(socket, type="response.create", model="demo-echo", input="over the proxy")
    finally:
        proxy.stop()
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "over the proxy"
