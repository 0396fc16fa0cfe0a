"""Logged models are disclosed in /v1/models; everything else in the answer keeps its bytes."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send

from support.asgi_tools import SentMessages, asgi_client, read_request_body, send_pieces


def vllm_model(model_id: str, lora_parent: str | None = None) -> dict[str, Any]:
    """An entry as vLLM's /v1/models lists it (ModelCard with its permission list)."""
    return {
        "id": model_id, "object": "model", "created": 1781766147, "owned_by": "vllm", "root": lora_parent or model_id,
        "parent": lora_parent, "max_model_len": 32768,
        "permission": [{"id": "modelperm-7f1e", "object": "model_permission", "created": 1781766147,
                        "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                        "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                        "organization": "*", "group": None, "is_blocking": False}],
    }  # fmt: skip


MODELS = {"object": "list", "data": [vllm_model("Qwen/Qwen3-4B"), vllm_model("sql-lora", "Qwen/Qwen3-4B"),
                                     vllm_model("openai/gpt-oss-20b")]}  # fmt: skip


class ModelServer:
    def __init__(self, body: bytes, status: int = 200, content_type: bytes = b"application/json") -> None:
        self.body, self.status, self.content_type = body, status, content_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await read_request_body(receive)
        await send_pieces(send, self.status, self.content_type, [self.body[:40], self.body[40:]])


def wrapped(server: ModelServer, logged: set[str]) -> SentMessages:
    settings = RetentionSettings(logged_models=frozenset(logged), content_ttl=timedelta(days=30))
    return SentMessages(RetentionMiddleware(server, settings))


@pytest.mark.parametrize("indent", [None, 2])
async def test_a_logged_model_is_marked_and_the_other_entries_keep_their_bytes(indent: int | None) -> None:
    raw = json.dumps(MODELS, indent=indent).encode()
    app = wrapped(ModelServer(raw), {"sql-lora"})
    async with asgi_client(app) as client:
        answer = await client.get("/v1/models")
    listed = answer.json()["data"]
    marked = listed[1]
    assert marked["data_logging"] is True
    assert "Prompts and generations sent to this model are logged" in marked["description"]
    assert "30 days" in marked["description"]
    assert {k: v for k, v in marked.items() if k not in ("data_logging", "description")} == MODELS["data"][1]
    assert "data_logging" not in listed[0] and "data_logging" not in listed[2]
    # The unlisted entries are the server's own bytes, exactly.
    for entry in (MODELS["data"][0], MODELS["data"][2]):
        assert (
            json.dumps(entry, indent=indent).replace("\n", "\n" + " " * (2 * (indent or 0))).encode() in answer.content
        )
    assert int(answer.headers["content-length"]) == len(answer.content)


async def test_without_a_listed_model_the_answer_is_untouched_byte_for_byte() -> None:
    raw = orjson.dumps(MODELS)
    for logged in (set(), {"not-served-here"}):
        app = wrapped(ModelServer(raw), logged)
        async with asgi_client(app) as client:
            answer = await client.get("/v1/models")
        assert answer.content == raw
        assert [m["body"] for m in app.body_messages] == [raw[:40], raw[40:]]


@pytest.mark.parametrize(
    ("body", "status", "content_type"),
    [
        (b"<html>models</html>", 200, b"text/html"),
        (b'{"error": {"message": "unauthorized"}}', 401, b"application/json"),
        (b'{"object": "list", "data": [', 200, b"application/json"),
        (b'["sql-lora"]', 200, b"application/json"),
    ],
)
async def test_non_json_errors_and_odd_shapes_pass_untouched(body: bytes, status: int, content_type: bytes) -> None:
    app = wrapped(ModelServer(body, status, content_type), {"sql-lora"})
    async with asgi_client(app) as client:
        answer = await client.get("/v1/models")
    assert (answer.status_code, answer.content) == (status, body)


async def test_retrieving_one_logged_model_discloses_it() -> None:
    app = wrapped(ModelServer(orjson.dumps(vllm_model("Qwen/Qwen3-4B"))), {"Qwen/Qwen3-4B"})
    async with asgi_client(app) as client:
        answer = await client.get("/v1/models/Qwen/Qwen3-4B")
    assert answer.json()["data_logging"] is True and answer.json()["id"] == "Qwen/Qwen3-4B"


async def test_an_existing_description_is_kept_and_extended() -> None:
    listing = {"object": "list", "data": [{"id": "m", "object": "model", "description": "A small model."}]}
    app = wrapped(ModelServer(orjson.dumps(listing)), {"m"})
    async with asgi_client(app) as client:
        answer = await client.get("/v1/models")
    assert answer.json()["data"][0]["description"].startswith("A small model. Prompts and generations")
