"""RetentionMiddleware in a FastAPI app built the way vLLM's OpenAI server builds it.

``build_app`` follows vLLM's ``api_server``: ``FastAPI(lifespan=...)``, routers, CORS, then every
``--middleware`` dotted path imported with importlib and added with ``app.add_middleware(cls)``, so
the middleware is constructed with no arguments and every setting comes from ``RETENTION_*``
variables (set here with monkeypatch). The endpoints are shaped like vLLM's and backed by a fake
engine that echoes the last user text and logs each prompt the way vLLM's request logger does.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import time
import uuid
from argparse import Namespace
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from retention_middleware import RetentionMiddleware, SettingsError

from support.asgi_tools import asgi_client, capture_all_logs
from support.mongo_fixtures import MONGO_TENANT_SECRET, MongoClient
from support.servers import aserve

MIDDLEWARE = "retention_middleware.RetentionMiddleware"
DEADLINE = 10.0
request_logger = logging.getLogger("vllm.entrypoints.logger")


# -- a vLLM-shaped server ----------------------------------------------------------------------------


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[dict[str, Any]]
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    stream: bool | None = False
    store: bool | None = True
    previous_response_id: str | None = None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in content or () if isinstance(part, dict) and "text" in part)


class FakeEngine:
    """Generates the last user text back, word by word; remembers every request it was handed."""

    model = "Qwen/Qwen3-0.6B"

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    def received(self, method: str, path: str, body: dict[str, Any], request_id: str, prompt: str) -> None:
        self.requests.append((method, path, body))
        params = {"temperature": body.get("temperature"), "max_tokens": body.get("max_tokens")}
        request_logger.info(
            "Received request %s: prompt: %r, params: %s, prompt_token_ids: %s, lora_request: %s.",
            request_id, prompt, params, list(range(len(prompt.split()))), None,
        )  # fmt: skip

    @staticmethod
    def generated(request_id: str, output: str) -> None:
        request_logger.info("Generated response %s: output: %r, finish_reason: %s", request_id, output, "stop")


def engine(raw_request: Request) -> FakeEngine:
    found: FakeEngine = raw_request.app.state.engine
    return found


router = APIRouter()


@router.get("/health")
async def health(raw_request: Request) -> Response:
    return Response(status_code=200)


@router.get("/v1/models")
async def show_available_models(raw_request: Request) -> JSONResponse:
    entry = {"id": FakeEngine.model, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": 4096}
    return JSONResponse({"object": "list", "data": [entry]})


@router.post("/v1/chat/completions")
async def create_chat_completion(request: ChatCompletionRequest, raw_request: Request) -> Response:
    request_id = f"chatcmpl-{uuid.uuid4().hex}"
    prompt = "".join(f"<|im_start|>{m['role']}\n{_text(m.get('content'))}<|im_end|>\n" for m in request.messages)
    engine(raw_request).received("POST", "/v1/chat/completions", request.model_dump(), request_id, prompt)
    words = next((_text(m.get("content")) for m in reversed(request.messages) if m["role"] == "user"), "").split()
    usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(words),
             "total_tokens": len(prompt.split()) + len(words)}  # fmt: skip
    head = {"id": request_id, "created": int(time.time()), "model": request.model or FakeEngine.model}
    if not request.stream:
        message = {"role": "assistant", "content": " ".join(words)}
        FakeEngine.generated(request_id, message["content"])
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": usage})
    include_usage = bool((request.stream_options or {}).get("include_usage"))

    async def chunks() -> AsyncIterator[bytes]:
        def chunk(choices: list[Any], **extra: Any) -> bytes:
            return b"data: " + orjson.dumps({**head, "object": "chat.completion.chunk", "choices": choices, **extra})

        for index, word in enumerate(words):
            delta = {"role": "assistant", "content": word} if index == 0 else {"content": " " + word}
            yield chunk([{"index": 0, "delta": delta, "finish_reason": None}]) + b"\n\n"
            await asyncio.sleep(0)
        yield chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]) + b"\n\n"
        if include_usage:
            yield chunk([], usage=usage) + b"\n\n"
        FakeEngine.generated(request_id, " ".join(words))
        yield b"data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


@router.post("/v1/responses")
async def create_responses(request: ResponsesRequest, raw_request: Request) -> Response:
    request_id = f"resp_{uuid.uuid4().hex}"
    items = [{"role": "user", "content": request.input}] if isinstance(request.input, str) else request.input
    prompt = "\n".join(_text(item.get("content")) for item in items)
    engine(raw_request).received("POST", "/v1/responses", request.model_dump(), request_id, prompt)
    if request.previous_response_id is not None:  # vLLM without its own store knows no earlier response
        error = {"message": f"Response with id '{request.previous_response_id}' not found.",
                 "type": "invalid_request_error", "param": "previous_response_id", "code": None}  # fmt: skip
        return JSONResponse({"error": error}, status_code=400)
    words = next((_text(i.get("content")) for i in reversed(items) if i.get("role") == "user"), "").split()
    text = " ".join(words)
    item = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip
    usage = {"input_tokens": len(prompt.split()), "output_tokens": len(words),
             "total_tokens": len(prompt.split()) + len(words)}  # fmt: skip
    response = {"id": request_id, "object": "response", "created_at": int(time.time()),
                "model": request.model or FakeEngine.model, "status": "completed", "output": [item],
                "instructions": request.instructions, "store": request.store, "previous_response_id": None,
                "usage": usage}  # fmt: skip
    if not request.stream:
        FakeEngine.generated(request_id, text)
        return JSONResponse(response)

    async def events() -> AsyncIterator[bytes]:
        def event(kind: str, **fields: Any) -> bytes:
            return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **fields}) + b"\n\n"

        yield event("response.created", response={**response, "status": "in_progress", "output": []})
        for index, word in enumerate(words):
            delta = word if index == 0 else " " + word
            yield event("response.output_text.delta", item_id=item["id"], output_index=0, content_index=0, delta=delta)
            await asyncio.sleep(0)
        FakeEngine.generated(request_id, text)
        yield event("response.completed", response=response)

    return StreamingResponse(events(), media_type="text/event-stream")


@router.get("/v1/responses/{response_id}")
async def retrieve_responses(response_id: str, raw_request: Request) -> JSONResponse:
    engine(raw_request).requests.append(("GET", f"/v1/responses/{response_id}", {}))
    return JSONResponse({"error": {"message": "not found", "type": "invalid_request_error"}}, status_code=404)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.engine = FakeEngine()
    app.state.lifecycle.append("startup")
    yield
    app.state.lifecycle.append("shutdown")


def build_app(args: Namespace) -> FastAPI:
    """vLLM's ``build_app`` in miniature: the same construction steps, in the same order."""
    app = FastAPI(lifespan=lifespan)
    app.state.args = args
    app.state.lifecycle = []
    app.include_router(router)
    app.root_path = args.root_path
    app.add_middleware(
        CORSMiddleware,
        allow_origins=args.allowed_origins,
        allow_credentials=args.allow_credentials,
        allow_methods=args.allowed_methods,
        allow_headers=args.allowed_headers,
    )
    for middleware in args.middleware:
        module_path, object_name = middleware.rsplit(".", 1)
        imported = getattr(importlib.import_module(module_path), object_name)
        if inspect.isclass(imported):
            app.add_middleware(imported)
        elif inspect.iscoroutinefunction(imported):
            app.middleware("http")(imported)
        else:
            raise ValueError(f"Invalid middleware {middleware}. Must be a function or a class.")
    return app


def serve_args(**overrides: Any) -> Namespace:
    """The options of ``vllm serve MODEL --middleware retention_middleware.RetentionMiddleware``."""
    options: dict[str, Any] = {
        "middleware": [MIDDLEWARE], "root_path": "", "allowed_origins": ["*"], "allow_credentials": False,
        "allowed_methods": ["*"], "allowed_headers": ["*"],
    }  # fmt: skip
    return Namespace(**{**options, **overrides})


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    """The ASGI lifespan around the block, as a server drives it (httpx's ASGITransport does not)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))

    async def answer() -> dict[str, Any]:
        getter = asyncio.ensure_future(outbox.get())
        done, _ = await asyncio.wait({getter, task}, timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        if task in done:
            task.result()  # the app's own exception
        pytest.fail("the app did not answer a lifespan message in time")

    await inbox.put({"type": "lifespan.startup"})
    started = await answer()
    if started["type"] != "lifespan.startup.complete":
        task.cancel()
        pytest.fail(f"start-up failed: {started}")
    try:
        yield app
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await answer())["type"] == "lifespan.shutdown.complete"
        await task


def retention_middleware_of(app: FastAPI) -> RetentionMiddleware:
    layer: Any = app.middleware_stack
    while not isinstance(layer, RetentionMiddleware):
        layer = layer.app
    return layer


def chat_body(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": FakeEngine.model, "messages": [{"role": "system", "content": "Be brief."},
                                                    {"role": "user", "content": content}], **extra}  # fmt: skip


def sse_payloads(text: str) -> list[Any]:
    return [
        line[6:] if line == "data: [DONE]" else orjson.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ")
    ]


@pytest.fixture
def memory_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only the variables a test sets: none inherited from the shell running the tests."""
    for name in list(os.environ):
        if name.startswith("RETENTION_"):
            monkeypatch.delenv(name)
    yield


# -- construction and lifespan -----------------------------------------------------------------------


async def test_the_middleware_is_built_with_no_arguments_from_the_environment_and_runs_the_lifespan(
    memory_env: None,
    monkeypatch: pytest.MonkeyPatch,
    mongo_uri: str,
    mongo_db_name: str,
    mongo_client: MongoClient,
) -> None:
    monkeypatch.setenv("RETENTION_STORE", mongo_uri)
    monkeypatch.setenv("RETENTION_MONGO_DB", mongo_db_name)
    monkeypatch.setenv("RETENTION_TENANT_SECRET", MONGO_TENANT_SECRET)
    monkeypatch.setenv("RETENTION_TTL", "90s")
    monkeypatch.setenv("RETENTION_POLICY", "standard")
    app = build_app(serve_args())
    (entry,) = [m for m in app.user_middleware if m.cls is RetentionMiddleware]
    assert (entry.args, entry.kwargs) == ((), {})
    database = mongo_client[mongo_db_name]
    assert "responses" not in await database.list_collection_names()

    async with running(app):
        middleware = retention_middleware_of(app)
        assert middleware.settings.ttl == timedelta(seconds=90)
        assert middleware.settings.store == mongo_uri
        assert app.state.lifecycle == ["startup"]
        # The middleware prepared its store when the server announced start-up, before any request.
        indexes = await database["responses"].index_information()
        assert any(
            index["key"] == [("expires_at", 1)] and index.get("expireAfterSeconds") == 0 for index in indexes.values()
        )
        async with asgi_client(app) as client:
            created = await client.post("/v1/responses", json={"model": FakeEngine.model, "input": "keep me"})
            assert created.status_code == 200
            response_id = created.json()["id"]
            assert (await client.get(f"/v1/responses/{response_id}")).json()["id"] == response_id
        document = await database["responses"].find_one({"_id": response_id})
        assert document is not None
        assert document["expires_at"] - document["created_at"] == timedelta(seconds=90)
    assert app.state.lifecycle == ["startup", "shutdown"]


async def test_a_bad_variable_fails_the_server_start_naming_it(
    memory_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_TTL", "until further notice")
    app = build_app(serve_args())  # vLLM builds the app first; the middleware is made at start-up
    with pytest.raises(SettingsError, match="RETENTION_TTL"):
        async with running(app):
            pass
    assert app.state.lifecycle == []


async def test_zero_policy_from_the_environment_stores_nothing(
    memory_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_POLICY", "zero")
    app = build_app(serve_args())
    async with running(app), asgi_client(app) as client:
        created = await client.post("/v1/responses", json={"model": FakeEngine.model, "input": "forget me"})
        assert created.status_code == 200
        response_id = created.json()["id"]
        assert (await client.get(f"/v1/responses/{response_id}")).status_code == 404
        follow_up = {"model": FakeEngine.model, "input": "and?", "previous_response_id": response_id}
        refused = await client.post("/v1/responses", json=follow_up)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "unsupported_parameter"
    engine_requests = app.state.engine.requests
    assert [(method, path) for method, path, _ in engine_requests] == [("POST", "/v1/responses")]
    assert engine_requests[0][2]["store"] is False


# -- G1 and G5 through FastAPI -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
@pytest.mark.parametrize("stream", [False, True])
async def test_prompts_never_reach_the_logs_and_every_request_is_metered(
    memory_env: None, path: str, stream: bool
) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    app = build_app(serve_args())
    if path == "/v1/responses":
        body: dict[str, Any] = {"model": FakeEngine.model, "input": f"look up {canary} now", "stream": stream}
    else:
        body = chat_body(f"look up {canary} now", stream=stream)
    with capture_all_logs() as logs:
        async with running(app), asgi_client(app) as client:
            answer = await client.post(path, json=body)
    assert answer.status_code == 200
    assert canary in answer.text  # the client gets everything
    text = logs.text()
    assert "Received request" in text and "Generated response" in text  # the server did log
    assert canary not in text and canary[:16] not in text
    (line,) = logs.access_lines()
    record = orjson.loads(line)
    assert (record["path"], record["status"], record["stream"]) == (path, 200, stream)
    assert record["model"] == FakeEngine.model
    assert record["usage"]["output_tokens"] == 4  # "look up CANARY now", echoed
    assert record["usage"]["input_tokens"] > 0


async def test_streamed_chat_under_uvicorn_is_metered_without_showing_usage(memory_env: None) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    app = build_app(serve_args())
    with capture_all_logs() as logs:
        async with aserve(app, lifespan="on") as url, httpx.AsyncClient(base_url=url, timeout=DEADLINE) as client:
            plain = await client.post("/v1/chat/completions", json=chat_body(f"one {canary} three", stream=True))
            asked = await client.post(
                "/v1/chat/completions",
                json=chat_body(f"one {canary} three", stream=True, stream_options={"include_usage": True}),
            )
            lifecycle_while_serving = list(app.state.lifecycle)
            engine_requests = list(app.state.engine.requests)
    assert lifecycle_while_serving == ["startup"]
    assert app.state.lifecycle == ["startup", "shutdown"]
    plain_events, asked_events = sse_payloads(plain.text), sse_payloads(asked.text)
    content = "".join(e["choices"][0]["delta"].get("content", "") for e in plain_events[:-1] if e["choices"])
    assert content == f"one {canary} three"
    assert plain_events[-1] == "[DONE]" and asked_events[-1] == "[DONE]"
    assert [e for e in plain_events[:-1] if e.get("usage")] == []
    (usage_chunk,) = [e for e in asked_events[:-1] if e.get("usage")]
    assert usage_chunk["choices"] == [] and usage_chunk is asked_events[-2]
    # The engine was asked for usage both times: the middleware added it for the first client.
    assert [body["stream_options"] for _, _, body in engine_requests] == [{"include_usage": True}] * 2
    records = [orjson.loads(line) for line in logs.access_lines()]
    assert [r["usage"]["total_tokens"] for r in records] == [usage_chunk["usage"]["total_tokens"]] * 2
    assert canary not in logs.text()


async def test_models_health_and_cors_pass_through(memory_env: None) -> None:
    app = build_app(serve_args(allowed_origins=["https://chat.example"]))
    with capture_all_logs() as logs:
        async with running(app), asgi_client(app) as client:
            models = await client.get("/v1/models", headers={"origin": "https://chat.example"})
            health = await client.get("/health")
            preflight = await client.options(
                "/v1/chat/completions",
                headers={"origin": "https://chat.example", "access-control-request-method": "POST"},
            )
    assert models.status_code == 200 and models.json()["data"][0]["id"] == FakeEngine.model
    assert models.headers["access-control-allow-origin"] == "https://chat.example"
    assert health.status_code == 200
    assert preflight.status_code == 200
    paths = [(r["method"], r["path"], r["status"]) for r in map(orjson.loads, logs.access_lines())]
    assert paths == [("GET", "/v1/models", 200), ("GET", "/health", 200), ("OPTIONS", "/v1/chat/completions", 200)]


# -- the Responses API in front of vLLM --------------------------------------------------------------


async def test_responses_store_retrieve_continue_and_delete_in_front_of_vllm(memory_env: None) -> None:
    app = build_app(serve_args())
    async with aserve(app, lifespan="on") as url, httpx.AsyncClient(base_url=url, timeout=DEADLINE) as client:
        first_body = {"model": FakeEngine.model, "input": "alpha bravo", "stream": True}
        async with client.stream("POST", "/v1/responses", json=first_body) as streamed:
            events = sse_payloads((await streamed.aread()).decode())
        first = events[-1]["response"]
        assert events[-1]["type"] == "response.completed" and first["store"] is True

        stored = await client.get(f"/v1/responses/{first['id']}")
        assert stored.status_code == 200 and stored.json() == first
        items = (await client.get(f"/v1/responses/{first['id']}/input_items", params={"order": "asc"})).json()
        assert [item["content"][0]["text"] for item in items["data"]] == ["alpha bravo"]

        second = await client.post(
            "/v1/responses", json={"model": FakeEngine.model, "input": "charlie", "previous_response_id": first["id"]}
        )
        assert second.status_code == 200
        assert second.json()["previous_response_id"] == first["id"]

        deleted = await client.delete(f"/v1/responses/{first['id']}")
        assert deleted.json() == {"id": first["id"], "object": "response", "deleted": True}
        assert (await client.get(f"/v1/responses/{first['id']}")).status_code == 404
        broken = await client.post(
            "/v1/responses",
            json={"model": FakeEngine.model, "input": "delta", "previous_response_id": second.json()["id"]},
        )
        assert broken.status_code == 400 and first["id"] in broken.json()["error"]["message"]
        engine_requests = list(app.state.engine.requests)

    # The engine saw two creations (never a GET, never a previous_response_id), the second rehydrated.
    assert [(method, path) for method, path, _ in engine_requests] == [("POST", "/v1/responses")] * 2
    continued = engine_requests[1][2]
    assert continued["previous_response_id"] is None and continued["store"] is False
    texts = [_text(item.get("content")) for item in continued["input"]]
    assert texts == ["alpha bravo", "alpha bravo", "charlie"]  # input, the echoed output, the new input
    assert [item.get("role") for item in continued["input"]] == ["user", "assistant", "user"]
