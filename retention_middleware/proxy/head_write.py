"""The response head and the first body message in one write, where uvicorn writes them in two.

uvicorn's ``RequestResponseCycle`` writes the status line and headers on ``http.response.start`` and
each body message on its own ``http.response.body``; with uvloop every write is a ``send`` system
call (a loopback ``send`` is ~5-10 us), and the client gets the head and the body in two segments. A
proxied answer's first body message follows its start in the same step of the event loop (the
forwarder sends both as soon as the upstream's bytes arrive), so the head is held for at most that
step: it goes with the first body write, or on its own at the end of the step if none came.

The cycle's first write is the one held: the head, or the ``100 Continue`` uvicorn writes before
reading a body a client asked to send (held for that step just the same, and the head after it then
goes alone). Only that write is ever held, and never past the current step; every body message is
written as it is sent, alone (G7: chunks are not coalesced). A close writes a held head first.

The transport knows the head as the first write rather than by wrapping the cycle's ``send``: a
wrapper stored on the cycle would hold the cycle's own bound method, a reference cycle per request
that only the garbage collector frees (measured: ~55 objects a request, collections ~10% of CPU).
"""

from __future__ import annotations

import asyncio
from typing import Any


class HeadJoiningTransport:
    """What one response cycle writes through; everything it does not define goes to the transport."""

    __slots__ = ("_transport", "_loop", "_holding", "_head")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._holding = True  # the next write is the cycle's first: the response head
        self._head: bytes | None = None

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
