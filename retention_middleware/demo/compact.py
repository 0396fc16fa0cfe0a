"""``/v1/responses/compact`` and ``/v1/responses/input_tokens`` of the echo model.

Stateless like the rest of the echo model, so a ``previous_response_id`` is refused (a test can see
that the middleware rehydrated it away). Compaction keeps the user's messages and folds everything
else (assistant turns, tool calls and outputs) into one ``compaction`` item; its
``encrypted_content`` is only base64 of those items' JSON, since the demo has nothing to encrypt with.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import orjson

from .._types import Send
from ..errors import send_json
from .responses import input_words, refuse_previous_response
from .text import Body, missing, model_of


def _stateless(body: Body) -> None:
    refuse_previous_response(body)
    if body.get("model") is None:
        raise missing("model")


def _as_items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


def _user_message(item: dict[str, Any]) -> dict[str, Any]:
    content = item.get("content")
    parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else content
    return {"id": item.get("id") or f"msg_{uuid.uuid4().hex}", "type": "message", "role": "user",
            "status": "completed", "content": parts}  # fmt: skip


async def count_input_tokens(body: Body, send: Send, *, model: str) -> None:
    """Answer ``/v1/responses/input_tokens``: the words of every input text and the instructions."""
    _stateless(body)
    tokens, _ = input_words(body.get("input", []))
    tokens += len(str(body.get("instructions") or "").split())
    await send_json(send, 200, orjson.dumps({"object": "response.input_tokens", "input_tokens": tokens}))


async def compact(body: Body, send: Send, *, model: str) -> None:
    """Answer ``/v1/responses/compact``: user messages kept, the rest folded into one compaction item."""
    _stateless(body)
    model_of(body, model)
    items = _as_items(body.get("input", []))
    tokens, _ = input_words(items)
    kept = [_user_message(i) for i in items if isinstance(i, dict) and i.get("role") == "user"]
    folded = [i for i in items if not (isinstance(i, dict) and i.get("role") == "user")]
    summary = base64.b64encode(orjson.dumps(folded)).decode("ascii")
    output = [*kept, {"id": f"cmp_{uuid.uuid4().hex}", "type": "compaction", "encrypted_content": summary}]
    usage = {
        "input_tokens": tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": tokens,
    }  # fmt: skip
    answer = {"id": f"resp_{uuid.uuid4().hex}", "object": "response.compaction", "output": output,
              "created_at": int(time.time()), "usage": usage}  # fmt: skip
    await send_json(send, 200, orjson.dumps(answer))
