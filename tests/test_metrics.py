"""Prometheus metrics, read back with prometheus_client's own parser and checked against the access log."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.demo import EchoModel
from retention_middleware.observability import metrics

from support.proxy_process import ProxyProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    """The change of every sample named ``name`` whose labels include ``labels``."""
    total = 0.0
    for (sample_name, sample_labels), value in after.items():
        if sample_name == name and set(labels.items()) <= set(sample_labels):
            total += value - before.get((sample_name, sample_labels), 0.0)
    return total


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "demo", "messages": [{"role": "user", "content": content}], **extra}


def tokens_by_kind(records: list[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for record in records:
        for kind in metrics.TOKEN_TYPES:
            totals[kind] += (record["usage"] or {}).get(f"{kind}_tokens") or 0
    return dict(totals)


def test_proxy_metrics_match_the_access_log_for_the_same_requests(run_proxy: Callable[..., ProxyProcess]) -> None:
    proxy = run_proxy("--demo")
    with httpx.Client(base_url=proxy.url, timeout=20) as client:
        before = parse(client.get("/metrics").text)
        assert client.post("/v1/chat/completions", json=chat("one two three")).status_code == 200
        streamed = client.post("/v1/chat/completions", json=chat("four five six seven", stream=True))
        assert streamed.status_code == 200
        created = client.post("/v1/responses", json={"model": "demo", "input": "remember eight nine"})
        response_id = created.json()["id"]
        assert client.get(f"/v1/responses/{response_id}").status_code == 200
        assert client.delete(f"/v1/responses/{response_id}").status_code == 200
        assert client.get(f"/v1/responses/{response_id}").status_code == 404
        after_text = client.get("/metrics").text
    after = parse(after_text)
    records = proxy.access_records(6)
    assert [r["path"] for r in records][:3] == ["/v1/chat/completions", "/v1/chat/completions", "/v1/responses"]
    logged = tokens_by_kind(records)
    assert logged["input"] > 0 and logged["output"] > 0
    for kind, count in logged.items():
        assert delta(after, before, "gen_ai_server_token_usage_total", gen_ai_token_type=kind) == count, kind
    assert delta(after, before, "gen_ai_server_token_usage_total", gen_ai_request_model="demo") == sum(logged.values())
    # requests by route, status class and error
    assert delta(after, before, "retention_requests_total", route="chat.completions", status_class="2xx") == 2
    assert delta(after, before, "retention_requests_total", route="responses.retrieve", status_class="4xx") == 1
    assert delta(after, before, "gen_ai_server_request_duration_seconds_count") == 6
    assert delta(after, before, "retention_time_to_first_byte_seconds_count", route="responses.create") == 1
    for operation, count in {"written": 1, "read": 1, "deleted": 1}.items():
        assert delta(after, before, "retention_stored_responses_total", operation=operation) == count, operation
    # the scrapes themselves are not requests of the product, and nothing is in flight any more
    assert after[("retention_requests_in_flight", ())] == 0
    assert "tenant" not in after_text and "remember" not in after_text and "eight" not in after_text


async def test_in_process_metrics_land_in_the_default_registry_with_the_error_code() -> None:
    app = RetentionMiddleware(EchoModel(), RetentionSettings())
    before = parse(generate_latest().decode())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.post("/v1/responses", content=b"{not json")).status_code == 400
        assert (await client.post("/v1/chat/completions", json=chat("hello there"))).status_code == 200
    after = parse(generate_latest().decode())
    assert delta(after, before, "retention_requests_total", route="responses.create", error="invalid_json") == 1
    assert delta(after, before, "retention_requests_total", route="chat.completions", error="none") == 1


async def test_metrics_off_counts_nothing() -> None:
    app = RetentionMiddleware(EchoModel(), RetentionSettings(metrics=False))
    before = parse(generate_latest().decode())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.post("/v1/chat/completions", json=chat("hello there"))).status_code == 200
    assert delta(parse(generate_latest().decode()), before, "retention_requests_total") == 0


def test_model_labels_are_bounded_in_length_charset_and_number() -> None:
    labels = metrics._ModelLabels()
    assert labels.label("Qwen/Qwen3-4B", 3) == "Qwen/Qwen3-4B"
    hostile = "say the secret " + "x" * 500
    value = labels.label(hostile, 3)
    assert len(value) == 64 and " " not in value
    assert labels.label("third", 3) == "third"
    assert labels.label("fourth", 3) == metrics.OTHER_MODEL  # the limit is reached: no new series
    assert labels.label("Qwen/Qwen3-4B", 3) == "Qwen/Qwen3-4B"  # known ones keep their label
    assert labels.label(None, 3) == metrics.NO_MODEL


async def test_the_tenant_label_appears_only_when_opted_in() -> None:
    secret = "s" * 32
    key = [(b"authorization", b"Bearer sk-a")]
    plain = RetentionMiddleware(EchoModel(), RetentionSettings(tenant_secret=secret))
    tenant = plain._tenants.tenant_of(key)
    opted = RetentionMiddleware(EchoModel(), RetentionSettings(tenant_secret=secret, metrics_tenant_label=True))
    for app, expected in ((plain, 0), (opted, 1)):
        before = parse(generate_latest().decode())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            await client.post(
                "/v1/chat/completions", json=chat("hello"), headers=dict((k.decode(), v.decode()) for k, v in key)
            )
        after = parse(generate_latest().decode())
        assert delta(after, before, "retention_tenant_requests_total", tenant=tenant) == expected
        assert (delta(after, before, "gen_ai_server_tenant_token_usage_total", tenant=tenant) > 0) == bool(expected)
        # The default series never carry a tenant label, opted in or not.
        for name, labels in after:
            if name.startswith(("retention_requests_total", "gen_ai_server_token_usage_total")):
                assert "tenant" not in dict(labels)


async def test_log_guard_redactions_and_ignored_opt_in_headers_are_counted() -> None:
    loud = logging.getLogger("test.metrics.engine")

    async def engine(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = (await receive())["body"]
        loud.warning("engine got %s", orjson.loads(body)["messages"][0]["content"])
        await EchoModel()(scope, _replay(body), send)

    app = RetentionMiddleware(engine, RetentionSettings())
    before = parse(generate_latest().decode())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        answer = await client.post(
            "/v1/chat/completions", json=chat("a long private sentence"), headers={"x-retention-opt-in": "log"}
        )
        assert answer.status_code == 200
    after = parse(generate_latest().decode())
    assert delta(after, before, "retention_log_guard_redactions_total") >= 1
    assert delta(after, before, "retention_ignored_opt_in_headers_total") == 1


def _replay(body: bytes) -> Any:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


@pytest.fixture(autouse=True)
def _quiet_engine_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="test.metrics.engine")


def test_a_model_the_upstream_refused_never_becomes_a_label() -> None:
    from retention_middleware.logs.access_log import AccessRecord

    record = AccessRecord("POST", "/v1/chat/completions", "anonymous")
    record.status, record.model = 404, "private words typed as a model name"
    record.usage = {"input_tokens": 3, "output_tokens": 0}
    counting = metrics.RequestMetrics(enabled=True, tenant_label=False, max_models=50)
    before = parse(generate_latest().decode())
    counting.started()
    counting.finished("chat.completions", record)
    text = generate_latest().decode()
    assert "private" not in text
    assert delta(parse(text), before, "gen_ai_server_token_usage_total", gen_ai_request_model="other") == 3
