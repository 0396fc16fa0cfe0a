"""A response created in a conversation says so: ``conversation: {"id": ...}`` in the JSON body, in every
event that carries the response, and in the stored copy (GET, and GET's stream replay), as OpenAI's
Response object has it. The upstream never hears of the conversation: the key is inserted where the
upstream wrote none, and its ``null`` rewritten where it wrote one."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator

import httpx2
import orjson
import pytest
from openai import AsyncOpenAI

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send
from retention_middleware.demo import EchoModel
from retention_middleware.responses.insert import KeyInserter
from retention_middleware.store.base import ResponseStore

from support.asgi_tools import asgi_client, random_split, read_request_body, send_pieces
from support.chat_upstream import ChatOnlyUpstream
from support.mongo_fixtures import FakeClock
from support.openai_schema import validate

SECRET = "conversation-field-secret-0123456789"
MODEL = "demo-echo"
RESPONSE_EVENTS = ("response.created", "response.in_progress", "response.completed")


@pytest.fixture
async def client(response_store: ResponseStore, clock: FakeClock) -> AsyncIterator[AsyncOpenAI]:
    app = RetentionMiddleware(
        EchoModel(MODEL), RetentionSettings(tenant_secret=SECRET), store=response_store, clock=clock
    )
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://testserver")
    async with AsyncOpenAI(base_url="http://testserver/v1", api_key="sk-a", max_retries=0, http_client=http) as sdk:
        yield sdk


async def test_a_response_in_a_conversation_names_it_in_json_stream_and_stored_copy(client: AsyncOpenAI) -> None:
    conversation = await client.conversations.create()
    raw = await client.responses.with_raw_response.create(model=MODEL, input="hello", conversation=conversation.id)
    body = json.loads(raw.text)
    assert body["conversation"] == {"id": conversation.id}
    validate(body, "Response")
    first = raw.parse()
    stream = await client.responses.create(
        model=MODEL, input="again", conversation={"id": conversation.id}, stream=True
    )
    events = [event async for event in stream]
    carrying = [event for event in events if event.type in RESPONSE_EVENTS]
    assert [event.type for event in carrying] == list(RESPONSE_EVENTS)
    assert all(event.response.conversation.id == conversation.id for event in carrying)  # type: ignore[union-attr]
    second = carrying[-1].response  # type: ignore[union-attr]
    # The stored copies say the same, as JSON and as the replayed stream.
    for stored_id in (first.id, second.id):
        stored = await client.responses.retrieve(stored_id)
        assert stored.conversation is not None and stored.conversation.id == conversation.id
    replay = [event async for event in await client.responses.retrieve(second.id, stream=True)]
    assert replay[-1].type == "response.completed"
    assert replay[-1].response.conversation.id == conversation.id  # type: ignore[union-attr]


async def test_a_response_in_no_conversation_gets_no_conversation_key(client: AsyncOpenAI) -> None:
    raw = await client.responses.with_raw_response.create(model=MODEL, input="hello")
    assert "conversation" not in json.loads(raw.text)
    stored = await client.responses.with_raw_response.retrieve(raw.parse().id)
    assert "conversation" not in json.loads(stored.text)


class NullConversationUpstream:
    """Writes ``"conversation": null`` (as a server that knows the key but kept no conversation),
    its body cut at random byte boundaries."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = json.loads(await read_request_body(receive))
        part = {"type": "output_text", "text": "ok", "annotations": []}
        item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": [part]}
        response = {"id": f"resp_null{self.seed}", "object": "response", "created_at": 1, "model": "m",
                    "status": "completed", "output": [item], "store": False, "previous_response_id": None,
                    "conversation": None}  # fmt: skip
        rng = random.Random(self.seed)
        if not request.get("stream"):
            body = json.dumps(response).encode()  # ": " after each key, as Python writes it
            await send_pieces(send, 200, b"application/json", random_split(body, rng))
            return
        events = [{"type": "response.created", "response": {**response, "status": "in_progress", "output": []}},
                  {"type": "response.completed", "response": response}]  # fmt: skip
        body = b"".join(
            b"data: " + orjson.dumps({**event, "sequence_number": n}) + b"\n\n" for n, event in enumerate(events)
        )
        await send_pieces(send, 200, b"text/event-stream", random_split(body, rng))


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_an_upstreams_null_conversation_is_rewritten_to_the_one_asked_for(stream: bool, seed: int) -> None:
    app = RetentionMiddleware(NullConversationUpstream(seed), RetentionSettings())
    headers = {"authorization": "Bearer sk-a"}
    async with asgi_client(app) as client:
        conversation = (await client.post("/v1/conversations", json={}, headers=headers)).json()["id"]
        answer = await client.post(
            "/v1/responses", json={"model": "m", "input": "x", "conversation": conversation, "stream": stream},
            headers=headers,
        )  # fmt: skip
        stored = (await client.get(f"/v1/responses/resp_null{seed}", headers=headers)).json()
    if stream:
        carried = [json.loads(line[6:])["response"] for line in answer.text.splitlines() if line.startswith("data: ")]
    else:
        carried = [answer.json()]
    assert [response["conversation"] for response in carried] == [{"id": conversation}] * len(carried)
    assert all(response["store"] is True for response in carried)
    assert stored["conversation"] == {"id": conversation}


def test_the_inserter_adds_the_conversation_wherever_the_body_is_cut() -> None:
    response = {"id": "resp_1", "object": "response", "output": [{"type": "message", "content": []}]}
    event = {"type": "response.completed", "response": response, "sequence_number": 3}
    delta = {"type": "response.output_text.delta", "delta": '{"conversation": null}', "sequence_number": 2}
    body = b"data: " + orjson.dumps(delta) + b"\n\ndata: " + orjson.dumps(event) + b"\n\n"
    for cut in range(1, len(body)):
        inserter = KeyInserter(sse=True, store=True, previous_response_id=None, conversation="conv_9")
        out = inserter.feed(body[:cut]) + inserter.feed(body[cut:])
        first, second = (json.loads(line[6:]) for line in out.decode().splitlines() if line)
        assert first == delta  # a delta's text is content: never touched
        assert second["response"] == {**response, "store": True, "previous_response_id": None,
                                      "conversation": {"id": "conv_9"}}  # fmt: skip


async def test_the_chat_backend_names_the_conversation_too() -> None:
    settings = RetentionSettings(tenant_secret=SECRET, responses_backend="chat")
    app = RetentionMiddleware(ChatOnlyUpstream(), settings)
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://testserver")
    async with AsyncOpenAI(base_url="http://testserver/v1", api_key="sk-a", max_retries=0, http_client=http) as client:
        conversation = await client.conversations.create()
        raw = await client.responses.with_raw_response.create(model="m", input="hello", conversation=conversation.id)
        stream = await client.responses.create(model="m", input="more", conversation=conversation.id, stream=True)
        completed = [event async for event in stream][-1]
        items = (await client.conversations.items.list(conversation.id, order="asc")).data
    body = json.loads(raw.text)
    validate(body, "Response")
    assert body["conversation"] == {"id": conversation.id}
    assert completed.type == "response.completed"
    assert completed.response.conversation.id == conversation.id  # type: ignore[union-attr]
    assert len(items) == 4  # both turns, input and output, appended as with the native backend
