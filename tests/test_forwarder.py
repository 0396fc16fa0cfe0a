"""UpstreamProxy over real sockets: a scripted upstream under uvicorn, the proxy under uvicorn, httpx.

The upstream app runs in uvicorn's thread and talks to the test through thread-safe queues:
``events`` is what it saw (in order), ``go`` lets it send its next chunk. The tests assert the order
of those events, never durations; every wait has a deadline so a broken proxy fails, not hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import queue
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from openai import AsyncOpenAI

from retention_middleware._types import Receive, Scope, Send
from retention_middleware.demo import EchoModel
from retention_middleware.proxy.forwarder import UpstreamProxy
from retention_middleware.proxy.server import protocol_class
from retention_middleware.settings import RetentionSettings, SettingsError

from support.asgi_tools import answer_lifespan, asgi_client, run_lifespan
from support.servers import aserve, serve, unused_port

DEADLINE = 5.0


class Upstream:
    """A scripted upstream server; the first path segment picks the behaviour."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.go: queue.Queue[None] = queue.Queue()
        self.url = ""

    async def next_event(self) -> tuple[str, Any]:
        return await asyncio.to_thread(self.events.get, True, DEADLINE)

    async def _wait_go(self) -> None:
        await asyncio.to_thread(self.go.get, True, DEADLINE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        route = scope["path"].split("/")[1]
        await getattr(self, f"_{route}", self._inspect)(scope, receive, send)

    async def _inspect(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        seen = {
            "method": scope["method"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("latin-1"),
            "client_port": scope["client"][1],
        }
        await _json(send, 200, seen)

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.events.put(("disconnected", None))
                return
            if message.get("body"):
                chunks.append(message["body"].decode())
                self.events.put(("chunk", message["body"]))
            if not message.get("more_body", False):
                break
        await _json(send, 200, {"chunks": chunks})

    async def _status(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = int(scope["path"].split("/")[2])
        body = b'{"from": "upstream"}'
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-upstream", b"yes"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            (b"location", b"/elsewhere"),
            (b"keep-alive", b"timeout=9"),
            (b"connection", b"x-private"),
            (b"x-private", b"hop secret"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _gzip(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = gzip.compress(b'{"compressed": true}' * 50, mtime=0)
        headers = [(b"content-encoding", b"gzip"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _gated(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Chunk 0 at once, then each further chunk only after the test puts a ``go``."""
        count = int(scope["query_string"].decode().split("=")[1])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-gated", b"1")]})
        for index in range(count):
            if index:
                await self._wait_go()
            await send({"type": "http.response.body", "body": f"chunk-{index}\n".encode(), "more_body": True})
            self.events.put(("sent", index))
        await send({"type": "http.response.body", "body": b""})

    async def _burst(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in burst_chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})

    async def _stall(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the request, never answer, and report when the connection goes away."""
        while (await receive()).get("more_body", False):
            pass
        self.events.put(("received", None))
        await self._until_disconnected(receive)

    async def _stallmid(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start a stream, send one chunk, then wait forever (a model thinking for a long time)."""
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        self.events.put(("sent-first", None))
        await self._until_disconnected(receive)

    async def _failmid(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        raise RuntimeError("upstream crashed mid-stream")

    async def _until_disconnected(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.events.put(("disconnected", None))


async def _json(send: Send, status: int, obj: Any) -> None:
    body = orjson.dumps(obj)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def burst_chunks() -> list[bytes]:
    return [f"event {i}: {'x' * (i % 17)}\n\n".encode() for i in range(200)]


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Upstream, str]]:
    """One upstream and proxy for the tests that only look at requests and answers."""
    app = Upstream()
    with serve(app) as upstream_url, serve(UpstreamProxy(upstream=upstream_url)) as proxy_url:
        app.url = upstream_url
        yield app, proxy_url


@pytest.fixture
async def client(shared: tuple[Upstream, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared[1], timeout=DEADLINE) as http:
        yield http


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """A fresh upstream, so no event from another test is left in its queues."""
    app = Upstream()
    async with aserve(app) as url:
        app.url = url
        yield app


@contextlib.asynccontextmanager
async def proxy_client(upstream_url: str, *, server: str = "h11", **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A proxy in front of ``upstream_url`` and a client talking to it; ``server="proxy"`` serves it
    with retention-proxy's own protocol (which signals a disconnect itself) instead of uvicorn's h11."""
    config: dict[str, Any] = {}
    if server == "proxy":
        config = {"http": protocol_class(RetentionSettings(upstream=upstream_url))}
    async with aserve(UpstreamProxy(upstream=upstream_url, **options), **config) as proxy_url:
        async with httpx.AsyncClient(base_url=proxy_url, timeout=DEADLINE) as http:
            yield http


def error_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- what goes upstream ------------------------------------------------------------------------------

HOP_BY_HOP = ["connection", "keep-alive", "te", "trailer", "proxy-authorization", "x-hop"]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_method_path_query_and_headers_are_forwarded(
    shared: tuple[Upstream, str], client: httpx.AsyncClient, method: str
) -> None:
    headers = [
        ("authorization", "Bearer sk-tenant-key"),
        ("user-agent", "test-agent/1"),
        ("accept-encoding", "identity"),
        ("x-custom", "one"),
        ("x-custom", "two"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "named in Connection"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("proxy-authorization", "Basic cHJveHk6c2VjcmV0"),
    ]
    body = b"payload" if method in ("POST", "PUT", "PATCH") else b""
    url = "/v1/a%2Fb/c%20d?x=1&y=%20z&x=2&flag"
    response = await client.request(method, url, headers=headers, content=body)
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == method
    assert seen["raw_path"] == "/v1/a%2Fb/c%20d"
    assert seen["query_string"] == "x=1&y=%20z&x=2&flag"
    assert seen["body"] == body.decode()
    got = seen["headers"]
    names = [name for name, _ in got]
    assert ["host", shared[0].url.removeprefix("http://")] in got  # rewritten to the upstream's
    assert ["authorization", "Bearer sk-tenant-key"] in got
    assert ["user-agent", "test-agent/1"] in got  # no default added by the proxy's client
    assert ["accept-encoding", "identity"] in got
    assert [value for name, value in got if name == "x-custom"] == ["one", "two"]
    assert not set(HOP_BY_HOP) & set(names)
    assert names.count("host") == 1
    if body:
        assert ["content-length", str(len(body))] in got


async def test_upstream_path_prefix_is_kept(shared: tuple[Upstream, str]) -> None:
    async with proxy_client(shared[0].url + "/base/") as http:
        seen = (await http.get("/v1/models?q=1")).json()
    assert seen["raw_path"] == "/base/v1/models"
    assert seen["query_string"] == "q=1"


async def test_one_shared_client_reuses_its_upstream_connection(client: httpx.AsyncClient) -> None:
    first = (await client.get("/inspect")).json()
    second = (await client.post("/inspect", content=b"x")).json()
    assert first["client_port"] == second["client_port"]


# -- what comes back ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 307, 404, 418, 500, 503])
async def test_status_and_headers_come_back(client: httpx.AsyncClient, status: int) -> None:
    response = await client.get(f"/status/{status}")
    assert response.status_code == status  # a 307 is passed on, not followed
    assert response.content == b'{"from": "upstream"}'
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["x-upstream"] == "yes"
    assert response.headers["location"] == "/elsewhere"
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert "transfer-encoding" not in response.headers
    for hop in ("keep-alive", "x-private", "connection"):
        assert hop not in response.headers


async def test_head_keeps_the_upstream_content_length(client: httpx.AsyncClient) -> None:
    response = await client.head("/status/200")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(b'{"from": "upstream"}'))
    assert response.content == b""


async def test_compressed_bodies_pass_byte_for_byte(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/gzip") as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert response.headers["content-encoding"] == "gzip"
    assert raw == gzip.compress(b'{"compressed": true}' * 50, mtime=0)  # not decompressed on the way
    assert response.headers["content-length"] == str(len(raw))


# -- streaming both ways -----------------------------------------------------------------------------


async def test_request_body_streams_upstream_as_it_arrives(upstream: Upstream) -> None:
    order: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        order.append("client sends part-1")
        yield b"part-1"
        # The upstream must hold part 1 while part 2 is not even produced yet.
        assert await upstream.next_event() == ("chunk", b"part-1")
        order.append("upstream got part-1")
        order.append("client sends part-2")
        yield b"part-2"

    async with proxy_client(upstream.url) as http:
        response = await http.post("/upload", content=body())
    assert response.json() == {"chunks": ["part-1", "part-2"]}
    assert await upstream.next_event() == ("chunk", b"part-2")
    assert order == ["client sends part-1", "upstream got part-1", "client sends part-2"]


async def test_response_chunks_reach_the_client_before_the_upstream_sends_the_next(
    upstream: Upstream,
) -> None:
    async with proxy_client(upstream.url) as http, http.stream("GET", "/gated?n=4") as response:
        assert response.headers["x-gated"] == "1"
        chunks = response.aiter_raw()
        received = []
        for index in range(4):
            if index:
                upstream.go.put(None)  # only now may the upstream produce chunk `index`
            received.append(await asyncio.wait_for(anext(chunks), DEADLINE))
            assert await upstream.next_event() == ("sent", index)
        assert await anext(chunks, None) is None
    assert received == [f"chunk-{i}\n".encode() for i in range(4)]


async def test_chunks_in_equal_chunks_out(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/burst") as response:
        received = [chunk async for chunk in response.aiter_raw()]
    assert received == burst_chunks()


async def test_echo_model_stream_through_the_proxy_is_one_event_per_chunk() -> None:
    body = {"messages": [{"role": "user", "content": "a b c d"}], "max_tokens": 100, "stream": True}
    async with aserve(EchoModel()) as upstream_url, proxy_client(upstream_url) as http:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            chunks = [chunk async for chunk in response.aiter_raw()]
        async with AsyncOpenAI(
            base_url=str(http.base_url).rstrip("/") + "/v1", api_key="sk-test", max_retries=0
        ) as openai:
            stream = await openai.chat.completions.create(
                model="demo-echo", messages=body["messages"], max_tokens=6, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert len(chunks) == 100 + 3  # role chunk, 100 words, finish chunk, [DONE]
    assert all(chunk.startswith(b"data: ") and chunk.count(b"\n\n") == 1 for chunk in chunks)
    assert chunks[-1] == b"data: [DONE]\n\n"
    assert text == "a b c d a b"


async def _body_messages(proxy: UpstreamProxy, body: bytes) -> list[dict[str, Any]]:
    """The proxy called as an ASGI app: the body messages it sends for one chat request."""
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.sleep(DEADLINE)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "raw_path": None,
             "query_string": b"", "headers": [(b"content-type", b"application/json")]}  # fmt: skip
    await asyncio.wait_for(proxy(scope, receive, send), DEADLINE)
    return [message for message in sent if message["type"] == "http.response.body"]


async def test_a_whole_answer_is_one_last_body_message_and_a_stream_still_one_message_per_chunk() -> None:
    # The last chunk read is sent as the last message itself (one message, one write less per
    # answer); a stream's chunks still go one message each (G7).
    async with aserve(EchoModel()) as upstream_url:
        proxy = UpstreamProxy(upstream=upstream_url)
        try:
            for stream in (False, True):
                body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "a b c"}],
                                     "max_tokens": 3, "stream": stream})  # fmt: skip
                bodies = await _body_messages(proxy, body)
                assert bodies[-1].get("more_body", False) is False
                if not stream:
                    assert len(bodies) == 1 and orjson.loads(bodies[0]["body"])["object"] == "chat.completion"
                else:
                    events = [message["body"] for message in bodies if message["body"]]
                    assert len(events) == 1 + 3 + 1 + 1  # role, 3 words, finish, [DONE]
                    assert all(event.count(b"\n\n") == 1 for event in events)
        finally:
            await proxy.aclose()


# -- failures ----------------------------------------------------------------------------------------


async def test_upstream_down_is_a_502() -> None:
    async with proxy_client(f"http://127.0.0.1:{unused_port()}") as http:
        response = await http.post("/v1/chat/completions", json={"messages": []})
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "message": "The upstream server could not be reached.",
            "type": "server_error",
            "param": None,
            "code": "upstream_unavailable",
        }
    }


async def test_upstream_silent_past_the_timeout_is_a_504_and_is_hung_up_on(upstream: Upstream) -> None:
    settings = RetentionSettings(upstream=upstream.url, upstream_timeout=timedelta(seconds=0.2))
    async with aserve(UpstreamProxy(settings)) as proxy_url, httpx.AsyncClient(base_url=proxy_url) as http:
        response = await http.get("/stall")
    assert response.status_code == 504
    assert response.json()["error"] == {
        "message": "The upstream server did not answer in time.",
        "type": "server_error",
        "param": None,
        "code": "upstream_timeout",
    }
    assert await upstream.next_event() == ("received", None)
    assert await upstream.next_event() == ("disconnected", None)


@pytest.mark.parametrize(("route", "timeout"), [("/failmid", DEADLINE), ("/stallmid", 0.2)])
async def test_upstream_failing_mid_stream_truncates_the_client_stream(
    upstream: Upstream, route: str, timeout: float
) -> None:
    """After the status is sent, the only honest signal is a dropped connection, never a clean end."""
    received = []
    async with proxy_client(upstream.url, timeout=timeout) as http, http.stream("GET", route) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            async for chunk in response.aiter_raw():
                received.append(chunk)
    assert received == [b"first"]


# -- client disconnects ------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["h11", "proxy"], ids=["watcher task", "server signal"])
async def test_client_disconnect_mid_stream_closes_the_upstream_at_once(
    upstream: Upstream, caplog: pytest.LogCaptureFixture, server: str
) -> None:
    # The upstream is silent after its first chunk, so only a watcher on receive() can notice.
    async with proxy_client(upstream.url, server=server) as http:
        async with http.stream("GET", "/stallmid") as response:
            assert await anext(response.aiter_raw()) == b"first"
            assert await upstream.next_event() == ("sent-first", None)
        # Leaving the block mid-body closes the client connection.
        assert await upstream.next_event() == ("disconnected", None)
    assert error_records(caplog) == []


@pytest.mark.parametrize("server", ["h11", "proxy"], ids=["watcher task", "server signal"])
async def test_client_disconnect_before_the_response_starts_closes_the_upstream(
    upstream: Upstream, caplog: pytest.LogCaptureFixture, server: str
) -> None:
    async with proxy_client(upstream.url, server=server) as http:
        request = asyncio.ensure_future(http.post("/stall", content=b"{}"))
        assert await upstream.next_event() == ("received", None)
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        assert await upstream.next_event() == ("disconnected", None)
    assert error_records(caplog) == []


class UploadAborted(Exception):
    pass


@pytest.mark.parametrize("server", ["h11", "proxy"], ids=["watcher task", "server signal"])
async def test_client_disconnect_during_the_upload_closes_the_upstream(
    upstream: Upstream, caplog: pytest.LogCaptureFixture, server: str
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"part-1"
        assert await upstream.next_event() == ("chunk", b"part-1")
        raise UploadAborted

    async with proxy_client(upstream.url, server=server) as http:
        with pytest.raises(UploadAborted):
            await http.post("/upload", content=body())
        assert await upstream.next_event() == ("disconnected", None)
    assert error_records(caplog) == []


# -- construction and lifespan -----------------------------------------------------------------------


def test_settings_are_checked_at_construction() -> None:
    with pytest.raises(SettingsError, match="upstream_timeout"):
        UpstreamProxy(upstream="http://127.0.0.1:1", timeout=0)
    with pytest.raises(SettingsError, match="upstream"):
        UpstreamProxy(upstream="127.0.0.1:8000")


async def test_lifespan_opens_and_closes_the_client_and_a_request_reopens_it(upstream: Upstream) -> None:
    proxy = UpstreamProxy(upstream=upstream.url)
    replies = [message["type"] for message in await run_lifespan(proxy)]
    assert replies == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    async with asgi_client(proxy) as http:
        response = await http.get("/v1/models?x=1")
    await proxy.aclose()
    seen = response.json()
    assert (seen["raw_path"], seen["query_string"]) == ("/v1/models", "x=1")


# -- an upstream that dies mid-stream ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def dying_upstream(events: list[bytes]) -> AsyncIterator[str]:
    """A raw HTTP/1.1 upstream that starts a chunked SSE answer, sends ``events`` and then closes its
    socket without the final chunk: a server process killed mid-generation, with nothing logged by it."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
            0,
        )
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for event in events:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


def _response_events(response_id: str, *, cut_mid_event: bool = False) -> list[bytes]:
    response = {"id": response_id, "object": "response", "status": "in_progress", "model": "m", "output": [],
                "store": False, "previous_response_id": None}  # fmt: skip
    created = {"type": "response.created", "sequence_number": 0, "response": response}
    delta = {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1", "output_index": 0,
             "content_index": 0, "delta": "partial answ"}  # fmt: skip
    events = [
        b"event: response.created\ndata: " + orjson.dumps(created) + b"\n\n",
        b"event: response.output_text.delta\ndata: " + orjson.dumps(delta) + b"\n\n",
    ]
    return events + [b'event: response.output_text.delta\ndata: {"type": "response.out'] if cut_mid_event else events


async def test_upstream_dying_mid_responses_stream_ends_it_with_an_error_event_and_stores_nothing() -> None:
    from retention_middleware import RetentionMiddleware

    from support.asgi_tools import capture_all_logs

    with capture_all_logs() as logs:
        async with dying_upstream(_response_events("resp_dies")) as upstream_url:
            settings = RetentionSettings(upstream=upstream_url)
            app = RetentionMiddleware(UpstreamProxy(settings), settings)
            async with aserve(app) as proxy_url:
                client = AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="k", max_retries=0, timeout=DEADLINE)
                async with client:
                    stream = await client.responses.create(model="m", input="hi", stream=True)
                    events = [event async for event in stream]  # ends: the SDK does not wait forever
                async with httpx.AsyncClient(base_url=proxy_url, timeout=DEADLINE) as http:
                    stored = await http.get("/v1/responses/resp_dies", headers={"authorization": "Bearer k"})
    assert [event.type for event in events] == ["response.created", "response.output_text.delta", "error"]
    error = events[-1]
    assert (error.code, error.sequence_number) == ("upstream_disconnected", 2)  # type: ignore[union-attr]
    assert stored.status_code == 404
    access = [orjson.loads(line) for line in logs.access_lines()]
    assert access[0]["error"] == "upstream_disconnected" and access[0]["stored"] is False
    text = logs.text()
    assert "Traceback" not in text
    (line,) = [line for line in text.splitlines() if "upstream_disconnected" in line and "access" not in line]
    assert line.startswith("WARNING retention_middleware.proxy upstream http://127.0.0.1:")
    assert line.endswith(": 200 upstream_disconnected while reading the response body")


async def test_upstream_dying_mid_event_still_ends_the_stream_with_a_parseable_error_event() -> None:
    # Chunks are never held back, so the client has part of an event: a blank line ends it (an SDK
    # rejects that remnant) and the error event after it stands on its own; the stream completes.
    from retention_middleware import RetentionMiddleware

    async with dying_upstream(_response_events("resp_cut", cut_mid_event=True)) as upstream_url:
        settings = RetentionSettings(upstream=upstream_url)
        app = RetentionMiddleware(UpstreamProxy(settings), settings)
        async with aserve(app) as proxy_url, httpx.AsyncClient(base_url=proxy_url, timeout=DEADLINE) as http:
            answer = await http.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    blocks = answer.content.split(b"\n\n")
    assert blocks[-1] == b"" and blocks[-3].endswith(b'"type": "response.out')
    name, data = blocks[-2].split(b"\n")
    assert name == b"event: error"
    assert orjson.loads(data.removeprefix(b"data: "))["code"] == "upstream_disconnected"


async def test_upstream_dying_mid_chat_stream_cuts_the_client_off_with_one_log_line() -> None:
    from retention_middleware import RetentionMiddleware

    from support.asgi_tools import capture_all_logs

    chunk = b'data: {"id": "c", "object": "chat.completion.chunk", "choices": []}\n\n'
    with capture_all_logs() as logs:
        async with dying_upstream([chunk]) as upstream_url:
            settings = RetentionSettings(upstream=upstream_url)
            app = RetentionMiddleware(UpstreamProxy(settings), settings)
            async with aserve(app) as proxy_url, httpx.AsyncClient(base_url=proxy_url, timeout=DEADLINE) as http:
                body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
                received = []
                async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                    with pytest.raises(httpx.RemoteProtocolError):  # never a stream that looks complete
                        async for piece in response.aiter_raw():
                            received.append(piece)
    assert b"".join(received) == chunk
    access = [orjson.loads(line) for line in logs.access_lines()]
    assert access[0]["error"] == "upstream_disconnected"
    assert "Traceback" not in logs.text()
    assert ": 200 upstream_disconnected while reading the response body" in logs.text()
