"""``/v1/embeddings`` of the echo model: deterministic unit vectors, as floats or base64.

A vector is derived from a hash of the input text, so the same input always embeds the same way and
a test can compare embeddings without a model.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import time
import uuid
from typing import Any

import orjson

from .._types import Send
from ..errors import invalid_request, send_json
from .text import Body, limit_of, model_of, prompts_of


async def create_embeddings(body: Body, send: Send, *, model: str) -> None:
    """Answer an embeddings request: one vector per input, ``dimensions`` long (8 by default)."""
    inputs = prompts_of(body, "input")
    dimensions = limit_of(body, "dimensions") or 8
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise invalid_request(
            "Invalid 'encoding_format': use 'float' or 'base64'.", param="encoding_format",
            code="invalid_value",
        )  # fmt: skip
    data = []
    for index, words in enumerate(inputs):
        vector = _vector(" ".join(words), dimensions)
        embedding: Any = vector
        if encoding == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii")
        data.append({"index": index, "object": "embedding", "embedding": embedding})
    tokens = sum(len(words) for words in inputs)
    result = {
        "id": f"embd-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
        "model": model_of(body, model), "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                  "prompt_tokens_details": {"cached_tokens": 0}},
    }  # fmt: skip
    await send_json(send, 200, orjson.dumps(result))


def _vector(text: str, dimensions: int) -> list[float]:
    """A unit vector derived from a hash of ``text``: the same input always embeds the same way."""
    digest = hashlib.shake_256(text.encode("utf-8")).digest(2 * dimensions)
    raw = [value / 32767.5 - 1.0 for value in struct.unpack(f"<{dimensions}H", digest)]
    norm = math.hypot(*raw) or 1.0
    return [value / norm for value in raw]
