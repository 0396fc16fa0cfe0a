"""``python -m benchmarks.memory_probe CASE MEGABYTES``: peak RSS growth while streaming, in a fresh process.

A fresh process per measurement, so no earlier allocation hides (or inflates) this one. After a
short warm-up stream (code paths, allocator pools) the peak-RSS mark is reset (Linux
``/proc/self/clear_refs``), the stream runs, and the growth is the new peak minus the RSS before it.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
from typing import Any

from retention_middleware._types import ASGIApp
from retention_middleware.store import MemoryStore

from .apps import wrapped
from .asgi_calls import Request, expect, timed_call
from .payloads import PASSTHROUGH_PREFIX, chat_body, responses_body
from .synthetic import SyntheticStream

MIB = 1024 * 1024
CASES = ("bare", "passthrough", "chat", "responses_stored", "responses_stored_guard_off")


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not offer it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _setup(case: str, upstream: SyntheticStream) -> tuple[ASGIApp, Request, MemoryStore | None]:
    if case == "bare":
        return upstream, Request("POST", "/v1/chat/completions", chat_body(stream=True)), None
    if case == "passthrough":
        path = f"{PASSTHROUGH_PREFIX}/v1/chat/completions"
        return wrapped(upstream), Request("POST", path, chat_body(stream=True)), None
    if case == "chat":
        return wrapped(upstream), Request("POST", "/v1/chat/completions", chat_body(stream=True)), None
    store = MemoryStore()
    app = wrapped(upstream, store=store, log_guard=case != "responses_stored_guard_off")
    return app, Request("POST", "/v1/responses", responses_body(stream=True)), store


async def measure(case: str, megabytes: float, event_bytes: int) -> dict[str, Any]:
    # Warm up (code paths, allocator pools) on a stream much shorter than any measured one, so the
    # memory it leaves behind cannot absorb the measured stream's growth.
    upstream = SyntheticStream(64 * 1024, event_bytes)
    app, request, store = _setup(case, upstream)
    await timed_call(app, request)
    upstream.total_bytes = int(megabytes * MIB)
    gc.collect()
    before = _status_kib("VmRSS")
    exact = before is not None and _reset_peak()
    if not exact:  # fall back to the lifetime peak, which can only overstate nothing below it
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, _, client = await timed_call(app, request)
    peak = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    expect(client.body_bytes >= upstream.total_bytes, "the stream was cut short", bytes=client.body_bytes)
    if store is not None:
        expect(len(store) == 2, "the streamed response was not stored")
        await store.close()
    return {
        "case": case,
        "megabytes": megabytes,
        "bytes_streamed": client.body_bytes,
        "largest_event_bytes": upstream.largest_sent,
        "rss_before_kib": before,
        "peak_growth_kib": (peak or 0) - (before or 0),
        "peak_method": "VmHWM after clear_refs" if exact else "ru_maxrss (lifetime peak)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_probe")
    parser.add_argument("case", choices=CASES)
    parser.add_argument("megabytes", type=float)
    parser.add_argument("--event-bytes", type=int, default=1024)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.case, args.megabytes, args.event_bytes))), flush=True)


if __name__ == "__main__":
    main()
