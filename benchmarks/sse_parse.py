"""Section 6: SSE parse time against event size, in one run, as a per-byte ratio.

One event of each size (a single ``data:`` line, the shape of a large tool-call argument or a
``response.completed`` carrying a long answer) is fed to ``SSEParser`` in fixed-size chunks, the way
a socket delivers it. A linear parser costs the same per byte at every size, so the figure that
matters is the per-byte cost of the largest event over that of the smallest: about 1 when parsing
is linear, growing with the size ratio when it is quadratic.
"""

from __future__ import annotations

import time
from typing import Any

from retention_middleware.wire.sse import SSEParser

CHUNK_BYTES = 16 * 1024


def _parse_seconds(event: bytes, chunk: int) -> float:
    parser = SSEParser()
    started = time.perf_counter()
    events = []
    for start in range(0, len(event), chunk):
        events += parser.feed(event[start : start + chunk])
    elapsed = time.perf_counter() - started
    if len(events) != 1 or len(events[0].data) != len(event) - len(b"data: \n\n"):
        raise RuntimeError("the SSE parser did not return the one event it was fed")
    return elapsed


def run(megabytes: tuple[float, ...], *, chunk: int = CHUNK_BYTES, repeats: int = 3) -> dict[str, Any]:
    cases = []
    for size_mb in megabytes:
        size = int(size_mb * 1024 * 1024)
        event = b"data: " + b"x" * size + b"\n\n"
        seconds = min(_parse_seconds(event, chunk) for _ in range(repeats))
        cases.append({"megabytes": size_mb, "seconds": seconds, "ns_per_byte": seconds * 1e9 / len(event)})
    smallest, largest = cases[0], cases[-1]
    return {
        "chunk_bytes": chunk,
        "cases": cases,
        "per_byte_ratio": largest["ns_per_byte"] / smallest["ns_per_byte"],
        "size_ratio": largest["megabytes"] / smallest["megabytes"],
    }


if __name__ == "__main__":  # ``python -m benchmarks.sse_parse [MiB ...]``: this section alone
    import sys

    from .report import _sse_parse

    sizes = tuple(float(arg) for arg in sys.argv[1:]) or (1.0, 32.0)
    print("\n".join(_sse_parse(run(sizes))))
