"""``python -m benchmarks.chat_backend [--quick] [--json PATH]``: what translating to Chat Completions costs.

The same echo model serves both backends: ``/v1/responses`` natively, ``/v1/chat/completions`` for the
chat backend. Each backend's time is measured against the bare model on the route it calls, in the
same interleaved rounds, so the figure is the middleware's added time on each backend; the
difference of the two is what translation adds. Streams are timed at two lengths, so a per-chunk
cost that grew with the stream would show (it must not: the work per chunk is proportional to it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import orjson

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.demo import EchoModel

from .asgi_calls import Request, expect, timed_call
from .payloads import MODEL, prose

ROUTES = {"responses": "/v1/responses", "chat": "/v1/chat/completions"}


def _body(words: int, *, stream: bool) -> bytes:
    return orjson.dumps({"model": MODEL, "input": prose(words * 6)[: words * 6], "stream": stream})


def _bare_body(backend: str, body: bytes) -> bytes:
    # What the bare model gets on the route each backend calls, so the bare baselines match.
    if backend == "responses":
        return body
    request = orjson.loads(body)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": request["input"]}]}
    if request["stream"]:
        chat |= {"stream": True, "stream_options": {"include_usage": True}}
    return orjson.dumps(chat)


async def _compare(body: bytes, rounds: int, warmup: int) -> dict[str, Any]:
    """Per backend: bare and wrapped times (ns), interleaved round by round."""
    echo = EchoModel(MODEL)
    apps = {name: RetentionMiddleware(echo, RetentionSettings(responses_backend=name)) for name in ROUTES}
    wrapped = {name: Request("POST", "/v1/responses", body) for name in ROUTES}
    bare = {name: Request("POST", ROUTES[name], _bare_body(name, body)) for name in ROUTES}
    samples: dict[str, dict[str, list[float]]] = {name: {"bare": [], "wrapped": []} for name in ROUTES}
    chunks: dict[str, int] = {}
    for index in range(warmup + rounds):
        for name in ROUTES:
            bare_ns, _, _ = await timed_call(echo, bare[name])
            wrapped_ns, _, client = await timed_call(apps[name], wrapped[name])
            chunks[name] = client.data_messages
            if index >= warmup:
                samples[name]["bare"].append(bare_ns / 1000)
                samples[name]["wrapped"].append(wrapped_ns / 1000)
    result: dict[str, Any] = {}
    for name in ROUTES:
        added = [w - b for b, w in zip(samples[name]["bare"], samples[name]["wrapped"], strict=True)]
        result[name] = {
            "bare_p50_us": statistics.median(samples[name]["bare"]),
            "wrapped_p50_us": statistics.median(samples[name]["wrapped"]),
            "added_p50_us": statistics.median(added),
            "chunks": chunks[name],
        }
    expect(chunks["chat"] >= 1 and chunks["responses"] >= 1, "both backends answered")
    result["translation_added_p50_us"] = result["chat"]["added_p50_us"] - result["responses"]["added_p50_us"]
    result["ratio_wrapped_p50"] = result["chat"]["wrapped_p50_us"] / result["responses"]["wrapped_p50_us"]
    return result


async def run(rounds: int, warmup: int, stream_words: int, stream_rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {"request": await _compare(_body(160, stream=False), rounds, warmup)}
    for words in (stream_words, 4 * stream_words):
        stream = await _compare(_body(words, stream=True), stream_rounds, 1)
        for name in ROUTES:
            stream[name]["added_per_chunk_us"] = stream[name]["added_p50_us"] / stream[name]["chunks"]
        stream["translation_per_chunk_us"] = (
            stream["chat"]["added_per_chunk_us"] - stream["responses"]["added_per_chunk_us"]
        )
        results[f"stream_{stream['chat']['chunks']}"] = stream
    return results


def report(results: dict[str, Any]) -> str:
    lines = [
        "| case | native added p50 | chat added p50 | translation adds | chat / native (wrapped p50) |",
        "|---|---:|---:|---:|---:|",
    ]
    request = results["request"]
    lines.append(
        f"| non-streamed ~1 KB request (us) | {request['responses']['added_p50_us']:.1f} | "
        f"{request['chat']['added_p50_us']:.1f} | {request['translation_added_p50_us']:.1f} | "
        f"{request['ratio_wrapped_p50']:.2f} |"
    )
    for key, stream in results.items():
        if key.startswith("stream_"):
            words = key.split("_")[1]
            lines.append(
                f"| stream of {words} chunks, per chunk (us) | {stream['responses']['added_per_chunk_us']:.2f} | "
                f"{stream['chat']['added_per_chunk_us']:.2f} | {stream['translation_per_chunk_us']:.2f} | "
                f"{stream['ratio_wrapped_p50']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chat_backend")
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke test, numbers meaningless")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args(argv)
    counts = (50, 5, 100, 2) if args.quick else (3000, 300, 1000, 15)
    results = asyncio.run(run(*counts))
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
