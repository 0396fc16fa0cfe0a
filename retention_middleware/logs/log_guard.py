"""The log guard: while a request is in flight, no log record in the process may carry its content.

The middleware registers each inspected request's content (its parsed body, and the generated text
as it streams past). A wrapper around ``logging``'s record factory then rewrites every record as it
is created — by any logger, at any level, whatever handlers exist now or are added later — replacing
that content with ``[redacted]`` in the message, inside each argument, in the exception text, the
stack text and any string passed through ``extra`` (see ``record_rewrite``). Records are rewritten at
creation because that is the one point every handler, formatter and queue sees afterwards.

All in-flight requests share one index (``content_index``), so a record costs what its own length
costs, whether one request is in flight or a thousand. Registering stores references only: content
is indexed the first time a record is created after it arrived, so a server that does not log pays
nothing, and removed from the index when its request completes.

Turn it off with ``RETENTION_LOG_GUARD=false`` (``RetentionSettings(log_guard=False)``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..observability.metrics import count_redaction
from .content_index import ContentIndex
from .generated import GeneratedStream
from .record_rewrite import rewrite_record
from .redaction import REDACTED, apply_spans, content_strings, short_pieces, variants

GENERATED_TEXT_LIMIT = 1024 * 1024
"""Characters of generated text kept per request for matching (some 250,000 tokens, far more than
a model writes in one answer). Past this the guard fails closed: while that request is in flight,
every record's message is replaced whole. The limit keeps a request's memory bounded however long
its stream runs."""

CHECKED_TEXT_LIMIT = 256 * 1024
"""Characters of one text (a message, an argument, a traceback) checked against the index. A longer
one, logged while a request is in flight, is replaced whole: it keeps one record's work bounded."""

ACCESS_LOGGER_NAME = "retention_middleware.access"

# One index, one lock: records come from any thread, registrations from the event loop.
_lock = threading.RLock()
_index = ContentIndex()
_active: dict[int, GuardedContent] = {}
_dirty: dict[int, GuardedContent] = {}  # registered content not yet in the index
_overflowed = 0  # in-flight requests past their generated-text limit
_ids = itertools.count()


class GuardedContent:
    """The content of one in-flight request: kept as references until a record needs the index."""

    __slots__ = ("key", "_sources", "_streams", "_generated_size", "_parts", "_pieces", "overflowed", "_live")

    def __init__(self, key: int) -> None:
        self.key = key
        self._sources: list[Any] = []
        self._streams: dict[Any, GeneratedStream] = {}
        self._generated_size = 0
        self._parts: list[int] = []
        self._pieces: list[str] = []
        self.overflowed = False
        self._live = True

    def add_source(self, value: Any) -> None:
        """A parsed JSON body (request or response) or raw text; walked only when someone logs."""
        with _lock:
            if self._live:
                self._sources.append(value)
                _dirty[self.key] = self

    def add_generated(self, key: Any, text: str) -> None:
        """Text streamed to the client; ``key`` keeps separate choices/parts from interleaving.

        Called once per streamed delta, so it takes the lock only every 256 deltas (see
        ``GeneratedStream.add``); only the event loop serving this request calls it."""
        if self.overflowed or not self._live:
            return
        self._generated_size += len(text)
        if self._generated_size > GENERATED_TEXT_LIMIT:
            self._overflow()
            return
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = GeneratedStream()
        if stream.add(text):
            with _lock:
                stream.compact()
        _dirty[self.key] = self

    def _overflow(self) -> None:
        global _overflowed
        with _lock:
            if self.overflowed:
                return
            self.overflowed = True
            _overflowed += 1
            for stream in list(self._streams.values()):
                stream.release(_index)
            self._streams.clear()

    def _flush(self) -> None:
        sources, self._sources = self._sources, []
        for source in sources:
            for text, whole in ((source, True),) if isinstance(source, str) else content_strings(source):
                if not text.strip():
                    continue
                for variant in variants(text):
                    self._parts.append(_index.add_text(variant))
                for piece in short_pieces(text, whole=whole):
                    self._pieces.append(piece)
                    _index.add_piece(piece)
        for stream in list(self._streams.values()):  # the event loop may add one meanwhile
            stream.flush(_index)

    def _release(self) -> None:
        global _overflowed
        self._live = False
        _dirty.pop(self.key, None)
        for part_id in self._parts:
            _index.remove_text(part_id)
        for piece in self._pieces:
            _index.remove_piece(piece)
        for stream in self._streams.values():
            stream.release(_index)
        self._parts, self._pieces, self._sources, self._streams = [], [], [], {}
        if self.overflowed:
            _overflowed -= 1


class GuardRegistration:
    """The handle a request holds while its content is guarded."""

    __slots__ = ("key", "content")

    def __init__(self) -> None:
        self.key = next(_ids)
        self.content = GuardedContent(self.key)
        _ensure_installed()
        with _lock:
            _active[self.key] = self.content

    def release(self, *, after_this_step: bool = False) -> None:
        """Stop guarding. With ``after_this_step`` the content stays guarded until the running event
        loop step ends, so the server's own "Exception in ASGI application" record, logged right after
        the exception leaves the middleware, is still redacted."""
        if after_this_step:
            try:
                asyncio.get_running_loop().call_soon(self._drop)
                return
            except RuntimeError:
                pass
        self._drop()

    def _drop(self) -> None:
        with _lock:
            if _active.pop(self.key, None) is not None:
                self.content._release()


RECORD_CHECK_BUDGET = 4 * CHECKED_TEXT_LIMIT
"""Characters checked for one record in all (its message is read a few times, each argument once);
past this, whatever is left to check is replaced whole."""


class _SharedIndex:
    """What ``rewrite_record`` sees of the shared index, for one record."""

    __slots__ = ("budget",)

    def __init__(self) -> None:
        self.budget = RECORD_CHECK_BUDGET

    @property
    def fail_closed(self) -> bool:
        return _overflowed > 0

    def redact(self, text: str) -> str:
        if len(text) > min(CHECKED_TEXT_LIMIT, self.budget):
            return f"{REDACTED} (too long to check while requests are in flight)"
        self.budget -= len(text)
        return apply_spans(text, _index.spans(text))

    def holds(self, argument: str) -> bool:
        return _index.holds(argument)


def _index_what_arrived() -> None:
    global _overflowed
    while _dirty:
        content = _dirty.popitem()[1]
        try:
            content._flush()
        except Exception:  # content the index cannot take is guarded by failing closed
            if not content.overflowed:
                content.overflowed = True
                _overflowed += 1


class _GuardedRecordFactory:
    """Wraps whichever record factory was installed before; see the module docstring."""

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if _active and record.name != ACCESS_LOGGER_NAME:
            with _lock:
                _index_what_arrived()
            # Outside the lock: rendering an argument runs its own __str__, which may take locks of
            # its own or log. Only registrations and removals change the index; a lookup racing one
            # sees the index before or after it (the GIL makes each dict and list operation whole).
            if _active:
                before = (record.msg, record.args, record.exc_text, record.stack_info)
                rewrite_record(record, _SharedIndex())
                after = (record.msg, record.args, record.exc_text, record.stack_info)
                if any(new is not old for new, old in zip(after, before, strict=True)):
                    count_redaction()  # the rewrite replaces only what held content
        return record


def _ensure_installed() -> None:
    # Checked on every registration, so a library that later replaces the factory without
    # chaining to ours is wrapped again rather than silently switching the guard off.
    if not isinstance(logging.getLogRecordFactory(), _GuardedRecordFactory):
        logging.setLogRecordFactory(_GuardedRecordFactory(logging.getLogRecordFactory()))


def guarded_request_count() -> int:
    """How many requests' content is guarded right now (for tests and diagnostics)."""
    return len(_active)


def index_is_empty() -> bool:
    """True when the shared index holds nothing (for tests: every completed request was removed)."""
    with _lock:
        return _index.empty and not _dirty
