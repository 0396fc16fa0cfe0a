"""Choosing the backend: the setting, the probe ``auto`` makes, and what the proxy's banner says."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from retention_middleware import RetentionMiddleware
from retention_middleware._types import Receive, Scope, Send
from retention_middleware.backends.choice import PROBE_SCOPE, ResponsesBackend, probe
from retention_middleware.backends.upstream_call import NATIVE, ChatCall
from retention_middleware.demo import EchoModel
from retention_middleware.observability.endpoints import ProbeEndpoints
from retention_middleware.proxy import cli
from retention_middleware.proxy.backend_probe import resolved_backend
from retention_middleware.settings import RetentionSettings, SettingsError

from support.asgi_tools import answer_lifespan, read_request_body
from support.chat_upstream import ChatOnlyUpstream
from support.servers import serve, unused_port


class StatusApp:
    """Answers every request with one status, counting the requests."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.calls = 0
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        self.calls += 1
        self.bodies.append(await read_request_body(receive))
        await asyncio.sleep(0.01)  # long enough for concurrent first requests to pile up
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(404, "chat"), (405, "chat"), (400, "responses"), (422, "responses"), (200, "responses"),
     (401, None), (500, None), (502, None)],
)  # fmt: skip
async def test_the_probe_reads_the_status(status: int, verdict: str | None) -> None:
    app = StatusApp(status)
    assert await probe(app) == verdict
    assert app.bodies == [b"{}"]  # no content, no generation


async def test_the_probe_of_real_apps() -> None:
    assert await probe(ChatOnlyUpstream()) == "chat"
    assert await probe(EchoModel()) == "responses"


async def test_concurrent_first_requests_share_one_probe_and_the_answer_is_kept() -> None:
    app = StatusApp(404)
    backend = ResponsesBackend(app, "auto")
    assert backend.describe() == "auto (upstream not asked yet)"
    calls = await asyncio.gather(*(backend.call_for(PROBE_SCOPE, {"model": "m", "input": "x"}) for _ in range(8)))
    assert all(isinstance(call, ChatCall) for call in calls)
    assert app.calls == 1
    assert backend.describe() == "auto: chat"


async def test_an_answer_that_decides_nothing_is_asked_again() -> None:
    app = StatusApp(503)
    backend = ResponsesBackend(app, "auto")
    assert await backend.call_for(PROBE_SCOPE, {"input": "x"}) is NATIVE  # served natively meanwhile
    app.status = 404
    assert isinstance(await backend.call_for(PROBE_SCOPE, {"input": "x"}), ChatCall)
    assert app.calls == 2


async def test_fixed_settings_never_ask() -> None:
    app = StatusApp(404)
    assert await ResponsesBackend(app, "responses").call_for(PROBE_SCOPE, {"input": "x"}) is NATIVE
    assert isinstance(await ResponsesBackend(app, "chat").call_for(PROBE_SCOPE, {"input": "x"}), ChatCall)
    assert app.calls == 0


def test_the_setting_is_checked_and_read_from_the_environment() -> None:
    assert RetentionSettings().responses_backend == "responses"  # in-process default: today's behaviour
    assert RetentionSettings.from_env({"RETENTION_RESPONSES_BACKEND": "chat"}).responses_backend == "chat"
    with pytest.raises(SettingsError, match="RETENTION_RESPONSES_BACKEND"):
        RetentionSettings(responses_backend="tgi")  # type: ignore[arg-type]


def _banner_backend(args: list[str], env: dict[str, str]) -> tuple[Any, str]:
    options = cli._options(args, env)
    options.settings, options.backend_note = resolved_backend(options.settings, demo=options.demo)
    line = [line for line in cli._banner(options, 8080).splitlines() if "responses_backend" in line]
    return options, line[0].strip()


def test_the_proxy_asks_at_start_up_and_the_banner_says_what_it_found() -> None:
    with serve(ChatOnlyUpstream()) as url:
        options, line = _banner_backend(["--upstream", url], {})
    assert options.settings.responses_backend == "chat"
    assert line == "responses_backend: chat (auto: the upstream does not serve /v1/responses)"
    options, line = _banner_backend(["--demo"], {})
    assert line == "responses_backend: responses (auto: the upstream serves /v1/responses)"


def test_the_flag_wins_and_an_unreachable_upstream_leaves_auto_for_the_first_request() -> None:
    options, line = _banner_backend(["--responses-backend", "chat"], {"RETENTION_RESPONSES_BACKEND": "responses"})
    assert line == "responses_backend: chat"
    options, line = _banner_backend(["--upstream", f"http://127.0.0.1:{unused_port()}"], {})
    assert options.settings.responses_backend == "auto"
    assert line.startswith("responses_backend: auto (")


# -- /readyz says which backend is in use ---------------------------------------------------------


async def test_readyz_names_the_backend_in_use_and_follows_what_auto_finds() -> None:
    middleware = RetentionMiddleware(ChatOnlyUpstream(), RetentionSettings(responses_backend="auto"))
    describe = middleware.responses_backend.describe
    app = ProbeEndpoints(middleware, middleware.store, upstream=None, responses_backend=describe)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        before = (await client.get("/readyz")).json()
        assert before == {
            "status": "ready", "reason": None, "checks": {"store": "ok"},
            "responses_backend": "auto (upstream not asked yet)",
        }  # fmt: skip
        created = await client.post("/v1/responses", json={"model": "m", "input": "hello there"})
        assert created.status_code == 200
        assert created.json()["output"][0]["content"][0]["text"] == "echo: hello there"  # translated to chat
        assert (await client.get("/readyz")).json()["responses_backend"] == "auto: chat"
    assert (await middleware.readiness()).to_dict()["responses_backend"] == "auto: chat"
    fixed = RetentionMiddleware(EchoModel(), RetentionSettings(responses_backend="chat"))
    assert (await fixed.readiness()).responses_backend == "chat"


def test_the_proxys_readyz_names_the_backend_its_banner_names() -> None:
    async def readyz(app: Any) -> Any:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return (await client.get("/readyz")).json()

    with serve(ChatOnlyUpstream()) as url:
        options, line = _banner_backend(["--upstream", url], {})  # a sync test: start-up runs its own loop
        ready = asyncio.run(readyz(cli._app(options)))
    assert line == "responses_backend: chat (auto: the upstream does not serve /v1/responses)"
    assert ready == {
        "status": "ready", "reason": None, "checks": {"store": "ok", "upstream": "ok"}, "responses_backend": "chat",
    }  # fmt: skip
