"""A FastAPI app with RetentionMiddleware wrapped in-process.

Run it (from a checkout, after ``pip install . fastapi``):

    python examples/fastapi_app.py            # serves on 127.0.0.1:8000

The endpoints stand in for a real model: ``/v1/chat/completions`` answers with the user's last
message, and ``/v1/responses`` with a fixed text. The middleware meters both, keeps stored Responses
API responses for a day (in memory here; set ``store="mongodb://..."`` for MongoDB), and writes one
access line per request on stdout, which is configured below because the library adds no handler.
"""

from __future__ import annotations

import logging.config
import time
import uuid
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request

from retention_middleware import RetentionMiddleware, RetentionSettings

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,  # keep uvicorn's and every other logger working
        "handlers": {"access": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
        "loggers": {"retention_middleware.access": {"handlers": ["access"], "level": "INFO", "propagate": False}},
    }
)

app = FastAPI(title="echo model behind retention-middleware")


@app.post("/v1/chat/completions")
async def chat(request: Request) -> dict[str, Any]:
    body = await request.json()
    text = str(body["messages"][-1]["content"])
    words = len(text.split())
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "echo"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": words, "completion_tokens": words, "total_tokens": 2 * words},
    }


@app.post("/v1/responses")
async def responses(request: Request) -> dict[str, Any]:
    body = await request.json()
    text = "Noted."
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body.get("model", "echo"),
        "output": [
            {
                "id": f"msg_{uuid.uuid4().hex}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    }


# The middleware goes around the whole app; FastAPI builds it with these settings.
app.add_middleware(RetentionMiddleware, settings=RetentionSettings(ttl=timedelta(days=1)))


if __name__ == "__main__":
    import uvicorn

    # access_log=False: uvicorn's own access line prints query strings; the middleware's replaces it.
    uvicorn.run(app, host="127.0.0.1", port=8000, access_log=False)
