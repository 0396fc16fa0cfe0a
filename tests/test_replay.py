"""Recorded real traffic (vLLM and OpenAI) replayed through the middleware, cut at random byte
boundaries: the client gets the upstream's bytes exactly, in as many messages, and the access log
meters exactly the usage the server reported."""

from __future__ import annotations

import json

import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.wire.metering import normalise_usage

from support.asgi_tools import SentMessages, asgi_client, capture_all_logs
from support.cassettes import ReplayUpstream, all_cassettes, load


def passthrough_cassettes() -> list[str]:
    # Conversations are served by the middleware itself, not passed through: test_conversations.py
    # replays the recorded OpenAI conversation and compares shapes instead of bytes.
    return [name for name in all_cassettes() if not any("/conversations" in turn.path for turn in load(name))]


@pytest.mark.parametrize("name", passthrough_cassettes())
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_replayed_sessions_are_byte_identical_and_metered(name: str, seed: int) -> None:
    turns = load(name)
    upstream = ReplayUpstream(turns, seed=seed)
    outer = SentMessages(RetentionMiddleware(upstream, RetentionSettings()))
    with capture_all_logs() as logs:
        async with asgi_client(outer) as client:
            for index, turn in enumerate(turns):
                outer.clear()
                response = await client.request(
                    turn.method, turn.path, params=turn.query,
                    json=turn.request_body if turn.method != "GET" else None,
                )  # fmt: skip
                assert response.status_code == turn.status
                # A response object without "store" (vLLM writes none) gets it inserted before its
                # closing brace; with that taken out, every byte is the upstream's, in the same pieces.
                inserted = (
                    b',"store":true' if turn.path == "/v1/responses" and b'"store"' not in turn.response_bytes else b""
                )
                received = response.content.replace(inserted, b"") if inserted else response.content
                assert received == turn.response_bytes, f"{turn.name}: bytes differ"
                pieces = upstream.sent_pieces[index]
                out = [m["body"].replace(inserted, b"") if inserted else m["body"] for m in outer.body_messages]
                assert [body for body in out if body or len(pieces) == 1] == [
                    p for p in pieces if p or len(pieces) == 1
                ]
                assert len(outer.body_messages) == len(pieces), f"{turn.name}: messages in != out"
    access = [json.loads(line) for line in logs.access_lines()]
    assert len(access) == len(turns)
    for turn, entry in zip(turns, access, strict=True):
        recorded = normalise_usage(turn.recorded_usage)
        metered_endpoint = turn.path in ("/v1/responses", "/v1/chat/completions", "/v1/completions")
        if metered_endpoint and recorded is not None:
            assert entry["usage"] == recorded, turn.name
        assert entry["stream"] is (turn.is_sse or (False if metered_endpoint else None))
