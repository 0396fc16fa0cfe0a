"""Encryption at rest: added time per stored response and per rehydrated turn, on against off, one run.

``python -m benchmarks.encryption [--quick] [--rounds N] [--turns T]``. Every variant is the middleware
with the memory store and the echo model behind it; the baseline is the same middleware with encryption
off, so the figures are what sealing and opening cost, nothing else. A round times baseline and variant
back to back in alternating order (``inprocess.interleave``).

- stored response: ``POST /v1/responses`` (~1 KB, ``store: true``): two fields sealed per request.
- rehydrated turn: ``POST /v1/responses`` with ``store: false`` continuing a chain of ``T`` stored turns
  of ~1 KB each: ``2 T`` fields opened; the per-turn figure is the added time divided by ``T``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.crypto.context import RequestKeys
from retention_middleware.crypto.keys import new_key_text
from retention_middleware.store import MemoryStore, ResponseStore, StoredResponse
from retention_middleware.tenancy import TenantResolver

from .apps import upstream
from .asgi_calls import Request, expect, timed_call
from .inprocess import Pair, interleave
from .machine import describe
from .payloads import MODEL, prose, responses_body

SECRET = "benchmark-tenant-secret-0123456789"
TOKEN = b"sk-benchmark"  # the Authorization header every benchmark request carries
MODES: dict[str, dict[str, Any]] = {
    "off": {},
    "master-key": {"encryption_key": new_key_text()},
    "caller-key": {"encryption": "caller-key"},
}


def _middleware(mode: str) -> tuple[RetentionMiddleware, ResponseStore]:
    settings = RetentionSettings(tenant_secret=SECRET, **MODES[mode])
    app = RetentionMiddleware(upstream(), settings, store=MemoryStore(settings.memory_budget))
    return app, app.store


def _turn(index: int, tenant: str) -> StoredResponse:
    now = datetime.now(timezone.utc)
    response_id = f"resp_bench{index:04d}"
    ancestors = tuple(f"resp_bench{i:04d}" for i in range(index))
    text = prose(450)
    return StoredResponse(
        id=response_id,
        tenant=tenant,
        created_at=now,
        expires_at=now + timedelta(days=1),
        model=MODEL,
        status="completed",
        previous_response_id=ancestors[-1] if ancestors else None,
        ancestors=ancestors,
        input_items=[{"type": "message", "role": "user", "content": text}],
        response={
            "id": response_id,
            "object": "response",
            "model": MODEL,
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}],
        },
        usage={"input_tokens": 90, "output_tokens": 90, "total_tokens": 180},
    )


async def _fill_chain(store: ResponseStore, turns: int) -> None:
    tenant = TenantResolver(SECRET, None).tenant_of([(b"authorization", b"Bearer " + TOKEN)])
    keys = RequestKeys(TOKEN).bind()  # what the middleware binds for a request of this caller
    try:
        for index in range(turns):
            await store.put(_turn(index, tenant))
    finally:
        keys.unbind()


async def run(rounds: int, warmup: int, turns: int) -> dict[str, Any]:
    apps = {mode: _middleware(mode) for mode in MODES}
    for _, store in apps.values():
        await _fill_chain(store, turns)
    stored = Request("POST", "/v1/responses", responses_body())
    continued = Request(
        "POST",
        "/v1/responses",
        orjson.dumps(
            {"model": MODEL, "input": "and then?", "store": False, "previous_response_id": f"resp_bench{turns - 1:04d}"}
        ),
    )
    baseline = apps["off"][0]
    pairs = []
    for mode in ("master-key", "caller-key"):
        pairs.append(Pair(f"stored_response/{mode}", baseline, apps[mode][0], stored))
        pairs.append(Pair(f"rehydrated_{turns}_turns/{mode}", baseline, apps[mode][0], continued))
    for pair in pairs:  # each variant must really rehydrate every turn: the echo counts the words it got
        _, _, client = await timed_call(pair.variant, pair.request)
        if "rehydrated" in pair.name:
            words = orjson.loads(client.last_chunk)["usage"]["input_tokens"]
            expect(words > turns * 100, "history not rehydrated", words=words)
    comparisons = await interleave(pairs, rounds, warmup)
    results = {name: dataclasses.asdict(comparison) for name, comparison in comparisons.items()}
    for name, comparison in comparisons.items():
        if "rehydrated" in name:
            results[name]["added_p50_per_turn"] = comparison.added_p50 / turns
    for _, store in apps.values():
        await store.close()
    return {"machine": describe(), "rounds": rounds, "turns": turns, "results": results}


def render(report: dict[str, Any]) -> str:
    lines = [
        f"#### Encryption at rest, in-process, memory store (us, {report['rounds']} interleaved rounds)",
        "",
        "| request | off p50 / p99 | on p50 / p99 | added p50 (paired) | added per turn | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["results"].items():
        base, meas = row["baseline"], row["measured"]
        per_turn = f"{row['added_p50_per_turn']:.1f}" if "added_p50_per_turn" in row else "—"
        lines.append(
            f"| {name} | {base['p50']:.1f} / {base['p99']:.1f} | {meas['p50']:.1f} / {meas['p99']:.1f} | "
            f"{row['added_p50']:.1f} ({row['paired_p50']:.1f}) | {per_turn} | {row['ratio_p50']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.encryption", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: check the harness, not the numbers")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args(argv)
    rounds = args.rounds or (50 if args.quick else 3000)
    report = asyncio.run(run(rounds, max(5, rounds // 20), args.turns))
    machine = report["machine"]
    print(f"**Machine:** {machine['cpu']}, {machine['cores']} cores; {machine['python']}, orjson {machine['orjson']}")
    print()
    print(render(report))


if __name__ == "__main__":
    main()
