from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.demo import EchoModel
from retention_middleware.logs.access_log import MODEL_MAX_CHARS, AccessRecord, _timestamps
from retention_middleware.store import MongoStore
from retention_middleware.store.base import StoreError

from support.asgi_tools import asgi_client, capture_all_logs
from support.mongo_fixtures import MongoClient, wait_until


def test_timestamps_match_isoformat_to_the_millisecond() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        moment = rng.uniform(1.7e9, 1.9e9)
        expected = datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds")
        assert _timestamps.format(moment) == expected


def test_request_ids_are_unique_and_carry_no_request_data() -> None:
    records = [AccessRecord("GET", "/x", "anonymous") for _ in range(1000)]
    assert len({record.request_id for record in records}) == 1000


def test_a_disconnect_before_the_end_is_reported_unless_another_error_explains_it() -> None:
    record = AccessRecord("POST", "/v1/chat/completions", "anonymous")
    record.disconnected = True
    assert record.to_dict(record.started)["error"] == "client_disconnected"
    record.response_complete = True
    assert record.to_dict(record.started)["error"] is None
    record.response_complete = False
    record.error = "app_error"
    assert record.to_dict(record.started)["error"] == "app_error"


# -- issue 10 item 18: a truthful access log -----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("Qwen/Qwen3-4B", "Qwen/Qwen3-4B"),
        ('m\n{"forged": "line"}', 'm{"forged": "line"}'),
        ("m\x1b[2J\x1b[31mred", "m[2J[31mred"),
        ("m\u202etxt.exe\u2028x\x00\x7f\x85", "mtxt.exex"),
        ("x" * 5000, "x" * 256),
        ("\n" * 600 + "tail", "tail"),
        # Only the first 4 x 256 characters are looked at, so the cost is bounded whatever is sent.
        ("\n" * 10_000 + "tail", ""),
    ],
    ids=["plain", "newline", "ansi", "bidi-separators-c0-c1", "long", "padding", "padding-beyond-the-scan"],
)
async def test_the_logged_model_is_capped_and_free_of_control_characters(model: str, expected: str) -> None:
    middleware = RetentionMiddleware(EchoModel(), RetentionSettings())
    chat = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            await client.post("/v1/chat/completions", json=chat)
    (line,) = logs.access_lines()
    assert orjson.loads(line)["model"] == expected
    assert len(expected) <= MODEL_MAX_CHARS


async def test_a_write_that_timed_out_but_may_have_landed_is_logged_as_unknown(
    mongo_settings: RetentionSettings, mongo_client: MongoClient
) -> None:
    settings = dataclasses.replace(mongo_settings, mongo_timeout=timedelta(milliseconds=300))
    store = MongoStore(settings)
    middleware = RetentionMiddleware(EchoModel(), settings, store=store)
    key = {"authorization": "Bearer sk-unknown"}
    try:
        async with asgi_client(middleware) as client:
            await client.post("/v1/responses", json={"model": "m", "input": "warm"}, headers=key)  # connect first
            # The server applies the insert, but only after the client has given up waiting for it.
            fail_point = {"failCommands": ["insert"], "blockConnection": True, "blockTimeMS": 1500}
            await mongo_client.admin.command(
                {"configureFailPoint": "failCommand", "mode": {"times": 1}, "data": fail_point}
            )
            with capture_all_logs() as logs:
                created = await client.post("/v1/responses", json={"model": "m", "input": "late"}, headers=key)
            assert created.status_code == 200
            entry = orjson.loads(logs.access_lines()[0])
            assert (entry["stored"], entry["error"]) == ("unknown", "store_outcome_unknown")

            async def landed() -> bool:
                try:
                    answer = await client.get(f"/v1/responses/{created.json()['id']}", headers=key)
                except StoreError:
                    return False
                return answer.status_code == 200

            await wait_until(landed, timeout=10)  # "stored": false would have been a lie
    finally:
        await mongo_client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        await store.close()


# A write that never left (no server to select) stays "stored": false: see
# test_responses_guarantees.py::test_store_down_serve_mode_answers_and_records_not_stored.
