"""Section 1: added time per non-streamed request, calling the ASGI apps directly.

Each pair is a bare app and the same app behind the middleware, given identical bytes. Within a
round every pair runs baseline and variant back to back, in alternating order from round to round,
so slow drift of the machine (frequency, caches, the store filling up) falls on both alike.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import orjson

from retention_middleware import RetentionSettings
from retention_middleware._types import ASGIApp
from retention_middleware.store import MemoryStore, MongoStore, ResponseStore
from retention_middleware.tenancy import TenantResolver

from .apps import BENCHMARK_TENANT_SECRET, access_log_enabled, access_log_is_silent, upstream, wrapped
from .asgi_calls import Request, expect, http_scope, timed_call
from .payloads import PASSTHROUGH_PREFIX, chat_body, responses_body
from .processes import mongo_emulator
from .stats import Comparison

NS_PER_US = 1000


@dataclass(frozen=True)
class Pair:
    name: str
    baseline: ASGIApp
    variant: ASGIApp
    request: Request


async def interleave(pairs: list[Pair], rounds: int, warmup: int) -> dict[str, Comparison]:
    """Time every pair ``rounds`` times, baseline and variant alternating; microseconds."""
    samples: dict[str, tuple[list[float], list[float]]] = {pair.name: ([], []) for pair in pairs}
    for index in range(warmup + rounds):
        if index == warmup:
            gc.collect()  # start the measured rounds without the warm-up's garbage
        for pair in pairs:
            base, meas = samples[pair.name]
            order = ((pair.baseline, base), (pair.variant, meas))
            for app, into in order if index % 2 == 0 else reversed(order):
                elapsed, _, _ = await timed_call(app, pair.request)
                if index >= warmup:
                    into.append(elapsed / NS_PER_US)
    return {name: Comparison.of(base, meas, "us") for name, (base, meas) in samples.items()}


def _pairs(store: ResponseStore) -> list[Pair]:
    bare = upstream()
    middleware = wrapped(bare, store=store)
    chat = chat_body()
    return [
        Pair("passthrough", bare, middleware, Request("POST", f"{PASSTHROUGH_PREFIX}/v1/chat/completions", chat)),
        Pair("chat_metered", bare, middleware, Request("POST", "/v1/chat/completions", chat)),
        Pair("responses_stored_memory", bare, middleware, Request("POST", "/v1/responses", responses_body())),
    ]


async def _check_stored(store: ResponseStore, app: ASGIApp, request: Request) -> None:
    """One more call whose answer must be readable from the store: the figure includes the write."""
    _, _, client = await timed_call(app, request)
    response_id = orjson.loads(client.last_chunk)["id"]
    tenant = TenantResolver(BENCHMARK_TENANT_SECRET, None).tenant_of(http_scope("POST", "/", b"")["headers"])
    expect(await store.get(tenant, response_id) is not None, "stored response not found", id=response_id)


async def run(rounds: int, warmup: int, mongo_rounds: int) -> dict[str, Any]:
    expect(access_log_is_silent(), "the access logger must start silent (nobody listening)")
    results: dict[str, Any] = {"rounds": rounds, "mongo_rounds": mongo_rounds}
    for setting in ("access_log_off", "access_log_on"):
        store = MemoryStore(RetentionSettings().memory_budget)
        pairs = _pairs(store)
        if setting == "access_log_on":
            with access_log_enabled() as handler:
                comparisons = await interleave(pairs, rounds, warmup)
            expect(handler.records >= 3 * (rounds + warmup), "access log lines missing", lines=handler.records)
        else:
            comparisons = await interleave(pairs, rounds, warmup)
        await _check_stored(store, pairs[-1].variant, pairs[-1].request)
        await store.close()
        results[setting] = {name: comparison.to_json() for name, comparison in comparisons.items()}
    results["mongo_emulator"] = await _run_mongo(mongo_rounds, warmup=max(5, warmup // 10))
    return results


async def _run_mongo(rounds: int, warmup: int) -> dict[str, Any]:
    with mongo_emulator() as uri:
        settings = RetentionSettings(store=uri, mongo_db="benchmarks", tenant_secret=BENCHMARK_TENANT_SECRET)
        store = MongoStore(settings)
        await store.start()
        try:
            bare = upstream()
            middleware = wrapped(bare, store=store)
            request = Request("POST", "/v1/responses", responses_body())
            comparisons = await interleave(
                [Pair("responses_stored_mongo_emulator", bare, middleware, request)], rounds, warmup
            )
            await _check_stored(store, middleware, request)
        finally:
            await store.close()
    return {name: comparison.to_json() for name, comparison in comparisons.items()}
