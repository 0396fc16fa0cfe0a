"""Every answer the proxy makes itself has an error code in the access log, and a 502/504 one WARNING line."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.proxy.forwarder import UpstreamProxy

from support.asgi_tools import read_request_body
from support.servers import aserve, unused_port

CANARY = "CANARY-upstream-errors-7d1"


class Upstream:
    """``/slow`` streams a chunk every 50 ms until released; ``/silent`` never answers;
    ``/status/N`` answers N; anything else answers 200 at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.slow_started = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/silent":
            for _ in range(400):  # bounded: the server's graceful shutdown cancels it anyway
                if self.release.is_set():
                    break
                await asyncio.sleep(0.05)
            return
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b'{"error": "upstream text ' + CANARY.encode() + b'"}'})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if path == "/stall-mid-body":
            await send({"type": "http.response.body", "body": b"first part", "more_body": True})
            for _ in range(400):
                if self.release.is_set():
                    break
                await asyncio.sleep(0.05)
            return
        if path == "/slow":
            self.slow_started.set()
            for _ in range(400):
                if self.release.is_set():
                    break
                await send({"type": "http.response.body", "body": b".", "more_body": True})
                await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    app = Upstream()
    async with aserve(app) as url:
        try:
            yield app, url
        finally:
            app.release.set()


def proxy_app(url: str, **overrides: Any) -> Any:
    settings = RetentionSettings(upstream=url, upstream_timeout=timedelta(seconds=1), **overrides)
    return RetentionMiddleware(UpstreamProxy(settings), settings)


def access_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "retention_middleware.access"]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "retention_middleware.proxy"]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="retention_middleware")


async def test_upstream_down_is_502_upstream_unavailable_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    origin = f"http://127.0.0.1:{unused_port()}"
    async with aserve(proxy_app(origin)) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        answer = await client.post(f"/v1/chat/completions?q={CANARY}", json={"model": "m", "messages": []})
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstream_unavailable"
    (record,) = access_records(caplog)
    assert record["error"] == "upstream_unavailable" and record["status"] == 502
    (line,) = warnings_of(caplog)
    assert line == f"upstream {origin}: 502 upstream_unavailable while connecting"
    assert CANARY not in caplog.text


async def test_a_silent_upstream_is_504_upstream_timeout(
    upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, origin = upstream
    async with aserve(proxy_app(origin)) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        answer = await client.get("/silent")
    assert answer.status_code == 504 and answer.json()["error"]["code"] == "upstream_timeout"
    assert access_records(caplog)[0]["error"] == "upstream_timeout"
    assert warnings_of(caplog) == [f"upstream {origin}: 504 upstream_timeout while waiting for the response headers"]


async def test_a_wait_for_the_connection_pool_is_504_upstream_pool_exhausted(
    upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture
) -> None:
    app, origin = upstream
    async with aserve(proxy_app(origin, upstream_max_connections=1)) as url:
        async with (
            httpx.AsyncClient(base_url=url, timeout=20) as first,
            httpx.AsyncClient(base_url=url, timeout=20) as second,
        ):
            async with first.stream("GET", "/slow") as slow:
                assert slow.status_code == 200
                await asyncio.to_thread(app.slow_started.wait, 10)
                # The only pooled connection is busy streaming: the next request waits for the pool.
                blocked = await second.get("/fast")
                app.release.set()
                await slow.aread()
    assert blocked.status_code == 504 and blocked.json()["error"]["code"] == "upstream_pool_exhausted"
    by_path = {record["path"]: record for record in access_records(caplog)}
    assert by_path["/fast"]["error"] == "upstream_pool_exhausted"
    assert by_path["/slow"]["error"] is None and by_path["/slow"]["status"] == 200
    assert warnings_of(caplog) == [
        f"upstream {origin}: 504 upstream_pool_exhausted while waiting for a free pooled connection"
    ]


@pytest.mark.parametrize("status", [404, 429, 500, 503])
async def test_an_upstream_error_status_is_upstream_status_passed_through(
    upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture, status: int
) -> None:
    _, origin = upstream
    async with aserve(proxy_app(origin)) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        answer = await client.get(f"/status/{status}")
    assert answer.status_code == status and CANARY in answer.text  # the upstream's own answer, unchanged
    (record,) = access_records(caplog)
    assert record["error"] == "upstream_status" and record["status"] == status
    assert warnings_of(caplog) == []  # not our failure: no warning
    assert CANARY not in "\n".join(r.getMessage() for r in caplog.records)


async def test_a_success_has_no_error_code(upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture) -> None:
    _, origin = upstream
    async with aserve(proxy_app(origin)) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        assert (await client.get("/fast")).status_code == 200
    assert access_records(caplog)[0]["error"] is None


async def test_an_upstream_silent_mid_body_cuts_the_answer_and_logs_upstream_timeout(
    upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, origin = upstream
    async with aserve(proxy_app(origin)) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        with pytest.raises(httpx.RemoteProtocolError):  # a truncated body, never one that looks complete
            await client.get("/stall-mid-body")
    (record,) = access_records(caplog)
    assert record["status"] == 200 and record["error"] == "upstream_timeout"
    assert warnings_of(caplog) == [f"upstream {origin}: 200 upstream_timeout while reading the response body"]


class CrashesOnTheProbe:
    """Serves ``/v1/responses`` but fails on the probe's empty ``{}`` with a 500, as ``transformers
    serve`` does (a KeyError on ``input``); a real request gets a response object."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if orjson.loads(await read_request_body(receive)) == {}:
            await send({"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"21")]})
            await send({"type": "http.response.body", "body": b"Internal Server Error"})
            return
        answer = {"id": "resp_real", "object": "response", "status": "completed", "model": "m", "output": []}
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": orjson.dumps(answer)})


async def test_the_backend_probes_failure_is_not_the_requests_error(caplog: pytest.LogCaptureFixture) -> None:
    # The auto backend's probe runs inside the client's request; its 500 decides nothing, and the
    # request itself, answered 200, must not be logged with the probe's upstream_status.
    async with aserve(CrashesOnTheProbe()) as origin:
        app = proxy_app(origin, responses_backend="auto", store="memory")
        async with aserve(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
            answer = await client.post("/v1/responses", json={"model": "m", "input": "hi", "store": False})
    assert answer.status_code == 200 and answer.json()["id"] == "resp_real"
    (record,) = access_records(caplog)
    assert (record["status"], record["error"]) == (200, None)
