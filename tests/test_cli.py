"""``retention-proxy`` as a user runs it: a subprocess on a loopback port, clients speaking HTTP to it.

Each test starts the real command (``python -m retention_middleware.proxy.cli``) with ``--port 0`` and reads
the port from the first line it prints on stderr. Upstreams are ASGI apps under uvicorn in this
process; the gated ones wait on a ``threading.Event`` the test sets, and every side writes what it
did into one ``Timeline``, so the tests assert the order of events, never durations. Every wait has a
deadline, and every process is stopped in teardown.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from retention_middleware import __version__
from retention_middleware._types import Receive, Scope, Send
from retention_middleware.demo import EchoModel
from retention_middleware.settings import RetentionSettings, SettingsError, parse_duration

from support.asgi_tools import answer_lifespan, read_request_body
from support.proxy_process import ProxyProcess, proxy_env
from support.servers import serve, unused_port

DEADLINE = 10.0
TENANT_SECRET = "cli-test-tenant-secret-0123456789"
COMMAND = [sys.executable, "-m", "retention_middleware.proxy.cli"]
BANNER = re.compile(r"^retention-proxy (\S+) listening on (http://[\d.]+:(\d+))$")


class Timeline:
    """Events from the test, the upstream's thread and the proxy, in the order they happened."""

    def __init__(self) -> None:
        self._events: list[str] = []
        self._changed = threading.Condition()

    def add(self, event: str) -> None:
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    def wait_for(self, event: str, timeout: float = DEADLINE) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: event in self._events, timeout):
                pytest.fail(f"{event!r} did not happen within {timeout} s; timeline: {self._events}")

    @property
    def events(self) -> list[str]:
        with self._changed:
            return list(self._events)


def sse_chunk(content: str | None, **extra: Any) -> bytes:
    """A chat chunk; ``None`` makes the usage-only chunk (no choices) of ``include_usage``."""
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    chunk = {"id": "chatcmpl-gated", "object": "chat.completion.chunk", "model": "gated", "choices": choices}
    return b"data: " + orjson.dumps({**chunk, **extra}) + b"\n\n"


class GatedUpstream:
    """A chat-completions server whose pace the test controls; the request's ``model`` picks the script.

    ``gated``: the first chunk at once, the rest only after ``gate`` is set. ``stall``: nothing at all
    until ``gate`` is set. ``endless``: one chunk, then wait for the client to go away.
    """

    def __init__(self) -> None:
        self.timeline = Timeline()
        self.gate = threading.Event()
        self.include_usage = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        body = orjson.loads(await read_request_body(receive))
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        await getattr(self, f"_{body['model']}")(receive, send)

    async def _wait_gate(self) -> None:
        if not await asyncio.to_thread(self.gate.wait, DEADLINE):
            raise RuntimeError("the test never opened the gate")

    async def _start(self, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

    # Each event is recorded just before the send it names: once sent, the client may record its
    # receipt before this thread runs again.

    async def _gated(self, receive: Receive, send: Send) -> None:
        await self._start(send)
        self.timeline.add("upstream sends first")
        await send({"type": "http.response.body", "body": sse_chunk("first"), "more_body": True})
        await self._wait_gate()
        self.timeline.add("upstream sends the rest")
        await send({"type": "http.response.body", "body": sse_chunk("second"), "more_body": True})
        if self.include_usage:
            usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            await send({"type": "http.response.body", "body": sse_chunk(None, usage=usage), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def _stall(self, receive: Receive, send: Send) -> None:
        self.timeline.add("upstream stalling")
        await self._wait_gate()
        await self._start(send)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _endless(self, receive: Receive, send: Send) -> None:
        await self._start(send)
        self.timeline.add("upstream sends first")
        await send({"type": "http.response.body", "body": sse_chunk("first"), "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        self.timeline.add("upstream saw disconnect")


def chat(model: str, content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


class Proxy(ProxyProcess):
    """One ``retention-proxy`` process, with what the command-line tests read besides its url: its
    version, the settings its banner lists, and its exit status."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(*args, env=env)
        match = BANNER.match(self.banner)  # the whole first line, and plain http: no TLS flag here
        if match is None:
            self.stop()
            pytest.fail(f"the banner is not the first line as written: {self.banner!r}")
        self.version = match.group(1)

    def banner_settings(self) -> dict[str, str]:
        """The settings the banner lists (``  name: value`` lines), read up to the server's start-up."""
        settings: dict[str, str] = {}
        self.stderr.until(lambda line: "Application startup complete" in line)
        for line in self.stderr.seen[1:]:
            if line.startswith("  ") and ": " in line:
                name, value = line.strip().split(": ", 1)
                settings.setdefault(name, value)
        return settings

    def wait(self, timeout: float = DEADLINE) -> int:
        return self.process.wait(timeout)


@pytest.fixture
def start_proxy() -> Iterator[Any]:
    """``start_proxy(*args, env={...})`` starts a proxy; all of them are stopped after the test."""
    proxies: list[Proxy] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Proxy:
        proxy = Proxy(*args, env=env)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def echo_url() -> Iterator[str]:
    with serve(EchoModel()) as url:
        yield url


@pytest.fixture
def gated() -> Iterator[tuple[GatedUpstream, str]]:
    upstream = GatedUpstream()
    with serve(upstream) as url:
        try:
            yield upstream, url
        finally:
            upstream.gate.set()  # before the server stops: nothing in its thread is left waiting


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command run to completion (for start-up failures)."""
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=60, env=proxy_env(**(env or {})),
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def sse_data(text: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded (``[DONE]`` kept as a string)."""
    payloads: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            payloads.append(data if data == "[DONE]" else orjson.loads(data))
    return payloads


# -- over real sockets, in front of the echo model ---------------------------------------------------


def test_chat_and_responses_through_the_proxy_with_one_access_line_each(start_proxy: Any, echo_url: str) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    proxy = start_proxy("--upstream", echo_url)
    assert proxy.version == __version__
    with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
        answer = client.post(f"/v1/chat/completions?trace={canary}", json=chat("demo-echo", f"say {canary}"))
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"] == f"say {canary}"

        with client.stream(
            "POST", "/v1/chat/completions", json=chat("demo-echo", f"stream {canary}", stream=True)
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = sse_data(r.read().decode())
        assert events[-1] == "[DONE]"
        assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"]) == (
            f"stream {canary}"
        )
        # The client did not ask for usage, so it sees no usage chunk even though the proxy metered it.
        assert all(not event.get("usage") for event in events[:-1])

        body = {"model": "demo-echo", "input": f"respond {canary}", "stream": True}
        with client.stream("POST", "/v1/responses", json=body) as r:
            assert r.status_code == 200
            response_events = sse_data(r.read().decode())
        assert response_events[-1]["type"] == "response.completed"
        assert response_events[-1]["response"]["output"][0]["content"][0]["text"] == f"respond {canary}"

    records = proxy.access_records(3)
    assert [(r["method"], r["path"], r["status"], r["stream"]) for r in records] == [
        ("POST", "/v1/chat/completions", 200, False),
        ("POST", "/v1/chat/completions", 200, True),
        ("POST", "/v1/responses", 200, True),
    ]
    assert [r["usage"]["input_tokens"] for r in records] == [2, 2, 2]
    assert [r["usage"]["output_tokens"] for r in records] == [2, 2, 2]
    assert all(r["model"] == "demo-echo" and r["bytes_out"] > 0 for r in records)
    assert records[2]["stored"] is True
    everything = "\n".join(proxy.stdout.seen)
    assert canary not in everything and "trace=" not in everything


def test_each_chunk_crosses_the_proxy_before_the_upstream_sends_the_next(
    start_proxy: Any, gated: tuple[GatedUpstream, str]
) -> None:
    upstream, url = gated
    proxy = start_proxy("--upstream", url)
    with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
        with client.stream("POST", "/v1/chat/completions", json=chat("gated", stream=True)) as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            received = b""
            while b"first" not in received:
                received += next(chunks)
            upstream.timeline.add("client received first")
            assert b"second" not in received
            upstream.gate.set()
            rest = b"".join(chunks)
    assert upstream.timeline.events == ["upstream sends first", "client received first", "upstream sends the rest"]
    assert b"second" in rest and rest.endswith(b"data: [DONE]\n\n")
    # The middleware asked the upstream for usage, metered it and removed it for this client.
    assert b"usage" not in received + rest
    assert proxy.access_records(1)[0]["usage"]["total_tokens"] == 5


def test_upstream_down_is_a_502(start_proxy: Any) -> None:
    proxy = start_proxy("--upstream", f"http://127.0.0.1:{unused_port()}")
    with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
        response = client.post("/v1/chat/completions", json=chat("demo-echo"))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert proxy.access_records(1)[0]["status"] == 502


def test_upstream_silent_past_the_timeout_is_a_504(start_proxy: Any, gated: tuple[GatedUpstream, str]) -> None:
    upstream, url = gated
    proxy = start_proxy("--upstream", url, "--upstream-timeout", "1s")
    with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
        response = client.post("/v1/chat/completions", json=chat("stall"))
    upstream.timeline.add("client answered")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    # The answer came while the upstream was still holding the request, not after it gave up.
    assert upstream.timeline.events == ["upstream stalling", "client answered"]


def test_client_disconnect_mid_stream_reaches_the_upstream(start_proxy: Any, gated: tuple[GatedUpstream, str]) -> None:
    upstream, url = gated
    proxy = start_proxy("--upstream", url)
    with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
        with client.stream("POST", "/v1/chat/completions", json=chat("endless", stream=True)) as response:
            chunks = response.iter_raw()
            received = b""
            while b"first" not in received:
                received += next(chunks)
            upstream.timeline.add("client closing")
        # Leaving the block mid-body closes the connection: the client has gone away.
    upstream.timeline.wait_for("upstream saw disconnect")
    assert upstream.timeline.events == ["upstream sends first", "client closing", "upstream saw disconnect"]
    record = proxy.access_records(1)[0]
    assert (record["path"], record["error"]) == ("/v1/chat/completions", "client_disconnected")


# -- --demo: the whole loop with nothing else running ------------------------------------------------


def test_demo_serves_chat_streams_and_the_stored_response_lifecycle(start_proxy: Any) -> None:
    proxy = start_proxy("--demo")
    with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
        answer = client.post("/v1/chat/completions", json=chat("demo-echo", "one two three"))
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"] == "one two three"
        assert answer.json()["usage"]["completion_tokens"] == 3

        body = {"model": "demo-echo", "input": "keep this answer", "stream": True}
        with client.stream("POST", "/v1/responses", json=body) as r:
            events = sse_data(r.read().decode())
        completed = events[-1]
        assert completed["type"] == "response.completed"
        response_id = completed["response"]["id"]

        stored = client.get(f"/v1/responses/{response_id}")
        assert stored.status_code == 200
        assert stored.json()["id"] == response_id
        assert stored.json()["output"] == completed["response"]["output"]
        assert stored.json()["store"] is True

        deleted = client.delete(f"/v1/responses/{response_id}")
        assert deleted.status_code == 200
        assert deleted.json() == {"id": response_id, "object": "response", "deleted": True}

        gone = client.get(f"/v1/responses/{response_id}")
        assert gone.status_code == 404
        assert gone.json()["error"]["message"] == f"Response with id '{response_id}' not found."
        assert gone.json()["error"]["type"] == "invalid_request_error"

    records = proxy.access_records(5)
    assert [(r["method"], r["status"]) for r in records] == [
        ("POST", 200), ("POST", 200), ("GET", 200), ("DELETE", 200), ("GET", 404),
    ]  # fmt: skip
    assert records[1]["stored"] is True
    assert records[1]["usage"]["output_tokens"] == 3
    assert proxy.banner_settings()["upstream"] == "built-in echo model (--demo)"
    assert "127.0.0.1:8000" not in "\n".join(proxy.stderr.seen)  # the configured upstream is not in use


# -- configuration: flags, their variables, and what is wrong with them -----------------------------


def test_an_unknown_flag_exits_2_and_names_it() -> None:
    result = run_cli("--demo", "--retention-days", "3")
    assert result.returncode == 2
    assert "--retention-days" in result.stderr
    assert "usage: retention-proxy" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--ttl", "a month"], {}), ([], {"RETENTION_TTL": "a month"}), (["--ttl", "0s"], {})],
    ids=["flag", "variable", "zero"],
)
def test_a_malformed_ttl_exits_2_naming_the_setting_and_the_fix(args: list[str], env: dict[str, str]) -> None:
    result = run_cli("--demo", *args, env=env)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert message.startswith("retention-proxy: error: ")
    assert "--ttl" in message and "RETENTION_TTL" in message
    assert "30d" in message  # how to write it
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_an_unreachable_mongodb_exits_nonzero_naming_the_store_without_its_password() -> None:
    port = unused_port()
    password = f"pw-{uuid.uuid4().hex}"
    result = run_cli(
        "--demo",
        "--store",
        f"mongodb://operator:{password}@127.0.0.1:{port}/",
        env={"RETENTION_MONGO_TIMEOUT": "1s", "RETENTION_TENANT_SECRET": TENANT_SECRET},
    )
    assert result.returncode == 1
    assert f"mongodb://operator:***@127.0.0.1:{port}/" in result.stderr
    assert "cannot be reached" in result.stderr and "--store" in result.stderr
    assert password not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stderr


def test_a_mongodb_rejecting_the_credentials_exits_nonzero_without_the_password(mongo_server: Any) -> None:
    """The wire-protocol test server has no authentication, so credentials cannot succeed against it."""
    password = f"pw-{uuid.uuid4().hex}"
    uri = mongo_server.uri.replace("mongodb://", f"mongodb://operator:{password}@")
    env = {"RETENTION_MONGO_TIMEOUT": "2s", "RETENTION_TENANT_SECRET": TENANT_SECRET}
    result = run_cli("--demo", "--store", uri, env=env)
    assert result.returncode == 1
    assert "mongodb://operator:***@" in result.stderr
    assert password not in result.stderr + result.stdout


def test_policy_comes_from_the_environment_and_a_flag_overrides_it(start_proxy: Any) -> None:
    zero = start_proxy("--demo", env={"RETENTION_POLICY": "zero"})
    overridden = start_proxy("--demo", "--policy", "standard", env={"RETENTION_POLICY": "zero"})
    assert zero.banner_settings()["policy"] == "zero"
    assert overridden.banner_settings()["policy"] == "standard"
    statuses = []
    for proxy in (zero, overridden):
        with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
            created = client.post("/v1/responses", json={"model": "demo-echo", "input": "remember me"})
            assert created.status_code == 200
            statuses.append(client.get(f"/v1/responses/{created.json()['id']}").status_code)
            follow_up = {"model": "demo-echo", "input": "and?", "previous_response_id": created.json()["id"]}
            statuses.append(client.post("/v1/responses", json=follow_up).status_code)
    # zero: nothing stored, continuation refused; standard: stored and continued.
    assert statuses == [404, 400, 200, 200]


def _is_duration(text: str, expected: timedelta) -> bool:
    """Banner durations as the settings layer spells them ("12h", or timedelta's "12:00:00")."""
    try:
        return parse_duration(text) == expected
    except SettingsError:
        return text == str(expected)


def test_the_banner_shows_the_effective_settings_and_no_secret(
    start_proxy: Any, mongo_uri: str, mongo_db_name: str
) -> None:
    secret = f"tenant-secret-{uuid.uuid4().hex}"
    api_key = f"sk-{uuid.uuid4().hex}"
    proxy = start_proxy(
        "--demo", "--mongo-db", mongo_db_name, "--ttl", "12h",
        env={"RETENTION_STORE": mongo_uri, "RETENTION_TENANT_SECRET": secret, "RETENTION_POLICY": "standard"},
    )  # fmt: skip
    settings = proxy.banner_settings()
    # mongo_uri, password hidden
    assert settings["store"] == RetentionSettings(store=mongo_uri, tenant_secret=secret).public_view()["store"]
    assert settings["mongo_db"] == mongo_db_name
    assert _is_duration(settings["ttl"], timedelta(hours=12))
    assert settings["policy"] == "standard"
    assert settings["tenant_secret"] == "(set)"
    with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
        headers = {"authorization": f"Bearer {api_key}"}
        created = client.post("/v1/responses", json={"model": "demo-echo", "input": "stored"}, headers=headers)
        assert created.status_code == 200
        assert client.get(f"/v1/responses/{created.json()['id']}", headers=headers).status_code == 200
        assert client.get(f"/v1/responses/{created.json()['id']}").status_code == 404  # another tenant
    tenant = proxy.access_records(1)[0]["tenant"]
    assert tenant not in ("anonymous", api_key)
    output = "\n".join(proxy.stderr.seen + proxy.stdout.seen)
    assert secret not in output and api_key not in output


def test_the_banner_hides_a_mongodb_password() -> None:
    """The banner itself, built in-process: a store with credentials cannot start against the test server."""
    from retention_middleware.proxy import cli

    uri = "mongodb://operator:hunter2-pw@db.internal:27017/?authSource=admin"
    options = cli._options(["--store", uri, "--tenant-header", "x-org-id"], {})
    banner = cli._banner(options, 8080)
    assert "store: mongodb://operator:***@db.internal:27017/?authSource=admin" in banner
    assert "hunter2-pw" not in banner
    assert RetentionSettings().public_view()["tenant_secret"] == "(unset)"


# -- shutdown ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_drains_the_stream_in_flight_then_exits_0(
    start_proxy: Any, gated: tuple[GatedUpstream, str], stop_signal: signal.Signals
) -> None:
    upstream, url = gated
    proxy = start_proxy("--upstream", url)
    with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
        with client.stream("POST", "/v1/chat/completions", json=chat("gated", stream=True)) as response:
            chunks = response.iter_raw()
            received = b""
            while b"first" not in received:
                received += next(chunks)
            proxy.process.send_signal(stop_signal)
            proxy.stderr.until(lambda line: "Shutting down" in line)
            upstream.timeline.add("proxy shutting down")
            upstream.gate.set()
            received += b"".join(chunks)
    assert upstream.timeline.events == ["upstream sends first", "proxy shutting down", "upstream sends the rest"]
    assert b"second" in received and received.endswith(b"data: [DONE]\n\n")
    assert proxy.wait() == 0
    assert not any("Traceback" in line for line in proxy.stderr.to_end())
    record = proxy.access_records(1)[0]
    assert (record["status"], record["error"], record["usage"]["total_tokens"]) == (200, None, 5)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_access_lines_held_for_their_batch_are_all_written_when_the_proxy_stops(
    start_proxy: Any, stop_signal: signal.Signals
) -> None:
    # A flush interval far longer than the test: only the shutdown can have written the lines.
    proxy = start_proxy("--demo", "--access-log-flush", "10")
    proxy.wait_started()
    with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
        for index in range(40):
            assert client.post("/v1/chat/completions", json=chat("echo", f"request {index}")).status_code == 200
    assert not proxy.stdout.arrives_within(1.0)  # still held in the batch
    proxy.process.send_signal(stop_signal)
    assert proxy.wait() == 0
    lines = proxy.stdout.to_end()
    records = [orjson.loads(line) for line in lines]
    assert len(records) == 40 and all(record["status"] == 200 for record in records)
    assert len({record["request_id"] for record in records}) == 40


def test_the_logged_client_address_follows_x_forwarded_for_from_a_local_proxy(start_proxy: Any) -> None:
    # Only with the address logged does uvicorn's proxy-headers layer run; it must still apply then.
    logged = start_proxy("--demo", env={"RETENTION_LOG_CLIENT_ADDRESS": "true"})
    quiet = start_proxy("--demo")
    for proxy in (logged, quiet):
        proxy.wait_started()
        with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
            answer = client.post("/v1/chat/completions", json=chat("echo"), headers={"x-forwarded-for": "203.0.113.7"})
            assert answer.status_code == 200
    assert logged.access_records(1)[0]["client"] == "203.0.113.7"  # the caller behind a local nginx
    assert "client" not in quiet.access_records(1)[0]


def test_a_bad_access_log_flush_interval_exits_2_naming_the_setting() -> None:
    result = run_cli("--demo", "--access-log-flush", "soon")
    assert result.returncode == 2
    assert "access_log_flush (--access-log-flush / RETENTION_ACCESS_LOG_FLUSH)" in result.stderr


def test_a_mongodb_store_without_a_way_to_tell_callers_apart_exits_2_naming_the_choices() -> None:
    result = run_cli("--demo", "--store", f"mongodb://127.0.0.1:{unused_port()}/")
    assert result.returncode == 2
    assert "--tenancy / RETENTION_TENANCY" in result.stderr
    assert "RETENTION_TENANT_SECRET" in result.stderr and "RETENTION_TENANT_HEADER" in result.stderr
    assert "Traceback" not in result.stderr and "listening on" not in result.stderr


def test_shared_tenancy_is_announced_with_one_warning(start_proxy: Any) -> None:
    proxy = start_proxy("--demo", "--tenancy", "shared")
    assert proxy.banner_settings()["tenancy"] == "shared"
    warnings = [line for line in proxy.stderr.seen if "RETENTION_TENANCY=shared" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING")
