"""The metadata record: one JSON line per HTTP request on the logger ``retention_middleware.access``.

It carries metadata only: no body, no query string, no header values, no API key and, unless the
operator asks for it, no client address. ``error`` is a code chosen by us, never a message that
could echo content. The library adds no handler: configure the logger like any other, e.g.

    logging.config.dictConfig({
        "version": 1,
        "handlers": {"access": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
        "loggers": {"retention_middleware.access": {"handlers": ["access"], "level": "INFO",
                                                     "propagate": False}},
    })
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import unicodedata
from datetime import datetime, timezone
from typing import Any, Literal

import orjson

from .buffered_lines import BufferedLineHandler
from .log_guard import ACCESS_LOGGER_NAME

access_logger = logging.getLogger(ACCESS_LOGGER_NAME)

# A random per-process prefix and a counter make ids unique across replicas without a syscall per
# request.
_ID_PREFIX = "req_" + os.urandom(5).hex()
_counter = itertools.count(1)


class _SecondClock:
    """ISO-8601 timestamps with milliseconds; the part up to the second is formatted once per second,
    since datetime formatting is a fifth of what writing an access line costs."""

    __slots__ = ("_second", "_prefix")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, timestamp: float) -> str:
        second = int(timestamp)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{int((timestamp - second) * 1000):03d}+00:00"


_timestamps = _SecondClock()

MODEL_MAX_CHARS = 256
# Control and format characters (newlines, ANSI escapes, bidi overrides) and line separators: the
# client chooses the model name, and it must not forge or garble lines in a log viewer.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def loggable_model(model: str | None) -> str | None:
    """The model name as the access log prints it: control characters dropped, at most 256 chars."""
    if model is None or (len(model) <= MODEL_MAX_CHARS and model.isprintable()):
        return model
    kept = (char for char in model[: MODEL_MAX_CHARS * 4] if unicodedata.category(char) not in _UNPRINTABLE)
    return "".join(kept)[:MODEL_MAX_CHARS]


class AccessRecord:
    """What one request did, filled in as it is served and emitted once at the end."""

    __slots__ = (
        "started",
        "started_wall",
        "request_id",
        "method",
        "path",
        "status",
        "first_byte_at",
        "bytes_in",
        "bytes_out",
        "model",
        "stream",
        "usage",
        "tenant",
        "stored",
        "error",
        "content_logged",
        "client",
        "response_complete",
        "disconnected",
    )

    def __init__(self, method: str, path: str, tenant: str) -> None:
        self.started = time.perf_counter()
        self.started_wall = time.time()
        self.request_id = f"{_ID_PREFIX}{next(_counter):x}"
        self.method = method
        self.path = path
        self.status: int | None = None
        self.first_byte_at: float | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.model: str | None = None
        self.stream: bool | None = None
        self.usage: dict[str, int | None] | None = None
        self.tenant = tenant
        # "unknown": a write was sent and never acknowledged, so it may have been applied.
        self.stored: bool | Literal["unknown"] | None = None
        self.error: str | None = None
        self.content_logged = False
        self.client: str | None = None
        self.response_complete = False
        self.disconnected = False

    def to_dict(self, finished: float) -> dict[str, Any]:
        ttfb = None if self.first_byte_at is None else round((self.first_byte_at - self.started) * 1000, 3)
        error = self.error
        if error is None and self.disconnected and not self.response_complete:
            error = "client_disconnected"
        entry: dict[str, Any] = {
            "ts": _timestamps.format(self.started_wall),
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "duration_ms": round((finished - self.started) * 1000, 3),
            "ttfb_ms": ttfb,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "model": loggable_model(self.model),
            "stream": self.stream,
            "usage": self.usage,
            "tenant": self.tenant,
            "stored": self.stored,
            "error": error,
            "content_logged": self.content_logged,
        }
        if self.client is not None:
            entry["client"] = self.client
        return entry


def emit(record: AccessRecord) -> None:
    """Write the record as one JSON line, if anyone listens at INFO."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    line = orjson.dumps(record.to_dict(time.perf_counter())).decode()
    handlers = access_logger.handlers
    if len(handlers) == 1 and not access_logger.propagate and not access_logger.filters:
        handler = handlers[0]
        if type(handler) is BufferedLineHandler and not handler.filters and handler.level <= logging.INFO:
            # The line is final: no LogRecord for a handler that would only take its message back.
            handler.write_line(line)
            return
    # makeRecord + handle skips the stack walk logger.info does to find the caller's file and line,
    # which would only ever point here.
    access_logger.handle(access_logger.makeRecord(ACCESS_LOGGER_NAME, logging.INFO, __file__, 0, line, (), None))
