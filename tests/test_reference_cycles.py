"""A proxied request leaves no reference cycle behind: everything it built is freed when it ends.

Objects in a reference cycle wait for the cyclic garbage collector, and under load those collections
were a tenth of the proxy's CPU and its worst pauses (the p99 at 128 connections). The tests proxy
requests over one keep-alive connection through the proxy's own server and forwarder, with the
collector saving what it finds, and count the per-request objects among it: a cycle per request
would leave one of each per request; the connection's own objects may be there at most once.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.demo import EchoModel
from retention_middleware.proxy.forwarder import UpstreamProxy
from retention_middleware.proxy.server import protocol_class

from support.servers import aserve

REQUESTS = 40
# Built once per request on the way through the server, the middleware and the forwarder.
PER_REQUEST = {
    ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle"),
    ("retention_middleware.exchange", "Exchange"),
    ("retention_middleware.logs.access_log", "AccessRecord"),
    ("retention_middleware.proxy.downstream", "Downstream"),
    ("retention_middleware.proxy.head_write", "HeadJoiningTransport"),
    ("retention_middleware.proxy.disconnect_signal", "DisconnectSignal"),
}


@contextmanager
def collected_garbage() -> Iterator[Counter[tuple[str, str]]]:
    """What the collector finds unreachable while the block runs, by (module, class)."""
    found: Counter[tuple[str, str]] = Counter()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.update((type(item).__module__, type(item).__qualname__) for item in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def exchange(port: int, body: bytes, count: int) -> list[bytes]:
    """``count`` requests one after the other on one keep-alive connection; the answers' bodies."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rb")
        for _ in range(count):
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-a\r\n"
                b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body
            )
            assert stream.readline().startswith(b"HTTP/1.1 200")
            headers = {}
            while (line := stream.readline()) != b"\r\n":
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                answers.append(stream.read(int(headers["content-length"])))
                continue
            chunks = b""
            while size := int(stream.readline(), 16):
                chunks += stream.read(size + 2)[:-2]
            stream.readline()
            answers.append(chunks)
    return answers


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "chat stream"])
async def test_a_proxied_request_leaves_nothing_for_the_cyclic_collector(stream: bool) -> None:
    body = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "one two three"}], "stream": stream})
    async with aserve(EchoModel()) as upstream:
        settings = RetentionSettings(upstream=upstream, tenant_secret="cycle-test-secret-0123456789")
        app = RetentionMiddleware(UpstreamProxy(settings), settings)
        async with aserve(app, http=protocol_class(settings), loop="asyncio") as url:
            port = int(url.rsplit(":", 1)[1])
            await asyncio.to_thread(exchange, port, body, 3)  # warm: the pool's connection, lazy imports
            with collected_garbage() as found:
                answers = await asyncio.to_thread(exchange, port, body, REQUESTS)
    assert len(answers) == REQUESTS and all(b"three" in answer for answer in answers)
    leftovers = {kind: found[kind] for kind in PER_REQUEST}
    assert all(count <= 1 for count in leftovers.values()), leftovers
