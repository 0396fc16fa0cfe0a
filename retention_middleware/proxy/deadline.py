"""Deadline: a timeout moved on every request but checked rarely, one loop timer per expiry.

Each request on a connection starts and stops several waits (for the head, the body, the next
request, the upstream's answer). A loop timer per wait costs ~3.4 us to arm and cancel under uvloop
(measured: ``loop.call_later`` + ``cancel``), four times per proxied request. A ``Deadline`` keeps one
timer armed and moves only the time it is due: when the timer fires early, because the wait was
stopped or moved on, it re-arms for the current due time or does nothing. So a busy keep-alive
connection arms about one timer per timeout period per wait, whatever its request rate.

Due times only ever move later for one wait (they are "now + a fixed timeout"), so the armed timer
never fires after the time it guards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadline:
    """Calls ``expired`` once ``due`` has passed, unless ``stop()`` or a later ``start()`` came first."""

    __slots__ = ("_loop", "_expired", "_timer", "due")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._expired = expired
        self._timer: asyncio.TimerHandle | None = None
        self.due: float | None = None

    def start(self, seconds: float) -> None:
        """Due ``seconds`` from now (replacing any earlier due time)."""
        due = self._loop.time() + seconds
        self.due = due
        if self._timer is None:
            self._timer = self._loop.call_at(due, self._fire)

    def stop(self) -> None:
        """Nothing is waited for; the armed timer, if any, finds that out when it fires."""
        self.due = None

    def cancel(self) -> None:
        """Stop for good (the connection is closing): the timer is released now, and so is
        ``expired``, which is typically a method of the deadline's owner: kept, the two would be a
        reference cycle left to the garbage collector for every closed connection."""
        self.due = None
        self._expired = _ignore
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        due = self.due
        if due is None:
            return
        if due > self._loop.time():
            self._timer = self._loop.call_at(due, self._fire)
            return
        self.due = None
        self._expired()


def _ignore() -> None:
    pass
