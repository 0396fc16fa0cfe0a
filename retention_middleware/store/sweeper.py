"""The background task that purges expired records from an in-process store, as MongoDB's TTL monitor
does for a database. Reads never return expired records either way; the sweep only gives memory back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Sweeper:
    """Runs ``purge`` every ``interval`` seconds on the event loop that first needed it."""

    def __init__(self, purge: Callable[[], object], interval: float, name: str) -> None:
        self._purge = purge
        self._interval = interval
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def ensure_started(self) -> None:
        # Called at the top of every store operation (lazy start when the host runs no lifespan). It
        # never awaits, so no two coroutines can both see "not started": asyncio is the lock.
        if self._task is None or self._task.done():  # done: its event loop has gone away
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        # A task of another (ended) event loop cannot be cancelled from here; it is already dead.
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self._purge()
            except Exception:  # a broken clock must not end the sweeping for good
                logger.exception("%s failed", self._name)
