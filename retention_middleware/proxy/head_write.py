"""The response head and the first body message in one write, where uvicorn writes them in two.

uvicorn's ``RequestResponseCycle`` writes the status line and headers on ``http.response.start`` and
each body message on its own ``http.response.body``; with uvloop every write is a ``send`` system
call (a loopback ``send`` is ~5-10 us), and the client gets the head and the body in two segments. A
proxied answer's first body message follows its start in the same step of the event loop (the
forwarder sends both as soon as the upstream's bytes arrive), so the head is held for at most that
step: it goes with the first body write, or on its own at the end of the step if none came.

Only the head is ever held, and never past the current step; every body message is written as it
is sent, alone (G7: chunks are not coalesced). A close writes a held head first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .._types import Message, Send


class HeadJoiningTransport:
    """What one response cycle writes through; everything it does not define goes to the transport."""

    __slots__ = ("_transport", "_loop", "_holding", "_head")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._holding = False  # the next write is the response head
        self._head: bytes | None = None

    def hold_head(self) -> None:
        self._holding = True

    def write(self, data: bytes) -> None:
        if self._holding:
            self._holding = False
            self._head = data
            self._loop.call_soon(self.flush)  # never held beyond this step of the loop
            return
        head = self._head
        if head is None:
            self._transport.write(data)
        else:
            self._head = None
            self._transport.writelines((head, data))

    def flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def joined_send(send: Send, transport: HeadJoiningTransport) -> Send:
    """``send`` telling ``transport`` which write is the head."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            transport.hold_head()
        await send(message)

    return sending
