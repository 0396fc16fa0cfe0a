"""DisconnectSignal: the proxy's server telling the app that its client left, with no task per request.

ASGI reports a disconnect only as an ``http.disconnect`` message from ``receive``, so an app that
must stop work the moment its client leaves needs a task waiting on ``receive`` for every request:
~8 us of CPU per proxied request (creating, scheduling and cancelling it; measured beside the
forwarder without one). The proxy's own server (``proxy/server.py``) offers this scope extension
instead: ``scope["extensions"][DISCONNECT_SIGNAL]`` is a ``DisconnectSignal`` the app registers one
callback with, called on the event loop when the connection is lost before the response is complete.

The forwarder uses it when it is there and falls back to the task under any other server.
"""

from __future__ import annotations

from collections.abc import Callable

DISCONNECT_SIGNAL = "retention.disconnect_signal"


class DisconnectSignal:
    """One request's signal; ``fire`` runs the registered callback once, if there is one."""

    __slots__ = ("_callback",)

    def __init__(self) -> None:
        self._callback: Callable[[], None] | None = None

    def register(self, callback: Callable[[], None]) -> None:
        self._callback = callback

    def clear(self) -> None:
        """Nothing to call any more (the answer is complete). It also drops the callback's references:
        the signal sits in the scope the callback's request holds, and kept, they would make a
        reference cycle per request for the garbage collector."""
        self._callback = None

    def fire(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()
