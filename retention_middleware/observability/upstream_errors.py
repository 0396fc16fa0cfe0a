"""How the proxy's forwarder tells the access record why an answer failed.

The forwarder is the app behind the middleware and never sees the record, so the middleware puts
the record in the scope under ``RECORD_KEY``; ``note_error`` sets its ``error`` code unless a code is
already there (the first cause wins). Without the middleware in front, it does nothing.
"""

from __future__ import annotations

from typing import Any

from .._types import Scope

RECORD_KEY = "retention_middleware.access_record"


def note_error(scope: Scope, code: str) -> None:
    record: Any = scope.get(RECORD_KEY)
    if record is not None and record.error is None:
        record.error = code
