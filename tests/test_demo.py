"""The echo model: every endpoint, JSON and SSE, its token arithmetic, and its error answers."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from openai import AsyncOpenAI

from retention_middleware.demo import EchoModel, create_echo_app

from support.asgi_tools import run_lifespan
from support.servers import aserve

CASSETTE = Path(__file__).parent / "fixtures/cassettes/reasoning-single-openai-gpt-oss-20b-streaming.yaml"


@pytest.fixture
async def client() -> Any:
    transport = httpx.ASGITransport(app=EchoModel(), client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as http:
        yield http


def sse_events(text: str) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) per SSE event; ``[DONE]`` is kept as the string."""
    events: list[tuple[str | None, Any]] = []
    for block in text.split("\n\n"):
        if not block:
            continue
        name = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        payload = "\n".join(data)
        events.append((name, payload if payload == "[DONE]" else orjson.loads(payload)))
    return events


def collapsed_types(types: list[str]) -> list[str]:
    """Event types with each run of the same ``*.delta`` type written once."""
    out: list[str] = []
    for kind in types:
        if not (kind.endswith(".delta") and out and out[-1] == kind):
            out.append(kind)
    return out


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


# -- /v1/models --------------------------------------------------------------------------------------


async def test_models_list_has_vllm_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    [model] = body["data"]
    assert model["id"] == model["root"] == "demo-echo"
    assert model["object"] == "model"
    assert {"created", "owned_by", "parent", "max_model_len", "permission"} <= model.keys()
    assert model["permission"][0]["object"] == "model_permission"


async def test_model_id_is_a_constructor_knob() -> None:
    transport = httpx.ASGITransport(app=create_echo_app("tiny-echo"))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as http:
        assert (await http.get("/v1/models")).json()["data"][0]["id"] == "tiny-echo"
        chat = await http.post("/v1/chat/completions", json={"messages": [user("hi")]})
        assert chat.json()["model"] == "tiny-echo"


# -- chat completions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "say  hello\nto the world",
        [{"type": "text", "text": "say hello"}, {"type": "text", "text": "to the world"}],
    ],
)
async def test_chat_json_echoes_the_last_user_message(client: httpx.AsyncClient, content: Any) -> None:
    messages = [
        {"role": "system", "content": "you are an echo"},
        user("an older question"),
        {"role": "assistant", "content": "an older answer"},
        {"role": "user", "content": content},
    ]
    response = await client.post("/v1/chat/completions", json={"model": "m", "messages": messages})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "m"
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "say hello to the world"
    assert choice["finish_reason"] == "stop"
    # Input: 4 + 3 + 3 + 5 words over every message; output: 5 words.
    assert body["usage"] == {
        "prompt_tokens": 15,
        "completion_tokens": 5,
        "total_tokens": 20,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


async def test_chat_stream_is_role_then_one_word_per_chunk_then_finish(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={"messages": [user("a b c")], "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [data for _, data in sse_events(response.text)]
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "a"},
        {"content": " b"},
        {"content": " c"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, None, "stop"]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert all("usage" not in c for c in chunks)  # vLLM: no usage key unless asked for


async def test_chat_stream_include_usage_adds_one_usage_chunk_before_done(client: httpx.AsyncClient) -> None:
    body = {"messages": [user("a b c")], "stream": True, "stream_options": {"include_usage": True}}
    events = [data for _, data in sse_events((await client.post("/v1/chat/completions", json=body)).text)]
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 3,
        "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert all("usage" not in c for c in events[:-2])


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"max_tokens": 7}, 7),
        ({"max_completion_tokens": 2}, 2),
        ({"max_completion_tokens": 4, "max_tokens": 9}, 4),  # the newer name wins, as at OpenAI
    ],
)
async def test_chat_max_tokens_repeats_words_cyclically(
    client: httpx.AsyncClient, limits: dict[str, int], expected: int
) -> None:
    words = ["one", "two", "three"]
    body = {"messages": [user(" ".join(words))], **limits}
    answer = (await client.post("/v1/chat/completions", json=body)).json()
    assert answer["choices"][0]["message"]["content"].split() == [words[i % 3] for i in range(expected)]
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == expected

    stream = await client.post("/v1/chat/completions", json={**body, "stream": True})
    deltas = [d["choices"][0]["delta"].get("content") for _, d in sse_events(stream.text)[1:-2]]
    assert len(deltas) == expected
    assert "".join(deltas) == answer["choices"][0]["message"]["content"]


async def test_a_long_stream_has_exactly_max_tokens_content_chunks(client: httpx.AsyncClient) -> None:
    body = {"messages": [user("tick tock")], "max_tokens": 2000, "stream": True}
    events = sse_events((await client.post("/v1/chat/completions", json=body)).text)
    content = [d for _, d in events if d != "[DONE]" and d["choices"][0]["delta"].get("content")]
    assert len(content) == 2000
    assert len(events) == 2000 + 3  # role chunk, finish chunk, [DONE]


# -- completions -------------------------------------------------------------------------------------


async def test_completions_json_and_stream(client: httpx.AsyncClient) -> None:
    answer = (await client.post("/v1/completions", json={"prompt": "once upon a time"})).json()
    assert answer["object"] == "text_completion"
    assert answer["id"].startswith("cmpl-")
    assert answer["choices"][0]["text"] == "once upon a time"
    assert answer["usage"]["prompt_tokens"] == answer["usage"]["completion_tokens"] == 4

    body = {"prompt": "once upon", "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}}
    events = [d for _, d in sse_events((await client.post("/v1/completions", json=body)).text)]
    assert events[-1] == "[DONE]"
    assert [e["choices"][0]["text"] for e in events[:-2]] == ["once", " upon", " once", ""]
    assert [e["choices"][0]["finish_reason"] for e in events[:-2]] == [None, None, None, "length"]
    assert events[-2]["choices"] == []
    assert events[-2]["usage"]["completion_tokens"] == 3


async def test_completions_prompt_list_counts_every_prompt(client: httpx.AsyncClient) -> None:
    answer = (await client.post("/v1/completions", json={"prompt": ["a b", "c d e"]})).json()
    assert answer["choices"][0]["text"] == "c d e"
    assert answer["usage"]["prompt_tokens"] == 5


# -- embeddings --------------------------------------------------------------------------------------


async def test_embeddings_are_deterministic_unit_vectors(client: httpx.AsyncClient) -> None:
    first = (await client.post("/v1/embeddings", json={"input": ["red apple", "green pear"]})).json()
    again = (await client.post("/v1/embeddings", json={"input": "red apple"})).json()
    assert first["object"] == "list"
    vectors = [item["embedding"] for item in first["data"]]
    assert [item["index"] for item in first["data"]] == [0, 1]
    assert [len(v) for v in vectors] == [8, 8]
    assert vectors[0] == again["data"][0]["embedding"]
    assert vectors[0] != vectors[1]
    assert math.isclose(math.hypot(*vectors[0]), 1.0)
    assert first["usage"] == {
        "prompt_tokens": 4,
        "total_tokens": 4,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


async def test_embeddings_dimensions_and_base64(client: httpx.AsyncClient) -> None:
    floats = (await client.post("/v1/embeddings", json={"input": "x", "dimensions": 5})).json()
    packed = (
        await client.post("/v1/embeddings", json={"input": "x", "dimensions": 5, "encoding_format": "base64"})
    ).json()
    vector = floats["data"][0]["embedding"]
    assert len(vector) == 5
    decoded = struct.unpack("<5f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(vector, rel=1e-6)


# -- responses ---------------------------------------------------------------------------------------


async def test_responses_json_echoes_and_counts_the_whole_history(client: httpx.AsyncClient) -> None:
    history = [
        {"role": "user", "content": "first question here"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "first answer"}],
        },
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "tool said this"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "echo me please"}]},
    ]
    body = {
        "model": "m",
        "input": history,
        "instructions": "be brief",
        "store": False,
        "metadata": {"k": "v"},
    }
    response = await client.post("/v1/responses", json=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["id"].startswith("resp_")
    assert answer["object"] == "response"
    assert answer["status"] == "completed"
    assert answer["model"] == "m"
    assert answer["store"] is False
    assert answer["previous_response_id"] is None
    assert answer["instructions"] == "be brief"
    assert answer["metadata"] == {"k": "v"}
    [item] = answer["output"]
    assert item["type"] == "message" and item["role"] == "assistant" and item["id"].startswith("msg_")
    assert item["content"][0]["type"] == "output_text"
    assert item["content"][0]["text"] == "echo me please"
    # 3 + 2 + 2 (arguments) + 3 + 3 input words, plus 2 of instructions.
    assert answer["usage"] == {
        "input_tokens": 15,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 18,
    }


async def test_responses_store_defaults_to_true_and_ids_are_unique(client: httpx.AsyncClient) -> None:
    one = (await client.post("/v1/responses", json={"input": "same words"})).json()
    two = (await client.post("/v1/responses", json={"input": "same words"})).json()
    assert one["store"] is True
    assert one["id"] != two["id"]
    assert one["output"][0]["id"] != two["output"][0]["id"]
    assert one["output"][0]["content"] == two["output"][0]["content"]


async def test_responses_max_output_tokens_repeats(client: httpx.AsyncClient) -> None:
    answer = (await client.post("/v1/responses", json={"input": "x y", "max_output_tokens": 5})).json()
    assert answer["output"][0]["content"][0]["text"] == "x y x y x"
    assert answer["usage"]["output_tokens"] == 5


def cassette_events() -> list[dict[str, Any]]:
    turn = yaml.safe_load(CASSETTE.read_text())["turns"][0]
    events = [data for _, data in sse_events("".join(turn["response"]["sse"]))]
    # Keep the message part of the recorded stream: drop the reasoning item and its events.
    return [e for e in events if "reasoning" not in e["type"] and e.get("item", {}).get("type") != "reasoning"]


async def test_responses_stream_matches_the_recorded_vllm_event_sequence(client: httpx.AsyncClient) -> None:
    recorded = cassette_events()
    body = {"input": "one two three four", "stream": True}
    response = await client.post("/v1/responses", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    named = sse_events(response.text)
    events = [data for _, data in named]
    types = [e["type"] for e in events]

    assert collapsed_types(types) == collapsed_types([e["type"] for e in recorded])
    assert collapsed_types(types) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert types.count("response.output_text.delta") == 4
    assert [name for name, _ in named] == types  # the event: line names the data's type
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    # Each event type carries the same fields as the recorded one.
    recorded_keys = {e["type"]: set(e) for e in recorded}
    for event in events:
        assert set(event) == recorded_keys[event["type"]], event["type"]

    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert "".join(deltas) == done["text"] == "one two three four"
    created, completed = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"]["output_tokens"] == 0
    assert completed["id"] == created["id"]
    assert completed["status"] == "completed"
    assert completed["output"] == [events[-2]["item"]]
    assert completed["usage"]["input_tokens"] == completed["usage"]["output_tokens"] == 4
    recorded_usage = next(e for e in recorded if e["type"] == "response.completed")["response"]["usage"]
    assert set(completed["usage"]) == set(recorded_usage)


async def test_previous_response_id_is_rejected_like_a_stateless_vllm(client: httpx.AsyncClient) -> None:
    body = {"input": "hi", "previous_response_id": "resp_abc"}
    response = await client.post("/v1/responses", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "previous_response_not_found"
    assert error["param"] == "previous_response_id"
    assert error["type"] == "invalid_request_error"
    # An explicit null is no continuation.
    assert (await client.post("/v1/responses", json={**body, "previous_response_id": None})).status_code == 200


# -- errors ------------------------------------------------------------------------------------------

ENDPOINTS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("raw", [b"{", b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_malformed_json_is_a_400(client: httpx.AsyncClient, path: str, raw: bytes) -> None:
    response = await client.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {}, "messages"),
        ("/v1/chat/completions", {"messages": "hi"}, "messages"),
        ("/v1/chat/completions", {"messages": ["hi"]}, "messages"),
        ("/v1/chat/completions", {"messages": [], "max_tokens": "10"}, "max_tokens"),
        ("/v1/chat/completions", {"messages": [], "max_tokens": 0}, "max_tokens"),
        ("/v1/chat/completions", {"messages": [], "stream": "yes"}, "stream"),
        ("/v1/chat/completions", {"messages": [], "stream": True, "stream_options": 1}, "stream_options"),
        ("/v1/chat/completions", {"messages": [], "model": 5}, "model"),
        ("/v1/completions", {}, "prompt"),
        ("/v1/completions", {"prompt": {"a": 1}}, "prompt"),
        ("/v1/completions", {"prompt": []}, "prompt"),
        ("/v1/embeddings", {}, "input"),
        ("/v1/embeddings", {"input": [1.5]}, "input"),
        ("/v1/embeddings", {"input": "x", "dimensions": True}, "dimensions"),
        ("/v1/embeddings", {"input": "x", "encoding_format": "hex"}, "encoding_format"),
        ("/v1/responses", {}, "input"),
        ("/v1/responses", {"input": 3}, "input"),
        ("/v1/responses", {"input": ["loose string"]}, "input"),
        ("/v1/responses", {"input": "x", "instructions": ["a"]}, "instructions"),
        ("/v1/responses", {"input": "x", "max_output_tokens": -1}, "max_output_tokens"),
    ],
)
async def test_missing_or_wrong_fields_are_a_400_naming_the_param(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], param: str
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


async def test_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await client.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


async def test_a_stream_stops_generating_when_the_client_disconnects() -> None:
    app = EchoModel()
    sent: list[dict[str, Any]] = []
    hang_up = asyncio.Event()
    request = orjson.dumps({"messages": [user("la")], "max_tokens": 1000, "stream": True})
    messages = [{"type": "http.request", "body": request, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) == 5:  # start, role chunk, three words
            hang_up.set()

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    await app(scope, receive, send)
    assert 5 <= len(sent) < 100
    assert all(m.get("more_body") for m in sent[1:])  # never completed: generation stopped


async def test_lifespan_is_answered() -> None:
    replies = [message["type"] for message in await run_lifespan(EchoModel())]
    assert replies == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_bad_constructor_arguments_fail_with_a_message() -> None:
    with pytest.raises(ValueError, match="chunk_delay"):
        EchoModel(chunk_delay=-1)
    with pytest.raises(ValueError, match="model"):
        EchoModel("")


# -- the official client, over a real socket ---------------------------------------------------------


async def test_official_openai_client_against_the_demo_under_uvicorn() -> None:
    async with aserve(EchoModel()) as base_url:
        async with AsyncOpenAI(base_url=f"{base_url}/v1", api_key="sk-test", max_retries=0) as openai:
            chat = await openai.chat.completions.create(
                model="demo-echo", messages=[{"role": "user", "content": "hello from openai"}]
            )
            assert chat.choices[0].message.content == "hello from openai"
            assert chat.usage is not None and chat.usage.completion_tokens == 3

            stream = await openai.chat.completions.create(
                model="demo-echo",
                messages=[{"role": "user", "content": "stream me"}],
                max_tokens=4,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "stream me stream me"
            assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 6

            response = await openai.responses.create(model="demo-echo", input="respond in kind")
            assert response.output_text == "respond in kind"
            assert response.usage is not None and response.usage.input_tokens == 3

            events = [event async for event in await openai.responses.create(
                model="demo-echo", input="streamed response", stream=True
            )]  # fmt: skip
            assert events[0].type == "response.created"
            assert events[-1].type == "response.completed"
            assert events[-1].response.output_text == "streamed response"
            assert [e.sequence_number for e in events] == list(range(len(events)))

            embedding = await openai.embeddings.create(model="demo-echo", input="vector")
            assert len(embedding.data[0].embedding) == 8
