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
