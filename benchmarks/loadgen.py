"""``python -m benchmarks.loadgen``: a closed-loop HTTP/1.1 load generator, one process of several.

Each connection sends one request, reads the whole response (Content-Length framing, which every
app here uses for non-streamed answers) and sends the next at once, over keep-alive. It is an
asyncio ``Protocol`` on raw bytes, so one process costs a few microseconds per request and drives a
Python server far past what it can serve; an HTTP client library would measure itself instead.
It counts the responses completed inside ``[start, start + duration)`` on the shared wall clock
(``start`` is given by the parent), so several processes measure the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from .http1 import HEADER_END, framing


class _Connection(asyncio.Protocol):
    def __init__(self, request: bytes, window: tuple[float, float], counts: dict[str, int]) -> None:
        self.request = request
        self.window = window
        self.counts = counts
        self.buffer = bytearray()
        self.needed = -1  # total bytes of the response being read, once its header is parsed
        self.ok = False
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            if self.needed < 0:
                end = buffer.find(HEADER_END)
                if end < 0:
                    return
                status, length = framing(bytes(buffer[:end]))
                self.needed = end + len(HEADER_END) + length
                self.ok = status == 200
            if len(buffer) < self.needed:
                return
            del buffer[: self.needed]
            self.needed = -1
            now = time.time()
            if self.window[0] <= now < self.window[1]:
                self.counts["ok" if self.ok else "failed"] += 1
            if now >= self.window[1]:
                assert self.transport is not None
                self.transport.close()
                return
            assert self.transport is not None
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _run(host: str, port: int, request: bytes, connections: int, start: float, duration: float) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0}
    loop = asyncio.get_running_loop()
    protocols = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(
            lambda: _Connection(request, (start, start + duration), counts), host, port
        )
        protocols.append(protocol)
    await asyncio.wait_for(asyncio.gather(*(protocol.closed for protocol in protocols)), duration + 60)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--request", required=True, help="file holding the raw HTTP request bytes")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--start", type=float, required=True, help="wall-clock time the window opens")
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()
    with open(args.request, "rb") as file:
        request = file.read()
    counts = asyncio.run(_run("127.0.0.1", args.port, request, args.connections, args.start, args.duration))
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
