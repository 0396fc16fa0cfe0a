"""Request ids round-trip: client -> proxy -> upstream -> client -> access log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from retention_middleware.observability.request_id import client_request_id

from support.proxy_process import ProxyProcess
from support.servers import serve


class HeaderEcho:
    """An upstream answering chat with the x-request-id it received, in its body and its own header."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        seen = [value.decode() for name, value in scope["headers"] if name == b"x-request-id"]
        body = orjson.dumps({"object": "chat.completion", "model": "m", "choices": [], "seen": seen})
        headers = [(b"content-type", b"application/json"), (b"x-request-id", b"upstream-own-id")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def proxy(run_proxy: Callable[..., ProxyProcess]) -> Iterator[ProxyProcess]:
    with serve(HeaderEcho()) as url:
        yield run_proxy("--upstream", url)


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("support-4f1c:9a.b_c-d", True),
        (None, False),
        ("has spaces in it", False),
        ("x" * 129, False),
        ("caf\u00e9", False),
    ],
    ids=["well-formed", "absent", "spaces", "too-long", "non-ascii"],
)
def test_the_request_id_round_trips_client_upstream_client_log(
    proxy: ProxyProcess, sent: str | None, kept: bool
) -> None:
    headers: dict[bytes, bytes] = {} if sent is None else {b"x-request-id": sent.encode("utf-8")}
    with httpx.Client(base_url=proxy.url, timeout=20) as client:
        answer = client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert answer.status_code == 200
    returned = answer.headers.get_list("x-request-id")
    assert len(returned) == 1  # ours replaces the upstream's own
    request_id = returned[0]
    if kept:
        assert request_id == sent
    else:
        assert request_id != sent and request_id.startswith("req_")
    assert answer.json()["seen"] == [request_id]  # forwarded upstream, exactly once
    (record,) = proxy.access_records(1)
    assert record["request_id"] == request_id
    if sent is not None and not kept:
        assert sent not in "\n".join(proxy.stdout.seen + proxy.stderr.seen)  # junk is never echoed


def test_two_ids_are_neither_trusted() -> None:
    assert client_request_id([(b"x-request-id", b"a"), (b"x-request-id", b"b")]) is None
    assert client_request_id([(b"X-Request-ID", b"abc")]) == "abc"


def test_errors_the_middleware_answers_carry_the_id_too(proxy: ProxyProcess) -> None:
    with httpx.Client(base_url=proxy.url, timeout=20) as client:
        answer = client.post("/v1/responses", content=b"{broken", headers={"x-request-id": "trace-1"})
    assert answer.status_code == 400 and answer.headers["x-request-id"] == "trace-1"
