"""Request-head limits in the middleware (limits/headers.py): in-process hosts are protected too."""

from __future__ import annotations

import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings, SettingsError

from support.asgi_tools import CountingUpstream, asgi_client, capture_all_logs

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer " + "k" * 40_000},  # one huge bearer token
        {f"x-h{number}": "v" * 200 for number in range(190)},  # many mid-sized ones: 40 KiB together
        {f"x-h{number}": "v" for number in range(201)},  # small but too many
    ],
    ids=["one-huge", "large-in-total", "too-many"],
)
async def test_an_oversized_head_is_431_before_anything_else_sees_it(headers: dict[str, str]) -> None:
    upstream = CountingUpstream()
    middleware = RetentionMiddleware(upstream, RetentionSettings())
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            refused = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
            innocent = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-a"})
    assert refused.status_code == 431
    error = refused.json()["error"]
    assert error["code"] == "request_header_fields_too_large" and error["type"] == "invalid_request_error"
    assert "32768 bytes" in error["message"] and "200 headers" in error["message"]
    assert innocent.status_code == 200 and upstream.calls == 1
    entry = orjson.loads(logs.access_lines()[0])
    assert (entry["status"], entry["error"]) == (431, "request_header_fields_too_large")
    assert "kkkk" not in logs.text()


async def test_the_limits_are_settings() -> None:
    middleware = RetentionMiddleware(CountingUpstream(), RetentionSettings(max_header_bytes=64 * 1024, max_headers=300))
    async with asgi_client(middleware) as client:
        big = await client.post("/v1/chat/completions", json=CHAT, headers={"x-big": "v" * 40_000})
        many = await client.post("/v1/chat/completions", json=CHAT, headers={f"x-{n}": "v" for n in range(250)})
    assert big.status_code == many.status_code == 200
    assert RetentionSettings.from_env({"RETENTION_MAX_HEADER_BYTES": "8KiB"}).max_header_bytes == 8192
    with pytest.raises(SettingsError, match="RETENTION_MAX_HEADERS"):
        RetentionSettings.from_env({"RETENTION_MAX_HEADERS": "0"})
    with pytest.raises(SettingsError, match="RETENTION_HEADER_TIMEOUT"):
        RetentionSettings.from_env({"RETENTION_HEADER_TIMEOUT": "soon"})
