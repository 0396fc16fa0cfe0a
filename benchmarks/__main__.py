"""``python -m benchmarks [--quick] [--json PATH] [counts...]``: run every section, print the report.

A full run takes a few minutes on two cores; ``--quick`` runs every section with tiny counts (a
smoke test of the harness, numbers meaningless). The markdown report goes to stdout, the raw
results to the JSON file.

``python -m benchmarks --peers [--baseline CHECKOUT] [--litellm-python PYTHON]`` runs only the peers
section instead: retention-proxy beside nginx and the LiteLLM proxy (each when present) and the bare
upstream, interleaved (``benchmarks/peers.py``); ``--baseline`` adds another checkout's proxy, for
before/after figures from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from . import (
    chat_backend,
    encryption,
    guard_load,
    inprocess,
    machine,
    memory,
    peers,
    proxy_latency,
    report,
    sse_parse,
    streams,
    targets,
    throughput,
)


@dataclass(frozen=True)
class Counts:
    rounds: int = 10_000
    """In-process rounds (each times every pair's baseline and variant once)."""
    warmup: int = 500
    mongo_rounds: int = 1_000
    stream_events: int = 2_000
    stream_rounds: int = 30
    throughput_rounds: int = 3
    throughput_seconds: float = 4.0
    throughput_warmup: float = 2.0
    load_processes: int = 2
    load_connections: int = 8
    load_start_delay: float = 0.5
    memory_small_mb: float = 10.0
    memory_large_mb: float = 100.0
    proxy_requests: int = 2_000
    proxy_seconds: float = 30.0
    """Per route; caps the run when the proxy is slow, so a regression cannot make it hang."""
    # SSE parse time against event size (issue 10 item 7)
    sse_small_mb: float = 1.0
    sse_large_mb: float = 32.0
    # Sections 7-9: the log guard against requests in flight, encryption at rest, the chat backend
    guard_rounds: int = 30
    guard_passes: int = 3
    guard_in_flight: str = "0,100,1000"
    encryption_rounds: int = 3000
    encryption_turns: int = 10
    chat_rounds: int = 3000
    chat_stream_words: int = 300
    chat_stream_rounds: int = 15
    # --peers: the proxy beside nginx and LiteLLM under load (issue 16)
    peer_seconds: float = 4.0
    peer_connections: int = 32
    peer_latency_requests: int = 300
    peer_stream_chunks: int = 100


QUICK = Counts(
    rounds=200,
    warmup=20,
    mongo_rounds=30,
    stream_events=100,
    stream_rounds=3,
    throughput_rounds=1,
    throughput_seconds=0.4,
    throughput_warmup=0.2,
    load_start_delay=0.3,
    memory_small_mb=1.0,
    memory_large_mb=4.0,
    proxy_requests=40,
    proxy_seconds=3.0,
    sse_small_mb=0.25,
    sse_large_mb=2.0,
    guard_rounds=2,
    guard_passes=1,
    guard_in_flight="0,50",
    encryption_rounds=20,
    encryption_turns=3,
    chat_rounds=20,
    chat_stream_words=40,
    chat_stream_rounds=2,
    peer_seconds=0.5,
    peer_connections=4,
    peer_latency_requests=20,
    peer_stream_chunks=10,
)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="tiny counts: check the harness, not the numbers")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results.json"), help="where to write results")
    parser.add_argument("--http", default="h11", help="uvicorn HTTP implementation for sections 3 and 5")
    parser.add_argument("--loop", default="asyncio", help="uvicorn event loop for sections 3 and 5")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="only the peers section: retention-proxy beside nginx and LiteLLM (when present) under load",
    )
    parser.add_argument(
        "--litellm-python",
        default=None,
        help="a Python with LiteLLM's proxy installed (else $BENCHMARK_LITELLM_PYTHON; skipped when neither)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="with --peers: a checkout (e.g. from git worktree) whose retention-proxy runs beside this one",
    )
    for spec in fields(Counts):
        parser.add_argument(f"--{spec.name.replace('_', '-')}", type=type(spec.default), default=None)
    return parser.parse_args(argv)


def _counts(args: argparse.Namespace) -> Counts:
    base = QUICK if args.quick else Counts()
    given = {spec.name: getattr(args, spec.name) for spec in fields(Counts) if getattr(args, spec.name) is not None}
    return replace(base, **given)


def _section(name: str) -> None:
    print(f"running {name}...", file=sys.stderr, flush=True)


def run(counts: Counts, *, http: str, loop: str) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine.describe(), "counts": counts.__dict__}
    _section("1/9 in-process overhead")
    results["in_process"] = asyncio.run(inprocess.run(counts.rounds, counts.warmup, counts.mongo_rounds))
    _section("2/9 streams")
    results["streams"] = asyncio.run(streams.run(counts.stream_events, counts.stream_rounds, warmup=2))
    _section("3/9 throughput")
    shape = throughput.Load(counts.load_processes, counts.load_connections, counts.load_start_delay)
    results["throughput"] = throughput.run(
        rounds=counts.throughput_rounds,
        duration=counts.throughput_seconds,
        warmup=counts.throughput_warmup,
        shape=shape,
        http=http,
        loop=loop,
    )
    _section("4/9 memory")
    results["memory"] = memory.run((counts.memory_small_mb, counts.memory_large_mb))
    _section("5/9 proxy latency")
    results["proxy"] = proxy_latency.run(
        requests=counts.proxy_requests,
        warmup=max(5, counts.proxy_requests // 20),
        seconds=counts.proxy_seconds,
        http=http,
        loop=loop,
    )
    _section("6/9 SSE parse time against event size")
    results["sse_parse"] = sse_parse.run((counts.sse_small_mb, counts.sse_large_mb))
    _section("7/9 log guard against requests in flight")
    in_flight = tuple(int(count) for count in counts.guard_in_flight.split(","))
    results["guard_load"] = guard_load.run(counts.guard_rounds, in_flight, counts.guard_passes)
    _section("8/9 encryption at rest")
    warmup = max(5, counts.encryption_rounds // 20)
    results["encryption"] = asyncio.run(encryption.run(counts.encryption_rounds, warmup, counts.encryption_turns))
    _section("9/9 chat backend")
    results["chat_backend"] = asyncio.run(
        chat_backend.run(
            counts.chat_rounds, max(2, counts.chat_rounds // 10), counts.chat_stream_words, counts.chat_stream_rounds
        )
    )
    results["targets"] = targets.evaluate(results)
    return results


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    started = time.monotonic()
    counts = _counts(args)
    if args.peers:
        results = {
            "machine": machine.describe(),
            "counts": counts.__dict__,
            "peers": peers.run(counts, args.litellm_python, args.baseline),
        }
    else:
        results = run(counts, http=args.http, loop=args.loop)
    results["quick"] = args.quick
    results["command"] = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    results["wall_seconds"] = time.monotonic() - started
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(report.render(results))
    print(f"\nresults written to {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
