"""Keep stored content out of pymongo's own command log.

At DEBUG, pymongo logs every command and reply document on ``pymongo.command`` (truncated, with
binary fields in base64): an insert carries a stored response, a find's reply returns it. A filter on
that logger runs before any handler, wherever the handler is attached and whenever it was added, so
every such record loses its documents and keeps the rest (command name, timing, server).
"""

from __future__ import annotations

import json
import logging
from typing import Any

COMMAND_LOGGER = "pymongo.command"
_DOCUMENTS = ("command", "reply", "failure")
REDACTED = "[redacted]"


class CommandDocumentFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        fields: Any = getattr(record.msg, "_kwargs", None)  # pymongo's structured LogMessage
        if not isinstance(fields, dict):
            # Already rendered to text (the log guard rewrites records it redacted): parse it back.
            try:
                fields = json.loads(record.getMessage())
            except ValueError:
                fields = None
            if not isinstance(fields, dict):
                record.msg, record.args = f"{REDACTED} (pymongo command log)", ()
                return True
            record.msg, record.args = fields, ()
        for name in _DOCUMENTS:
            if name in fields:
                fields[name] = REDACTED
        if isinstance(record.msg, dict):
            record.msg = json.dumps(fields)
        return True


def install_command_document_filter() -> None:
    logger = logging.getLogger(COMMAND_LOGGER)
    if not any(isinstance(existing, CommandDocumentFilter) for existing in logger.filters):
        logger.addFilter(CommandDocumentFilter())
