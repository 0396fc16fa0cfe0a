"""The documented exceptions: content is kept only when a tenant, a request or a model says so, in the
store's content collection with its own TTL, and never in a log line."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.demo import EchoModel
from retention_middleware.store.base import ResponseStore
from retention_middleware.tenancy import TenantResolver

from support.asgi_tools import asgi_client, capture_all_logs
from support.mongo_fixtures import FakeClock

SECRET = "content-log-secret-0123456789"
OPTED_IN_KEY = "sk-opted-in"
OTHER_KEY = "sk-other"
OPTED_IN_TENANT = TenantResolver(SECRET, None).tenant_of([(b"authorization", f"Bearer {OPTED_IN_KEY}".encode())])


def middleware(store: ResponseStore, clock: FakeClock, **settings: Any) -> RetentionMiddleware:
    base = {"tenant_secret": SECRET, "content_ttl": timedelta(days=7)}
    return RetentionMiddleware(EchoModel(), RetentionSettings(**{**base, **settings}), store=store, clock=clock)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def chat(text: str, stream: bool = False, model: str = "demo") -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}


async def test_an_opted_in_tenant_has_its_content_kept_with_its_own_ttl(
    response_store: ResponseStore, clock: FakeClock
) -> None:
    app = middleware(response_store, clock, opt_in_tenants=frozenset({OPTED_IN_TENANT}))
    canary = f"CANARY-{uuid.uuid4().hex}"
    with capture_all_logs() as logs:
        async with asgi_client(app, headers=bearer(OPTED_IN_KEY)) as client:
            answer = await client.post("/v1/chat/completions", json=chat(f"keep {canary}"))
    assert answer.headers["x-retention-content-logging"] == "tenant-opt-in; ttl=7d"
    [record] = await response_store.find_content(OPTED_IN_TENANT)
    assert (record.reason, record.endpoint, record.model) == ("tenant-opt-in", "/v1/chat/completions", "demo")
    assert record.expires_at - record.created_at == timedelta(days=7) and record.created_at == clock()
    assert record.request == chat(f"keep {canary}")
    assert record.response == answer.json()
    entry = json.loads(logs.access_lines()[0])
    assert entry["content_logged"] is True and entry["tenant"] == OPTED_IN_TENANT
    assert canary not in logs.text()  # kept in the store, never in a log line
    clock.advance(timedelta(days=7, seconds=1))
    assert await response_store.count_content(OPTED_IN_TENANT) == 0


async def test_a_stream_is_kept_assembled_not_as_raw_events(response_store: ResponseStore, clock: FakeClock) -> None:
    app = middleware(response_store, clock, opt_in_tenants=frozenset({OPTED_IN_TENANT}))
    async with asgi_client(app, headers=bearer(OPTED_IN_KEY)) as client:
        answer = await client.post("/v1/chat/completions", json=chat("one two three", stream=True))
        assert answer.headers["x-retention-content-logging"].startswith("tenant-opt-in")
        responses = await client.post("/v1/responses", json={"model": "demo", "input": "four five", "stream": True})
    records = await response_store.find_content(OPTED_IN_TENANT)
    chat_record, responses_record = sorted(records, key=lambda r: r.endpoint)
    assert chat_record.response["object"] == "chat.completion"
    assert chat_record.response["choices"][0]["message"]["content"] == "one two three"
    assert chat_record.response["usage"]["completion_tokens"] == 3
    final = [json.loads(line[6:]) for line in responses.text.splitlines() if line.startswith("data: ")][-1]
    assert responses_record.response == final["response"]
    assert responses_record.endpoint == "/v1/responses"


async def test_request_opt_in_needs_the_operator_to_allow_it(response_store: ResponseStore, clock: FakeClock) -> None:
    header = {**bearer(OTHER_KEY), "x-retention-opt-in": "log"}
    other = TenantResolver(SECRET, None).tenant_of([(b"authorization", f"Bearer {OTHER_KEY}".encode())])
    refusing = middleware(response_store, clock)
    with capture_all_logs() as logs:
        async with asgi_client(refusing, headers=header) as client:
            answer = await client.post("/v1/chat/completions", json=chat("not kept"))
    assert "x-retention-content-logging" not in answer.headers
    assert await response_store.count_content(other) == 0
    assert refusing.content_log.ignored_request_opt_ins == 1
    assert json.loads(logs.access_lines()[0])["content_logged"] is False

    allowing = middleware(response_store, clock, allow_request_opt_in=True)
    async with asgi_client(allowing, headers=header) as client:
        answer = await client.post("/v1/embeddings", json={"model": "demo", "input": "kept now"})
    [record] = await response_store.find_content(other)
    assert record.reason == "request-opt-in" and record.response == answer.json()
    assert answer.headers["x-retention-content-logging"] == "request-opt-in; ttl=7d"


async def test_a_logged_model_is_kept_and_says_so_on_every_answer(
    response_store: ResponseStore, clock: FakeClock
) -> None:
    app = middleware(response_store, clock, logged_models=frozenset({"logged-model"}))
    async with asgi_client(app, headers=bearer(OTHER_KEY)) as client:
        answers = [
            await client.post("/v1/chat/completions", json=chat("a", model="logged-model")),
            await client.post("/v1/chat/completions", json=chat("b", stream=True, model="logged-model")),
            await client.post("/v1/responses", json={"model": "logged-model", "input": "c"}),
            await client.post("/v1/completions", json={"model": "logged-model", "prompt": "d", "stream": True}),
        ]
        unlisted = await client.post("/v1/chat/completions", json=chat("e", model="demo"))
    assert all(a.headers["x-retention-content-logging"] == "logged-model; ttl=7d" for a in answers)
    assert "x-retention-content-logging" not in unlisted.headers
    other = TenantResolver(SECRET, None).tenant_of([(b"authorization", f"Bearer {OTHER_KEY}".encode())])
    records = await response_store.find_content(other)
    assert [r.reason for r in records] == ["logged-model"] * 4
    [completion] = [r for r in records if r.endpoint == "/v1/completions"]
    assert completion.response["choices"][0]["text"] == "d"


async def test_nothing_else_is_kept_and_no_canary_reaches_a_log(
    response_store: ResponseStore, clock: FakeClock
) -> None:
    app = middleware(response_store, clock, opt_in_tenants=frozenset({OPTED_IN_TENANT}),
                     logged_models=frozenset({"logged-model"}), allow_request_opt_in=True)  # fmt: skip
    canaries = [f"CANARY-{uuid.uuid4().hex}" for _ in range(4)]
    other = TenantResolver(SECRET, None).tenant_of([(b"authorization", f"Bearer {OTHER_KEY}".encode())])
    with capture_all_logs() as logs:
        async with asgi_client(app, headers=bearer(OTHER_KEY)) as client:
            await client.post("/v1/chat/completions", json=chat(canaries[0]))
            await client.post("/v1/chat/completions", json=chat(canaries[1], stream=True))
            await client.post("/v1/responses", json={"model": "demo", "input": canaries[2], "store": False})
            await client.post("/v1/completions", json={"model": "demo", "prompt": canaries[3]},
                              headers={"x-retention-opt-in": "no"})  # fmt: skip
    assert await response_store.count_content(other) == 0
    assert all(canary not in logs.text() for canary in canaries)
    assert all(json.loads(line)["content_logged"] is False for line in logs.access_lines())


@pytest.mark.parametrize("variable", ["RETENTION_LOGGED_MODELS", "RETENTION_OPT_IN_TENANTS"])
def test_content_logging_and_the_zero_policy_contradict(variable: str) -> None:
    with pytest.raises(ValueError, match=variable):
        RetentionSettings.from_env({"RETENTION_POLICY": "zero", variable: "x"})
