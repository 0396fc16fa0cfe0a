"""Section 4: peak RSS growth while streaming, each case in a fresh ``benchmarks.memory_probe`` process.

Flat means the growth does not depend on how much was streamed: the same at 10 MB as at 100 MB.
The cases separate what the middleware holds: a passthrough route (nothing inspected), a metered
chat stream, and a stored Responses API stream with the log guard on (the default) and off.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .asgi_calls import expect
from .processes import REPO, child_environment

# (case, bytes per event): ~1 KiB events for every case, and token-sized ones for a chat stream,
# where each delta is a few characters, as a real model sends them.
CASES: tuple[tuple[str, int], ...] = (
    ("bare", 1024),
    ("passthrough", 1024),
    ("chat", 1024),
    ("chat", 160),
    ("responses_stored", 1024),
    ("responses_stored_guard_off", 1024),
)
FLAT_TOLERANCE_KIB = 1024
"""Growth this close at both lengths counts as flat: page granularity and allocator pools."""


def probe(case: str, megabytes: float, event_bytes: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.memory_probe", case, repr(megabytes), "--event-bytes", str(event_bytes)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=child_environment(), timeout=600)
    expect(done.returncode == 0, "a memory probe failed", case=case, stderr=done.stderr[-2000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(sizes: tuple[float, float]) -> dict[str, Any]:
    small, large = sizes
    results: dict[str, Any] = {"megabytes": [small, large], "flat_tolerance_kib": FLAT_TOLERANCE_KIB, "cases": []}
    for case, event_bytes in CASES:
        short, long = probe(case, small, event_bytes), probe(case, large, event_bytes)
        growth = (short["peak_growth_kib"], long["peak_growth_kib"])
        results["cases"].append(
            {
                "case": case,
                "event_bytes": event_bytes,
                "largest_event_bytes": long["largest_event_bytes"],
                "peak_growth_kib": {str(small): growth[0], str(large): growth[1]},
                "flat": growth[1] - growth[0] <= FLAT_TOLERANCE_KIB,
                "peak_method": long["peak_method"],
            }
        )
    return results
