"""``HEAD`` on an endpoint the middleware serves itself: the answer a ``GET`` gets, without the body.

Servers differ on whether they drop a HEAD response's body for the app (uvicorn does, others do
not), so the middleware drops it itself. The headers, ``content-length`` included, stay as for GET.
"""

from __future__ import annotations

from .._types import Message, Send


def without_body(send: Send) -> Send:
    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return send_head
