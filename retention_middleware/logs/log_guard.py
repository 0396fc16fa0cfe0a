"""The log guard: while a request is in flight, no log record in the process may carry its content.

The middleware registers each inspected request's content (its parsed body, and the generated text
as it streams past). A wrapper around ``logging``'s record factory then rewrites every record as it
is created — by any logger, at any level, whatever handlers exist now or are added later — replacing
that content with ``[redacted]`` in the message, its arguments, the exception text, the stack text
and any string passed through ``extra``. Records are rewritten at creation because that is the one
point every handler, formatter and queue sees afterwards.

It costs nothing measurable when nobody logs: registering a request stores references only; the text
index is built the first time a record is created while that request is in flight.

Turn it off with ``RETENTION_LOG_GUARD=false`` (``RetentionSettings(log_guard=False)``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from ..observability.metrics import count_redaction
from .redaction import REDACTED, ContentMatcher

GENERATED_TEXT_LIMIT = 1024 * 1024
"""Characters of generated text kept per request for matching (some 250,000 tokens, far more than
a model writes in one answer). Past this the guard fails closed: while that request is in flight,
every record's message is replaced whole. The limit keeps a request's memory bounded (about 1 MiB)
however long its stream runs."""

_DELTAS_PER_BLOCK = 256
"""Streamed deltas are a few characters each; kept one string apiece they would cost ~50 bytes of
object overhead per delta, so every 256 of them are joined into one string."""

ACCESS_LOGGER_NAME = "retention_middleware.access"

# Keys whose string values are protocol vocabulary, not content; walking past them keeps ids, model
# names and enum values such as "user" or "auto" readable in everybody's logs.
_NOT_CONTENT_KEYS = frozenset(
    {
        "model", "role", "type", "object", "id", "call_id", "item_id", "status", "tool_choice",
        "service_tier", "truncation", "finish_reason", "system_fingerprint", "encoding_format",
        "effort", "reasoning_effort", "verbosity", "detail", "previous_response_id", "format",
    }
)  # fmt: skip

# Attributes every LogRecord has; anything else arrived through ``extra=`` and may hold content.
_STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _strings(value: Any, key: str | None = None) -> Iterator[str]:
    """Every string inside a parsed JSON value, skipping protocol vocabulary."""
    if isinstance(value, str):
        if key not in _NOT_CONTENT_KEYS:
            yield value
    elif isinstance(value, dict):
        for child_key, child in value.items():
            yield from _strings(child, child_key)
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child, key)


class _GeneratedText:
    """The text of one generated part (a choice, an output item), kept compactly."""

    __slots__ = ("blocks", "pending")

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.pending: list[str] = []

    def add(self, text: str) -> None:
        self.pending.append(text)
        if len(self.pending) >= _DELTAS_PER_BLOCK:
            self.blocks.append("".join(self.pending))
            self.pending = []

    def text(self) -> str:
        return "".join(self.blocks) + "".join(self.pending)


class GuardedContent:
    """The content of one in-flight request, indexed lazily for the record factory."""

    __slots__ = ("_sources", "_generated", "_generated_size", "_matcher", "_indexed_sources", "overflowed")

    def __init__(self) -> None:
        self._sources: list[Any] = []
        self._generated: dict[Any, _GeneratedText] = {}
        self._generated_size = 0
        self._matcher: ContentMatcher | None = None
        self._indexed_sources = 0
        self.overflowed = False

    def add_source(self, value: Any) -> None:
        """A parsed JSON body (request or response) or raw text; walked only when someone logs."""
        self._sources.append(value)

    def add_generated(self, key: Any, text: str) -> None:
        """Text streamed to the client; ``key`` keeps separate choices/parts from interleaving."""
        if self.overflowed:
            return
        self._generated_size += len(text)
        if self._generated_size > GENERATED_TEXT_LIMIT:
            self.overflowed = True
            self._generated.clear()
            return
        part = self._generated.get(key)
        if part is None:
            part = self._generated[key] = _GeneratedText()
        part.add(text)
        self._matcher = None

    def matcher(self) -> ContentMatcher:
        matcher = self._matcher
        if matcher is None or self._indexed_sources < len(self._sources):
            # Rebuilt when new generated text arrived; sources are few and the build is linear.
            matcher = ContentMatcher()
            for source in self._sources:
                for text in _strings(source) if not isinstance(source, str) else (source,):
                    matcher.add(text)
            for part in list(self._generated.values()):
                matcher.add(part.text())
            self._indexed_sources = len(self._sources)
            self._matcher = matcher
        return matcher


_active: dict[int, GuardedContent] = {}
_ids = itertools.count()


class GuardRegistration:
    """The handle a request holds while its content is guarded."""

    __slots__ = ("key", "content")

    def __init__(self) -> None:
        self.key = next(_ids)
        self.content = GuardedContent()
        _ensure_installed()
        _active[self.key] = self.content

    def release(self, *, after_this_step: bool = False) -> None:
        """Stop guarding. With ``after_this_step`` the content stays guarded until the running event
        loop step ends, so the server's own "Exception in ASGI application" record, logged right after
        the exception leaves the middleware, is still redacted."""
        if after_this_step:
            try:
                asyncio.get_running_loop().call_soon(_active.pop, self.key, None)
                return
            except RuntimeError:
                pass
        _active.pop(self.key, None)


def _redact_text(text: str, matchers: list[ContentMatcher]) -> str:
    for matcher in matchers:
        text = matcher.redact(text)
    return text


def _redact_argument(value: Any, matchers: list[ContentMatcher]) -> Any:
    if isinstance(value, str) and any(matcher.holds(value) for matcher in matchers):
        return REDACTED
    return value


def redact_record(record: logging.LogRecord, contents: list[GuardedContent]) -> None:
    """Rewrite ``record`` in place so that none of ``contents`` survives in it."""
    if any(content.overflowed for content in contents):
        record.msg = f"{REDACTED} (a request too large to match against is in flight)"
        record.args = ()
        record.exc_info = record.exc_text = record.stack_info = None
        return
    matchers = [content.matcher() for content in contents]
    args = record.args
    if isinstance(args, tuple):
        args = tuple(_redact_argument(arg, matchers) for arg in args)
    elif isinstance(args, dict):
        args = {key: _redact_argument(arg, matchers) for key, arg in args.items()}
    try:
        message = str(record.msg) % args if args else str(record.msg)
        failed = False
    except Exception:
        # logging would print the arguments to stderr on this failure; they may hold content.
        message, failed = f"{record.msg} {REDACTED}", True
    redacted = _redact_text(message, matchers)
    if failed or redacted != message or args != record.args:
        record.msg = redacted
        record.args = ()
        count_redaction()
    # else: nothing matched, and the record keeps its own message object for later filters
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        exc_text = _redact_text(record.exc_text, matchers)
        if exc_text != record.exc_text:
            record.exc_text = exc_text
            # Handlers that format exc_info themselves (error trackers, say) would bypass the redacted
            # text, so the exception object goes; a traceback without content keeps it.
            record.exc_info = None
    if record.stack_info:
        record.stack_info = _redact_text(record.stack_info, matchers)
    for name, value in list(vars(record).items()):
        if name not in _STANDARD_RECORD_ATTRIBUTES and isinstance(value, str):
            setattr(record, name, _redact_text(value, matchers))


class _GuardedRecordFactory:
    """Wraps whichever record factory was installed before; see the module docstring."""

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if _active and record.name != ACCESS_LOGGER_NAME:
            redact_record(record, list(_active.values()))
        return record


def _ensure_installed() -> None:
    # Checked on every registration, so a library that later replaces the factory without
    # chaining to ours is wrapped again rather than silently switching the guard off.
    if not isinstance(logging.getLogRecordFactory(), _GuardedRecordFactory):
        logging.setLogRecordFactory(_GuardedRecordFactory(logging.getLogRecordFactory()))


def guarded_request_count() -> int:
    """How many requests' content is guarded right now (for tests and diagnostics)."""
    return len(_active)
