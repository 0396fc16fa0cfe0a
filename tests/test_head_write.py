"""The proxy writes a response head together with the first body message, and holds nothing else.

What the client would notice: a head that waits for a body that is slow to come (a stream's first
token) must still arrive at once, every body message must be written as it is sent (G7), and a
connection closed after a head alone must still carry that head.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from retention_middleware.proxy.head_write import HeadJoiningTransport


class RecordingTransport:
    """Records each write the way the socket would see it: one entry per system call."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.sent.append(b"".join(parts))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def _joined() -> tuple[RecordingTransport, HeadJoiningTransport]:
    raw = RecordingTransport()
    return raw, HeadJoiningTransport(cast(asyncio.Transport, raw), asyncio.get_running_loop())


async def _cycle_send(transport: HeadJoiningTransport) -> Any:
    async def send(message: dict[str, Any]) -> None:  # what uvicorn's cycle does: one write per message
        transport.write(b"HEAD" if message["type"] == "http.response.start" else message.get("body", b""))

    return send


async def test_head_and_first_body_go_in_one_write_and_later_chunks_alone() -> None:
    raw, transport = _joined()
    send = await _cycle_send(transport)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"one", "more_body": True})
    await send({"type": "http.response.body", "body": b"two", "more_body": True})
    await send({"type": "http.response.body", "body": b"three", "more_body": False})
    assert raw.sent == [b"HEADone", b"two", b"three"]


async def test_a_head_whose_body_is_slow_goes_out_at_the_end_of_the_loop_step() -> None:
    raw, transport = _joined()
    send = await _cycle_send(transport)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    assert raw.sent == []
    await asyncio.sleep(0)  # one step of the loop: the first token has not come yet
    assert raw.sent == [b"HEAD"]
    await send({"type": "http.response.body", "body": b"token", "more_body": True})
    assert raw.sent == [b"HEAD", b"token"]


async def test_close_writes_a_held_head_first_and_other_calls_reach_the_transport() -> None:
    raw, transport = _joined()
    send = await _cycle_send(transport)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    transport.close()
    assert raw.sent == [b"HEAD"] and raw.closed
    assert transport.get_extra_info("peername") == "info:peername"


async def test_a_100_continue_before_the_head_is_out_by_the_end_of_the_step_and_the_head_follows() -> None:
    raw, transport = _joined()
    send = await _cycle_send(transport)
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # uvicorn, as the app first reads the body
    await asyncio.sleep(0)
    assert raw.sent == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # the client may now send its body
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"answer", "more_body": False})
    assert raw.sent == [b"HTTP/1.1 100 Continue\r\n\r\n", b"HEAD", b"answer"]  # nothing lost or reordered
