"""``--workers N``: refused with the memory store; with MongoDB a conversation spans workers."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support.mongo_server import MongoTestServer
from support.proxy_process import ProxyProcess, run_command

MAX_TURNS = 60  # which worker accepts a connection is the kernel's choice; this many makes a switch certain


def test_workers_with_the_memory_store_are_refused_saying_why_and_what_to_do() -> None:
    result = run_command("--demo", "--workers", "2")
    assert result.returncode == 2
    message = result.stderr
    assert "--workers" in message and "memory store" in message
    assert "each keep their own stored responses" in message  # why
    assert "--store mongodb://" in message and "--workers 1" in message  # what to do


def test_a_conversation_continues_across_two_workers_sharing_mongodb(
    run_proxy: Callable[..., ProxyProcess], mongo_server: MongoTestServer, mongo_db_name: str
) -> None:
    proxy = run_proxy(
        "--demo", "--workers", "2", "--store", mongo_server.uri, "--mongo-db", mongo_db_name,
        env={"RETENTION_TENANT_SECRET": "w" * 32},
    )  # fmt: skip
    proxy.wait_started(workers=2)
    ids: list[str] = []
    previous: str | None = None
    for turn in range(MAX_TURNS):
        body: dict[str, object] = {"model": "demo", "input": f"turn {turn}"}
        if previous is not None:
            body["previous_response_id"] = previous
        # A fresh connection per turn, so each turn is accepted by whichever worker the kernel picks.
        with httpx.Client(base_url=proxy.url, timeout=20, headers={"connection": "close"}) as client:
            answer = client.post("/v1/responses", json=body)
        assert answer.status_code == 200, answer.text
        previous = answer.json()["id"]
        ids.append(previous)
        records = proxy.access_records(turn + 1)
        if turn and records[-1]["pid"] != records[-2]["pid"]:
            break
    records = proxy.access_records(len(ids))
    pids = [record["pid"] for record in records]
    assert len(set(pids)) == 2, f"every turn landed on one worker: {pids}"
    assert all(record["status"] == 200 and record["stored"] is True for record in records)
    # Each turn's upstream input was the whole conversation rebuilt from MongoDB: the previous turn's
    # input and output plus the two new words ("turn N"), also on the turn whose worker changed.
    usage = [record["usage"] for record in records]
    for before, after in zip(usage, usage[1:], strict=False):
        assert after["input_tokens"] == before["input_tokens"] + before["output_tokens"] + 2
    with httpx.Client(base_url=proxy.url, timeout=20) as client:
        assert all(client.get(f"/v1/responses/{response_id}").status_code == 200 for response_id in ids)
        # /metrics, from whichever worker answers, sums every worker's counts (multiprocess mode).
        scrape = client.get("/metrics").text
    created = [
        sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == "retention_requests_total" and sample.labels.get("route") == "responses.create"
    ]
    assert sum(created) == len(ids)
    assert proxy.stop() == 0  # SIGTERM: every worker drains, and the command exits 0


def test_every_worker_enforces_the_head_limits(
    run_proxy: Callable[..., ProxyProcess], mongo_server: MongoTestServer, mongo_db_name: str
) -> None:
    # Workers are fresh interpreters: the limits must reach them through the environment, not by pickling.
    proxy = run_proxy(
        "--demo", "--workers", "2", "--store", mongo_server.uri, "--mongo-db", mongo_db_name, "--max-headers", "20",
        env={"RETENTION_TENANT_SECRET": "w" * 32},
    )  # fmt: skip
    proxy.wait_started(workers=2)
    many = {f"x-extra-{number}": "1" for number in range(30)}
    for _ in range(10):  # fresh connections, so both workers answer some
        with httpx.Client(base_url=proxy.url, timeout=20, headers={"connection": "close"}) as client:
            assert client.get("/healthz").status_code == 200
            refused = client.get("/healthz", headers=many)
        assert refused.status_code == 431
        assert refused.json()["error"]["code"] == "request_header_fields_too_large"
