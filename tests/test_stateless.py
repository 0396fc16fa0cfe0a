"""``POST /v1/responses/compact`` and ``/v1/responses/input_tokens`` through the openai client:
``previous_response_id`` rehydrated from the store, the upstream kept stateless, the answer metered
and never stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from test_openai_client import MODEL, RecordingUpstream, sent_text

from retention_middleware import RetentionMiddleware, RetentionSettings

from support.asgi_tools import asgi_client, capture_all_logs
from support.servers import aserve


@pytest.fixture
async def upstream() -> RecordingUpstream:
    return RecordingUpstream()


@pytest.fixture
async def served(upstream: RecordingUpstream) -> AsyncIterator[tuple[AsyncOpenAI, RetentionMiddleware]]:
    app = RetentionMiddleware(upstream, RetentionSettings())
    async with aserve(app, lifespan="on") as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0, timeout=10) as sdk:
            yield sdk, app


async def test_compact_rehydrates_the_chain_and_stores_nothing(
    served: tuple[AsyncOpenAI, RetentionMiddleware], upstream: RecordingUpstream
) -> None:
    client, app = served
    first = await client.responses.create(model=MODEL, input="launch on tuesday")
    compacted = await client.responses.compact(model=MODEL, input="and notify support", previous_response_id=first.id)
    sent = upstream.bodies("/v1/responses/compact")[0]
    assert "previous_response_id" not in sent
    texts = [sent_text(item) for item in sent["input"]]
    assert texts == ["launch on tuesday", "launch on tuesday", "and notify support"]  # input, output, new input
    assert compacted.object == "response.compaction"
    assert any(item.type == "compaction" for item in compacted.output)
    with pytest.raises(openai.NotFoundError):  # a compaction is the client's to keep, not ours
        await client.responses.retrieve(compacted.id)


async def test_input_tokens_counts_the_rehydrated_conversation(
    served: tuple[AsyncOpenAI, RetentionMiddleware], upstream: RecordingUpstream
) -> None:
    client, _ = served
    first = await client.responses.create(model=MODEL, input="one two three")
    alone = await client.responses.input_tokens.count(model=MODEL, input="four")
    chained = await client.responses.input_tokens.count(model=MODEL, input="four", previous_response_id=first.id)
    assert alone.input_tokens == 1
    assert chained.input_tokens == 1 + 3 + 3  # the earlier input and output come along
    assert all("previous_response_id" not in body for body in upstream.bodies("/v1/responses/input_tokens"))


@pytest.mark.parametrize("path", ["/v1/responses/compact", "/v1/responses/input_tokens"])
async def test_a_missing_previous_response_is_400_and_never_reaches_the_upstream(
    path: str, upstream: RecordingUpstream
) -> None:
    app = RetentionMiddleware(upstream, RetentionSettings())
    async with asgi_client(app) as http:
        answer = await http.post(path, json={"model": MODEL, "input": "x", "previous_response_id": "resp_gone"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "previous_response_not_found"
    assert upstream.bodies(path) == []


@pytest.mark.parametrize("path", ["/v1/responses/compact", "/v1/responses/input_tokens"])
async def test_a_deeply_nested_body_is_a_400_naming_the_bound_and_never_reaches_the_upstream(
    path: str, upstream: RecordingUpstream
) -> None:
    app = RetentionMiddleware(upstream, RetentionSettings(max_json_depth=32))
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    async with asgi_client(app) as http:
        answer = await http.post(path, json={"model": MODEL, "input": [{"role": "user", "content": deep}]})
        innocent = await http.post(path, json={"model": MODEL, "input": "x"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "json_too_deep"
    assert "RETENTION_MAX_JSON_DEPTH" in answer.json()["error"]["message"]
    assert innocent.status_code == 200
    assert len(upstream.bodies(path)) == 1  # only the innocent one


async def test_compact_is_metered_and_guarded(upstream: RecordingUpstream) -> None:
    canary = "canary-compact-7f3a91"
    app = RetentionMiddleware(upstream, RetentionSettings())
    with capture_all_logs() as logs:
        async with asgi_client(app) as http:
            answer = await http.post("/v1/responses/compact", json={"model": MODEL, "input": f"say {canary} now"})
    assert answer.status_code == 200
    entry: dict[str, Any] = json.loads(logs.access_lines()[0])
    assert entry["usage"]["input_tokens"] == 3 and entry["stored"] is False and entry["model"] == MODEL
    assert canary not in logs.text()


async def test_zero_policy_refuses_previous_response_id_on_compact(upstream: RecordingUpstream) -> None:
    app = RetentionMiddleware(upstream, RetentionSettings(policy="zero"))
    async with asgi_client(app) as http:
        answer = await http.post(
            "/v1/responses/compact", json={"model": MODEL, "input": "x", "previous_response_id": "resp_1"}
        )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "unsupported_parameter"
