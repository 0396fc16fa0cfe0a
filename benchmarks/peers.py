"""``python -m benchmarks --peers``: retention-proxy beside nginx and LiteLLM, against the same fast upstream.

Every target forwards to one ``benchmarks.fast_upstream`` process; the upstream called directly is
the baseline. In one run:

1. latency: one keep-alive connection per target, requests one at a time, the targets taken in a
   rotating order each round so that drift falls on all alike; added p50 is a target's median less
   the direct median, per route (chat, passthrough, stored response, a stream of N chunks);
2. load: each target saturated in turn (``peer_load``) on the chat route: req/s, CPU per request of
   the target's processes, latency under load; retention-proxy also at 4x the connections, for its
   p99 ratio;
3. workers: ``retention-proxy --workers 1`` and ``--workers 2`` with the MongoDB test server as store.

Peers that are not installed are skipped with the reason in the report. Nothing here asserts a time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from . import peer_targets
from .asgi_calls import expect
from .http1 import Connection, post, timed_framed
from .payloads import PASSTHROUGH_PREFIX, chat_body, responses_body
from .peer_load import saturate, tool
from .peer_targets import Target
from .processes import mongo_emulator
from .stats import Comparison

NS_PER_MS = 1_000_000
CHAT = "/v1/chat/completions"


def _routes(chunks: int) -> dict[str, bytes]:
    return {
        "chat": post(CHAT, chat_body()),
        "passthrough": post(f"{PASSTHROUGH_PREFIX}{CHAT}", chat_body()),
        "stored": post("/v1/responses", responses_body()),
        f"stream_{chunks}": post(CHAT, chat_body(stream=True)),
    }


def _serves(target: Target, route: str) -> bool:
    # LiteLLM answers only the OpenAI routes it routes to a model: not our passthrough path.
    return not (target.name.startswith("LiteLLM") and route in ("passthrough", "stored"))


def _latency(targets: list[Target], requests: int, chunks: int) -> dict[str, Any]:
    """Every target in one rotation, but a slow one (LiteLLM: tens of ms, and CPU it keeps using
    after it answered) in a rotation of its own with the upstream: its wake would land on whichever
    target came next, and the figures of the fast ones would measure it."""
    fast = [target for target in targets if not target.slow]
    results = _rotation(fast, requests, chunks)
    for slow in (target for target in targets if target.slow):
        for route, by_target in _rotation([targets[0], slow], max(20, requests // 10), chunks).items():
            if slow.name in by_target:
                results[route][slow.name] = by_target[slow.name]
    return results


def _rotation(targets: list[Target], requests: int, chunks: int) -> dict[str, Any]:
    connections = {target.name: Connection(target.port) for target in targets}
    results: dict[str, Any] = {}
    try:
        for route, request in _routes(chunks).items():
            serving = [target for target in targets if _serves(target, route)]
            samples: dict[str, list[float]] = {target.name: [] for target in serving}
            chunks_out: dict[str, int] = {}
            warmup = max(5, requests // 10)
            for index in range(warmup + requests):
                shift = index % len(serving)
                for target in serving[shift:] + serving[:shift]:
                    elapsed, status, count = timed_framed(connections[target.name], request)
                    expect(status == 200, "a request failed", target=target.name, route=route, status=status)
                    chunks_out[target.name] = count
                    if index >= warmup:
                        samples[target.name].append(elapsed / NS_PER_MS)
            direct = samples[targets[0].name]
            results[route] = {
                name: {**Comparison.of(direct, mine, "ms").to_json(), "chunks_out": chunks_out[name]}
                for name, mine in samples.items()
            }
    finally:
        for connection in connections.values():
            connection.close()
    return results


def _load(targets: list[Target], connections: int, seconds: float) -> dict[str, Any]:
    body = chat_body()
    results = {}
    for target in targets:
        if seconds >= 2:  # a warm-up first, so a server's first second (caches, allocator) is not measured
            saturate(target.port, target.pid, CHAT, body, connections=connections, seconds=1.0)
        results[target.name] = saturate(target.port, target.pid, CHAT, body, connections=connections, seconds=seconds)
    return {name: loaded.to_json() for name, loaded in results.items()}


def _workers(upstream: Target, connections: int, seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with mongo_emulator() as uri:
        for workers in (1, 2):
            with peer_targets.retention_proxy(upstream.port, workers=workers, store=uri) as proxy:
                _until_served(proxy)
                if seconds >= 2:
                    saturate(proxy.port, proxy.pid, CHAT, chat_body(), connections=connections, seconds=1.0)
                loaded = saturate(proxy.port, proxy.pid, CHAT, chat_body(), connections=connections, seconds=seconds)
                results[str(workers)] = loaded.to_json()
    results["ratio"] = results["2"]["requests_per_second"] / results["1"]["requests_per_second"]
    return results


def _until_served(target: Target, attempts: int = 100) -> None:
    """Workers start after the banner: wait until each of them answers (every new connection is
    accepted by whichever worker is free, so a few good answers in a row mean all are up)."""
    good = 0
    for _ in range(attempts):
        try:
            connection = Connection(target.port)
            try:
                _, status, _ = timed_framed(connection, post(CHAT, chat_body()))
            finally:
                connection.close()
            good = good + 1 if status == 200 else 0
        except OSError:
            good = 0
        if good >= 8:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{target.name} never answered")


@contextmanager
def _targets(
    chunks: int, litellm_python: str | None, baseline: str | None, skipped: dict[str, str]
) -> Iterator[list[Target]]:
    with ExitStack() as stack:
        upstream = stack.enter_context(peer_targets.fast_upstream(chunks))
        targets = [upstream, stack.enter_context(peer_targets.retention_proxy(upstream.port))]
        if baseline is not None:
            label = f"retention-proxy (baseline: {baseline})"
            targets.append(
                stack.enter_context(peer_targets.retention_proxy(upstream.port, label=label, source=baseline))
            )
        missing = peer_targets.nginx_missing()
        if missing is None:
            targets.append(stack.enter_context(peer_targets.nginx(upstream.port)))
        else:
            skipped["nginx"] = missing
        python = peer_targets.litellm_python(litellm_python)
        missing = peer_targets.litellm_missing(python)
        if missing is None and python is not None:
            targets.append(stack.enter_context(peer_targets.litellm(python, upstream.port)))
        else:
            skipped["LiteLLM proxy"] = missing or "not found"
        yield targets


def run(counts: Any, litellm_python: str | None, baseline: str | None = None) -> dict[str, Any]:
    """``counts``: the ``peer_*`` fields of ``benchmarks.__main__.Counts``; ``baseline``: a checkout
    whose retention-proxy runs beside this one (before/after in one run)."""
    skipped: dict[str, str] = {}
    chunks, seconds, connections = counts.peer_stream_chunks, counts.peer_seconds, counts.peer_connections
    with _targets(chunks, litellm_python, baseline, skipped) as targets:
        results: dict[str, Any] = {
            "targets": {target.name: target.version for target in targets},
            "skipped": skipped,
            "load_tool": tool(),
            "latency": _latency(targets, counts.peer_latency_requests, chunks),
            "load": _load(targets, connections, seconds),
            "stream_chunks": chunks,
        }
        proxy = targets[1]
        wide = saturate(proxy.port, proxy.pid, CHAT, chat_body(), connections=4 * connections, seconds=seconds)
        results["proxy_wide_load"] = wide.to_json()
        results["workers"] = _workers(targets[0], connections, seconds)
    return results


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render(results: dict[str, Any]) -> list[str]:
    latency, load = results["latency"], results["load"]
    stream = next(route for route in latency if route.startswith("stream_"))
    lines = [
        "### Peers: the same fast upstream, direct and through each proxy (one process each)",
        "",
        "Targets: " + "; ".join(f"{name}: {version}" for name, version in results["targets"].items()) + ".",
        f"Load: {results['load_tool']}.",
        "",
        f"| target | chat added p50 (ms) | passthrough added p50 | stored added p50 | {stream.split('_')[1]}-chunk "
        f"stream added (per chunk, us) | CPU per request (us) | req/s at {next(iter(load.values()))['connections']}"
        " conns | p50 / p99 under load (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    chunks = results["stream_chunks"]
    for name in results["targets"]:
        cells = []
        for route in ("chat", "passthrough", "stored"):
            cells.append(f"{latency[route][name]['added_p50']:+.3f}" if name in latency[route] else "—")
        added = latency[stream][name]["added_p50"]
        cells.append(f"{added:+.3f} ({added * 1000 / chunks:.1f})")
        loaded = load[name]
        cells += [f"{loaded['cpu_us_per_request']:.0f}", f"{loaded['requests_per_second']:.0f}",
                  f"{_ms(loaded['p50_ms'])} / {_ms(loaded['p99_ms'])}"]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    direct = next(iter(results["targets"]))
    lines += ["", "Direct p50 (ms): " + ", ".join(f"{route} {latency[route][direct]['baseline']['p50']:.3f}"
                                                   for route in latency) + "."]  # fmt: skip
    for name, reason in results["skipped"].items():
        lines.append(f"Skipped {name}: {reason}.")
    wide, narrow = results["proxy_wide_load"], load["retention-proxy"]
    if wide["p99_ms"] is not None and narrow["p99_ms"] is not None:
        lines.append(
            f"retention-proxy p99 at {wide['connections']} connections: {wide['p99_ms']:.2f} ms "
            f"({wide['p99_ms'] / narrow['p99_ms']:.2f}x its p99 at {narrow['connections']}); "
            f"{wide['requests_per_second']:.0f} req/s."
        )
    workers = results["workers"]
    lines.append(
        f"`--workers 2` / `--workers 1` (MongoDB test server as store, chat route): "
        f"{workers['2']['requests_per_second']:.0f} / {workers['1']['requests_per_second']:.0f} req/s = "
        f"**{workers['ratio']:.2f}x**."
    )
    lines += ["", *_goals(results)]
    return [re.sub(r" +\|", " |", line) for line in lines]


def _goals(results: dict[str, Any]) -> list[str]:
    """Issue 16's goals for the proxy, judged from this run (reported, never asserted)."""
    latency, load, chunks = results["latency"], results["load"], results["stream_chunks"]
    stream = next(route for route in latency if route.startswith("stream_"))
    ours = load["retention-proxy"]
    rows = [("CPU per proxied chat request", "<= 100 us", ours["cpu_us_per_request"], 100.0, "us")]
    if "nginx" in load:
        ratio = ours["cpu_us_per_request"] / load["nginx"]["cpu_us_per_request"]
        rows.append(("CPU per request, retention-proxy / nginx", "<= 4x", ratio, 4.0, "x"))
    for route, limit in (("chat", 0.2), ("passthrough", 0.2), ("stored", 0.3)):
        rows.append((f"added p50, {route}", f"<= {limit:g} ms", latency[route]["retention-proxy"]["added_p50"],
                     limit, "ms"))  # fmt: skip
    per_chunk = latency[stream]["retention-proxy"]["added_p50"] * 1000 / chunks
    rows.append(("stream: added per chunk", "<= 5 us", per_chunk, 5.0, "us"))
    wide = results["proxy_wide_load"]
    if wide["p99_ms"] is not None and ours["p99_ms"] is not None:
        rows.append(("p99 at 4x the connections / p99", "<= 2x", wide["p99_ms"] / ours["p99_ms"], 2.0, "x"))
    rows.append(("--workers 2 / --workers 1 req/s", ">= 1.7x", results["workers"]["ratio"], -1.7, "x"))
    lines = ["| goal (issue 16) | target | measured | met |", "|---|---|---:|---|"]
    for goal, target, value, limit, unit in rows:
        met = value >= -limit if limit < 0 else value <= limit
        lines.append(f"| {goal} | {target} | {value:.2f} {unit} | {'yes' if met else '**NO**'} |")
    return lines
