"""Section 2: streams. Added time to first body byte, cost per chunk, and chunks in == chunks out.

A long stream (``max_tokens`` events from the echo model) is timed end to end, bare and wrapped,
interleaved; the added total divided by the number of events is the per-chunk cost. Separately, one
untimed call per route runs with a tap between the middleware and the app that counts what the app
sends and checks, each time it sends, that the client already has everything sent before: a
middleware that held back (coalesced or delayed) a chunk would be caught there.
"""

from __future__ import annotations

import gc
from typing import Any

from retention_middleware._types import ASGIApp, Message, Receive, Scope, Send
from retention_middleware.store import MemoryStore

from .apps import upstream, wrapped
from .asgi_calls import Client, Request, expect, timed_call
from .payloads import PASSTHROUGH_PREFIX, chat_body, responses_body
from .stats import Comparison

NS_PER_US = 1000


class Tap:
    """Sits between the middleware and the app; counts body messages and the most ever held back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.client: Client | None = None
        self.sent = 0
        self.max_held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self.client
        assert client is not None  # set by the caller before each call

        async def tapped(message: Message) -> None:
            if message["type"] == "http.response.body":
                # Every message the app sent before this one must already have reached the client.
                self.max_held = max(self.max_held, self.sent - client.body_messages)
                self.sent += 1
            await send(message)

        await self.app(scope, receive, tapped)


def _requests(events: int) -> dict[str, Request]:
    return {
        "passthrough": Request(
            "POST", f"{PASSTHROUGH_PREFIX}/v1/chat/completions", chat_body(stream=True, max_tokens=events)
        ),
        "chat": Request("POST", "/v1/chat/completions", chat_body(stream=True, max_tokens=events)),
        "responses_stored": Request("POST", "/v1/responses", responses_body(stream=True, max_tokens=events)),
    }


async def _accounting(name: str, request: Request, bare: ASGIApp) -> dict[str, Any]:
    _, _, baseline = await timed_call(bare, request)
    tap = Tap(bare)
    store = MemoryStore()
    client = Client(request.body)
    tap.client = client
    await timed_call(wrapped(tap, store=store), request, client)
    stored = len(store)
    await store.close()
    result = {
        "bare_client_messages": baseline.body_messages,
        "bare_client_data_messages": baseline.data_messages,
        "app_messages_in": tap.sent,
        "client_messages_out": client.body_messages,
        "client_data_messages_out": client.data_messages,
        "max_messages_held": tap.max_held,
        "in_equals_out": tap.sent == client.body_messages,
    }
    if name == "responses_stored":
        expect(stored == 1, "the streamed response was not stored")
    return result


async def run(events: int, rounds: int, warmup: int) -> dict[str, Any]:
    bare = upstream()
    store = MemoryStore()
    middleware = wrapped(bare, store=store)
    requests = _requests(events)
    totals: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in requests}
    firsts: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in requests}
    chunks: dict[str, int] = {}
    for index in range(warmup + rounds):
        if index == warmup:
            gc.collect()
        for name, request in requests.items():
            order = ((bare, 0), (middleware, 1))
            for app, side in order if index % 2 == 0 else reversed(order):
                elapsed, first, client = await timed_call(app, request)
                if side == 0:
                    chunks[name] = client.data_messages
                if index >= warmup:
                    totals[name][side].append(elapsed / NS_PER_US)
                    firsts[name][side].append(first / NS_PER_US)
    await store.close()
    results: dict[str, Any] = {"events": events, "rounds": rounds}
    for name, request in requests.items():
        total = Comparison.of(*totals[name], "us")
        results[name] = {
            "time_to_first_byte": Comparison.of(*firsts[name], "us").to_json(),
            "whole_stream": total.to_json(),
            "chunks": chunks[name],
            "per_chunk_added_us": total.added_p50 / chunks[name],
            "per_chunk_bare_us": total.baseline.p50 / chunks[name],
            "accounting": await _accounting(name, request, bare),
        }
    return results
