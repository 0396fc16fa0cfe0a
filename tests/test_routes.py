from __future__ import annotations

import pytest

from retention_middleware.routes import Route, classify


@pytest.mark.parametrize(
    ("method", "path", "route", "raw_id"),
    [
        ("POST", "/v1/chat/completions", Route.CHAT, None),
        ("POST", "/chat/completions", Route.CHAT, None),
        ("POST", "/v1/chat/completions/", Route.CHAT, None),
        ("POST", "/v1/completions", Route.COMPLETIONS, None),
        ("POST", "/v1/embeddings", Route.EMBEDDINGS, None),
        ("POST", "/v1/responses", Route.RESPONSES_CREATE, None),
        ("GET", "/v1/responses/resp_123", Route.RESPONSES_RETRIEVE, "resp_123"),
        ("DELETE", "/v1/responses/resp_123", Route.RESPONSES_DELETE, "resp_123"),
        ("GET", "/v1/responses/resp_123/input_items", Route.RESPONSES_INPUT_ITEMS, "resp_123"),
        ("GET", "/v1/models", Route.MODELS, None),
        ("GET", "/v1/models/Qwen/Qwen3-4B", Route.MODELS, None),
        ("DELETE", "/v1/models/ft-1", Route.OTHER, None),
        ("DELETE", "/v1/retention/data", Route.RETENTION_ERASE, None),
        ("GET", "/v1/chat/completions", Route.OTHER, None),
        ("POST", "/v1/responses/resp_123/cancel", Route.OTHER, None),
        ("POST", "/v1/responses/resp_123", Route.OTHER, None),
        ("GET", "/health", Route.OTHER, None),
        ("POST", "/v1/messages", Route.OTHER, None),
        ("GET", '/v1/responses/{"$ne": null}', Route.RESPONSES_RETRIEVE, '{"$ne": null}'),
    ],
)
def test_classify(method: str, path: str, route: Route, raw_id: str | None) -> None:
    assert classify(method, path) == (route, raw_id)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/conversations"),
        ("POST", "/conversations"),
        ("GET", "/v1/conversations/conv_1"),
        ("DELETE", "/v1/conversations/conv_1/"),
        ("GET", "/v1/conversations/conv_1/items"),
        ("DELETE", "/v1/conversations/conv_1/items/msg_1"),
        ("PUT", "/v1/conversations/conv_1/anything/else"),  # answered by the handler, never forwarded
    ],
)
def test_every_conversations_path_is_kept_from_the_upstream(method: str, path: str) -> None:
    assert classify(method, path) == (Route.CONVERSATIONS, None)


def test_other_paths_naming_conversations_are_not_taken() -> None:
    assert classify("GET", "/v1/conversationsx") == (Route.OTHER, None)
    assert classify("GET", "/v2/conversations") == (Route.OTHER, None)
