"""The forwarder's own HTTP/1.1 client against a raw-socket upstream that writes exactly the bytes a test scripts.

The upstream is an ``asyncio.start_server`` on the test's loop; the proxy runs under uvicorn (its own
thread and loop) and the client is httpx. Each test scripts the upstream's answer byte for byte, so
framing, interim answers, closes and write stalls are the test's to choose; the upstream records
every request it reads and on which connection. Every wait has a deadline; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from retention_middleware.proxy.forwarder import UpstreamProxy
from retention_middleware.proxy.upstream_connection import MAX_HEAD_BYTES, MAX_HEADERS

from support.servers import aserve

DEADLINE = 5.0


@dataclass
class Request:
    connection: int  # which upstream connection, in the order they were opened
    number: int  # which request on that connection, from 0
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


# Writes the answer to ``request``; returns whether the connection stays open for another request.
Answer = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]


class RawUpstream:
    """A loopback HTTP/1.1 server reading requests itself and answering each with ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self.heads = 0  # request heads read, counted before the body is
        self.connections = 0
        self.hung_up: list[int] = []  # connections the proxy closed
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = self.connections
        self.connections += 1
        try:
            for number in itertools.count():
                request = await self._read(reader, connection, number)
                if request is None:
                    self.hung_up.append(connection)
                    return
                self.requests.append(request)
                if not await self.answer(request, writer):
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader, connection: int, number: int) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None  # the proxy closed the connection
        self.heads += 1
        line, *fields = head[:-4].decode("latin-1").split("\r\n")
        method, path, _ = line.split(" ")
        headers = {name.strip().lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
        body = b""
        if headers.get("transfer-encoding") == "chunked":
            while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")  # the empty trailer section
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Request(connection, number, method, path, headers, body)


@contextlib.asynccontextmanager
async def raw_upstream(answer: Answer) -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream(answer)
    server = await asyncio.start_server(upstream._serve, "127.0.0.1", 0)
    upstream.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield upstream


@contextlib.asynccontextmanager
async def proxy_client(upstream: RawUpstream, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with aserve(UpstreamProxy(upstream=upstream.url, timeout=DEADLINE, **options)) as proxy_url:
        async with httpx.AsyncClient(base_url=proxy_url, timeout=DEADLINE) as http:
            yield http


async def until(condition: Callable[[], bool], deadline: float = DEADLINE) -> None:
    """Wait until ``condition()`` holds, for at most ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"the condition still did not hold after {deadline} s")
        await asyncio.sleep(0.005)


def ok(body: bytes, *extra: bytes) -> bytes:
    """A plain keep-alive 200 with a length."""
    fields = b"".join(field + b"\r\n" for field in extra)
    return b"HTTP/1.1 200 OK\r\n%scontent-length: %d\r\n\r\n%s" % (fields, len(body), body)


async def answer_path(request: Request, writer: asyncio.StreamWriter) -> bool:
    """The default answer: 200, the request's path as the body."""
    writer.write(ok(request.path.encode()))
    return True


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"


# -- framing ------------------------------------------------------------------------------------------


CLOSE_DELIMITED = bytes(range(256)) * 1200  # past the proxy's 64 KiB read-ahead: its reading pauses on the way


async def test_a_body_ended_by_the_upstreams_close_arrives_whole_and_the_next_request_opens_a_connection() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n")
        for start in range(0, len(CLOSE_DELIMITED), 100_000):
            writer.write(CLOSE_DELIMITED[start : start + 100_000])
            await writer.drain()
        return False  # the close is the body's end

    async with raw_upstream(answer) as upstream, proxy_client(upstream) as http:
        first = await http.get("/one")
        second = await http.get("/two")
    for response in (first, second):
        assert response.status_code == 200 and response.content == CLOSE_DELIMITED
    assert [r.connection for r in upstream.requests] == [0, 1]


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.js>; rel=preload\r\n\r\n",
    ],
)
async def test_interim_answers_are_skipped_for_the_real_one(interim: bytes) -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(interim)
        await writer.drain()
        writer.write(ok(b"the real answer " + request.path.encode(), b"x-real: yes"))
        return True

    async with raw_upstream(answer) as upstream, proxy_client(upstream) as http:
        first = await http.get("/first")
        second = await http.get("/second")
    assert (first.status_code, first.content) == (200, b"the real answer /first")
    assert first.headers["x-real"] == "yes" and "link" not in first.headers
    assert (second.status_code, second.content) == (200, b"the real answer /second")
    assert [r.connection for r in upstream.requests] == [0, 0]  # the connection stayed usable


async def test_a_head_answers_content_length_without_a_body_and_the_next_get_on_the_connection_gets_its_own() -> None:
    body = b"the GET's own body"

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.method == "HEAD":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4096\r\nx-head: 1\r\n\r\n")
        else:
            writer.write(ok(body))
        return True

    async with raw_upstream(answer) as upstream, proxy_client(upstream) as http:
        head = await http.head("/resource")
        get = await http.get("/resource")
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "4096", b"")
    assert (get.status_code, get.content) == (200, body) and "x-head" not in get.headers
    assert [(r.method, r.connection) for r in upstream.requests] == [("HEAD", 0), ("GET", 0)]


async def test_a_chunked_answer_with_trailers_and_chunk_extensions_passes_whole() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.path != "/trailers":
            return await answer_path(request, writer)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n")
        writer.write(b"5\r\nhello\r\n6;ext=1\r\n world\r\n")
        await writer.drain()
        writer.write(b"1\r\n!\r\n0\r\nx-checksum: abc\r\nx-other: def\r\n\r\n")
        return True

    async with raw_upstream(answer) as upstream, proxy_client(upstream) as http:
        response = await http.get("/trailers")
        after = await http.get("/after")
    assert (response.status_code, response.content) == (200, b"hello world!")
    assert "x-checksum" not in response.headers and "x-other" not in response.headers
    assert (after.status_code, after.content, after.headers.get("x-checksum")) == (200, b"/after", None)
    assert [r.connection for r in upstream.requests] == [0, 0]


@pytest.mark.parametrize(
    "garbage",
    [
        b"garbage instead of a status line\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: twelve\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon in this header\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",  # unasked for
        b"HTTP/1.1 200 OK\r\nx-huge: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\n" + b"x-many: 1\r\n" * (MAX_HEADERS + 1) + b"content-length: 2\r\n\r\nok",
    ],
    ids=["not-http", "bad-status", "bad-length", "no-colon", "unasked-101", "huge-head", "too-many-headers"],
)
async def test_a_malformed_answer_is_502_upstream_unavailable_and_the_next_request_works(
    garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.path == "/bad":
            writer.write(garbage)
            return True  # the upstream keeps it open: the proxy must hang up itself
        return await answer_path(request, writer)

    async with raw_upstream(answer) as upstream, proxy_client(upstream) as http:
        assert (await http.get("/good")).content == b"/good"
        bad = await http.get("/bad")
        after = await http.get("/after")
    assert_unavailable(bad)
    assert (after.status_code, after.content) == (200, b"/after")
    assert [r.connection for r in upstream.requests] == [0, 0, 1]  # the bad connection was not reused
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


STRAY = b"HTTP/1.1 500 Stray\r\nx-stray: 1\r\ncontent-length: 5\r\n\r\nstray"


async def test_an_answer_followed_by_stray_bytes_arrives_alone_and_the_connection_is_not_reused() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(request.path.encode()) + (STRAY if request.path == "/first" else b""))
        return True

    async with raw_upstream(answer) as upstream, proxy_client(upstream) as http:
        first = await http.get("/first")
        second = await http.get("/second")
    assert (first.status_code, first.content, first.headers.get("x-stray")) == (200, b"/first", None)
    assert (second.status_code, second.content) == (200, b"/second")  # its own answer, not the stray one
    assert [r.connection for r in upstream.requests] == [0, 1]


async def test_bytes_on_an_idle_connection_close_it_rather_than_answer_the_next_request() -> None:
    answered = asyncio.Event()

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(request.path.encode()))
        if request.path == "/first":
            await writer.drain()
            await asyncio.wait_for(answered.wait(), DEADLINE)  # the proxy is done with the exchange
            writer.write(STRAY)
        return True

    async with raw_upstream(answer) as upstream, proxy_client(upstream) as http:
        assert (await http.get("/first")).content == b"/first"
        answered.set()
        await until(lambda: upstream.hung_up == [0])
        second = await http.get("/second")
    assert (second.status_code, second.content) == (200, b"/second")
    assert [r.connection for r in upstream.requests] == [0, 1]


# -- a kept-alive connection the upstream closes ------------------------------------------------------


async def test_an_upstream_closing_on_the_next_request_gets_a_get_retried_and_a_post_502() -> None:
    # Each connection answers its first request, then closes on reading the second without a byte of
    # answer (an upstream's idle timeout firing as the request arrives): deterministic, unlike a race.
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.number:
            return False
        return await answer_path(request, writer)

    async with raw_upstream(answer) as upstream, proxy_client(upstream) as http:
        assert (await http.get("/first")).content == b"/first"
        retried = await http.get("/retried")
        refused = await http.post("/posted", content=b"{}")
    assert (retried.status_code, retried.content) == (200, b"/retried")
    assert_unavailable(refused)  # a POST may have been acted on: it is not sent twice
    seen = [(r.path, r.connection, r.number) for r in upstream.requests]
    assert seen == [("/first", 0, 0), ("/retried", 0, 1), ("/retried", 1, 0), ("/posted", 1, 1)]


async def test_after_a_server_error_the_next_post_goes_on_a_new_connection() -> None:
    # uvicorn, after an app's exception, answers 500 with no "connection: close", logs the traceback
    # and only then closes: a request written on that connection meanwhile would be lost unanswered.
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.path == "/crash":
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\noops!")
            await writer.drain()
            await asyncio.sleep(0.2)  # the traceback being logged
            return False  # then the close, whatever came in meanwhile
        return await answer_path(request, writer)

    async with raw_upstream(answer) as upstream, proxy_client(upstream) as http:
        crashed = await http.post("/crash", content=b"{}")
        after = await http.post("/after", content=b"{}")
    assert (crashed.status_code, crashed.content) == (500, b"oops!")
    assert (after.status_code, after.content) == (200, b"/after")
    assert [(r.path, r.connection) for r in upstream.requests] == [("/crash", 0), ("/after", 1)]


async def test_an_upstream_closing_right_after_its_answer_never_hangs_the_next_requests() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        await answer_path(request, writer)
        return False  # no ``connection: close``: the socket just closes after the answer

    async with raw_upstream(answer) as upstream, proxy_client(upstream) as http:
        assert (await http.get("/first")).content == b"/first"
        get = await http.get("/get")
        post = await http.post("/post", content=b"{}")
    assert (get.status_code, get.content) == (200, b"/get")  # the close was seen, or the GET retried
    if post.status_code != 200:
        assert_unavailable(post)  # the close raced the POST: refused, never a hang or a 500
    else:
        assert post.content == b"/post"


# -- streaming and flow control -----------------------------------------------------------------------


PIECE = bytes(range(256)) * 256  # 64 KiB
PIECES = 1024  # 64 MiB in all


async def test_a_client_that_stops_reading_stalls_the_upstreams_writes_and_then_gets_every_byte() -> None:
    sent = 0
    finished = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        nonlocal sent
        writers.append(writer)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (len(PIECE) * PIECES))
        for _ in range(PIECES):
            writer.write(PIECE)
            await writer.drain()
            sent += len(PIECE)
        finished.set()
        return True

    async with raw_upstream(answer) as upstream, proxy_client(upstream) as http:
        async with http.stream("GET", "/big") as response:
            raw = response.aiter_raw()
            first = await anext(raw)
            received, digest = len(first), hashlib.sha256(first)
            # Paused: the upstream must come to a stop with bytes it cannot write, well short of the end.
            still, last = 0, -1

            def stopped() -> bool:
                nonlocal still, last
                still, last = (still + 1 if sent == last else 0), sent
                return still >= 400 or finished.is_set()

            await until(stopped, 4 * DEADLINE)
            assert not finished.is_set(), "the proxy took the whole body while its client was not reading"
            assert writers[0].transport.get_write_buffer_size() > 0  # the upstream is blocked writing
            assert sent < len(PIECE) * PIECES // 2
            async for chunk in raw:
                received += len(chunk)
                digest.update(chunk)
    await asyncio.wait_for(finished.wait(), DEADLINE)
    assert received == len(PIECE) * PIECES
    assert digest.digest() == hashlib.sha256(PIECE * PIECES).digest()  # every byte, in order
    assert len(upstream.requests) == 1


async def test_with_two_connections_a_third_concurrent_request_waits_for_one_and_is_served() -> None:
    gates = {name: asyncio.Event() for name in ("/a", "/b", "/c")}

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.wait_for(gates[request.path].wait(), DEADLINE)
        return await answer_path(request, writer)

    async with raw_upstream(answer) as upstream, proxy_client(upstream, max_connections=2) as http:
        calls = {name: asyncio.ensure_future(http.get(name)) for name in gates}
        await until(lambda: len(upstream.requests) == 2)
        first, second = upstream.requests
        (third,) = set(gates) - {first.path, second.path}
        assert not calls[third].done()  # waiting for a connection, not refused
        gates[first.path].set()
        await until(lambda: len(upstream.requests) == 3)
        for gate in gates.values():
            gate.set()
        responses = {name: await asyncio.wait_for(call, DEADLINE) for name, call in calls.items()}
    assert {name: (r.status_code, r.content) for name, r in responses.items()} == {
        name: (200, name.encode()) for name in gates
    }
    assert upstream.connections == 2
    assert (upstream.requests[2].path, upstream.requests[2].connection) == (third, first.connection)


@pytest.mark.parametrize("length", [None, 12])
async def test_a_streamed_request_body_goes_chunked_without_a_length_and_as_is_with_one(length: int | None) -> None:
    async with raw_upstream(answer_path) as upstream, proxy_client(upstream) as http:

        async def body() -> AsyncIterator[bytes]:
            yield b"part-1"
            await until(lambda: upstream.heads == 1)  # the head went out before the rest exists
            yield b"part-2"

        headers = {} if length is None else {"content-length": str(length)}
        response = await http.post("/upload", content=body(), headers=headers)
    assert (response.status_code, response.content) == (200, b"/upload")
    (request,) = upstream.requests
    assert request.body == b"part-1part-2"
    if length is None:
        assert request.headers["transfer-encoding"] == "chunked" and "content-length" not in request.headers
    else:
        assert request.headers["content-length"] == "12" and "transfer-encoding" not in request.headers
