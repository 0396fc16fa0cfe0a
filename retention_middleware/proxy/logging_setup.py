"""How ``retention-proxy`` prints: access lines on stdout, everything else on stderr, text or JSON.

``--log-level`` sets the level of every logger but the access log (always INFO: it is the product's
output). uvicorn logs its lifecycle ("Started server process", "Application startup complete") on a
logger named ``uvicorn.error``; alerts that grep for "error" would fire on every start, so those
records are printed as ``uvicorn``. ``--log-format json`` prints each stderr line, the banner
included, as one JSON object (``ts``, ``level``, ``logger``, ``message``); access lines are JSON
either way. With several workers each access line also names its worker (``pid``). Access lines are
written in batches (``logs.buffered_lines``), at most ``--access-log-flush`` seconds late.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import Any

import orjson

from ..logs.buffered_lines import BufferedLineHandler
from ..logs.log_guard import ACCESS_LOGGER_NAME

LEVELS = ("critical", "error", "warning", "info", "debug")
FORMATS = ("text", "json")


class _UvicornRename(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error":
            record.name = "uvicorn"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; exception text, when there is one, goes in ``exc_info``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(
    level: str = "info", log_format: str = "text", *, pid: bool = False, access_flush: float = 0.1
) -> None:
    """``access_flush``: seconds an access line may wait to be written with others (0: at once)."""
    access = logging.getLogger(ACCESS_LOGGER_NAME)
    for old in access.handlers:
        old.close()  # a handler of an earlier configuration writes what it still holds
    access.handlers[:] = [BufferedLineHandler(sys.stdout, interval=access_flush, pid=pid)]
    access.setLevel(logging.INFO)
    access.propagate = False
    errors = logging.StreamHandler(sys.stderr)
    errors.addFilter(_UvicornRename())
    if log_format == "json":
        errors.setFormatter(JsonFormatter())
    else:
        errors.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [errors]
    root.setLevel(level.upper())
    # uvicorn sets its own loggers' levels only from its log_config, which the proxy does not pass.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(level.upper())


def print_banner(lines: list[str], fields: dict[str, Any], log_format: str) -> None:
    """The start-up banner: plain lines on stderr, or one JSON object carrying ``fields``."""
    if log_format == "json":
        entry = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "level": "INFO",
                 "logger": "retention_middleware.proxy", "message": lines[0], **fields}  # fmt: skip
        print(orjson.dumps(entry).decode(), file=sys.stderr, flush=True)
    else:
        print("\n".join(lines), file=sys.stderr, flush=True)
