"""Liveness and readiness: answered by the proxy itself, flipping with the store and the upstream."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.demo import EchoModel
from retention_middleware.observability.endpoints import ProbeEndpoints

from support.mongo_fixtures import wait_until
from support.mongo_server import MongoTestServer
from support.proxy_process import ProxyProcess
from support.servers import aserve, unused_port


class Recording:
    """The app behind the probes: it must never see a probe request."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.echo = EchoModel()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.echo(scope, receive, send)


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_readiness_flips_to_503_when_mongodb_stops_and_back_when_it_restarts(
    mongo_server: MongoTestServer, mongo_db_name: str
) -> None:
    settings = RetentionSettings(
        store=mongo_server.uri, mongo_db=mongo_db_name, mongo_timeout=timedelta(seconds=1), tenant_secret="h" * 32
    )
    upstream = Recording()
    middleware = RetentionMiddleware(upstream, settings)
    async with aserve(EchoModel()) as upstream_url:
        app = ProbeEndpoints(middleware, middleware.store, upstream=upstream_url)
        async with client_for(app) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"status": "ready", "reason": None, "checks": {"store": "ok", "upstream": "ok"}}
            mongo_server.stop()

            async def not_ready() -> bool:
                return (await client.get("/readyz")).status_code == 503

            await wait_until(not_ready, timeout=15)
            down = await client.get("/readyz")
            assert down.json() == {
                "status": "not_ready",
                "reason": "store_unavailable",
                "checks": {"store": "store_unavailable", "upstream": "ok"},
            }
            assert (await middleware.readiness(timeout=2)).reason == "store_unavailable"
            assert (await client.get("/healthz")).status_code == 200  # alive all the same
            mongo_server.restart()

            async def ready_again() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await wait_until(ready_again, timeout=15)
            assert (await middleware.readiness()).ready
    await middleware.store.close()
    assert upstream.paths == []  # no probe was ever forwarded


async def test_an_unreachable_upstream_makes_the_proxy_not_ready() -> None:
    middleware = RetentionMiddleware(EchoModel(), RetentionSettings())
    app = ProbeEndpoints(middleware, middleware.store, upstream=f"http://127.0.0.1:{unused_port()}")
    async with client_for(app) as client:
        answer = await client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["reason"] == "upstream_unavailable"
    assert answer.json()["checks"] == {"store": "ok", "upstream": "upstream_unavailable"}


async def test_probe_paths_are_configurable_and_other_methods_are_forwarded() -> None:
    upstream = Recording()
    app = ProbeEndpoints(upstream, RetentionMiddleware(EchoModel()).store, upstream=None, health_path="/live",
                         ready_path="/ready", metrics_path="/prom")  # fmt: skip
    async with client_for(app) as client:
        assert (await client.get("/live")).json() == {"status": "ok"}
        assert (await client.get("/ready")).json()["status"] == "ready"
        assert (await client.get("/prom")).headers["content-type"].startswith("text/plain")
        await client.get("/healthz")  # no longer a probe path: forwarded
        await client.post("/ready", json={})  # a POST is not a probe
    assert upstream.paths == ["/healthz", "/ready"]


def test_the_proxy_answers_probes_itself(run_proxy: Callable[..., ProxyProcess]) -> None:
    proxy = run_proxy("--demo", env={"RETENTION_READY_PATH": "/ready"})
    with httpx.Client(base_url=proxy.url, timeout=20) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/ready").json() == {
            "status": "ready", "reason": None, "checks": {"store": "ok"}, "responses_backend": "responses",
        }  # fmt: skip
        assert client.post("/v1/chat/completions", json={"model": "demo", "messages": []}).status_code == 200
    # only the chat request is a request of the product: one access line, no probe lines
    assert [record["path"] for record in proxy.access_records(1)] == ["/v1/chat/completions"]
    assert len(proxy.stdout.seen) == 1
