"""Section 5: latency ``retention-proxy`` adds over calling its upstream directly.

The upstream is the echo model under uvicorn (``benchmarks.serve bare``); the proxy is the installed
``retention-proxy`` command, started as a user would, in front of it. One keep-alive connection to
each; requests go one at a time, direct and proxied alternating, so both see the same machine state.
"""

from __future__ import annotations

import time
from importlib.util import find_spec
from typing import Any

from .asgi_calls import expect
from .http1 import Connection, post
from .payloads import PASSTHROUGH_PREFIX, chat_body
from .processes import proxy_command, retention_proxy, uvicorn_app
from .stats import Comparison

NS_PER_MS = 1_000_000


def proxy_server() -> str:
    """The HTTP implementation and event loop uvicorn's "auto" gives the proxy on this machine."""
    http = "httptools" if find_spec("httptools") else "h11"
    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    return f"uvicorn, http={http}, loop={loop}"


def run(*, requests: int, warmup: int, seconds: float, http: str, loop: str) -> dict[str, Any]:
    """``requests`` pairs per route, or fewer if ``seconds`` run out first (a slow proxy still ends)."""
    routes = {
        "passthrough": post(f"{PASSTHROUGH_PREFIX}/v1/chat/completions", chat_body()),
        "chat_metered": post("/v1/chat/completions", chat_body()),
    }
    results: dict[str, Any] = {
        "proxy_command": " ".join(proxy_command()),
        "upstream": f"benchmarks.serve bare (uvicorn, workers=1, http={http}, loop={loop})",
        "proxy_server": proxy_server(),
        "requests": requests,
    }
    with uvicorn_app("bare", http=http, loop=loop) as upstream, retention_proxy(upstream.url) as proxy:
        direct, proxied = Connection(upstream.port), Connection(proxy.port)
        try:
            for route, request in routes.items():
                samples: tuple[list[float], list[float]] = ([], [])
                deadline = time.monotonic() + seconds
                for index in range(warmup + requests):
                    if index > warmup and time.monotonic() > deadline:
                        break
                    order = ((direct, samples[0]), (proxied, samples[1]))
                    for connection, into in order if index % 2 == 0 else reversed(order):
                        elapsed, status = connection.timed(request)
                        expect(status == 200, "a request failed", route=route, status=status)
                        if index >= warmup:
                            into.append(elapsed / NS_PER_MS)
                results[route] = Comparison.of(*samples, "ms").to_json()
        finally:
            direct.close()
            proxied.close()
    return results
