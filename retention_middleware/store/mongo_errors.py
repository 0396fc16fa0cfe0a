"""MongoDB failures as ``StoreError``s whose messages never carry document content.

pymongo's ``OperationFailure`` text can quote document values (validation details, update errors)
and a BSON encoding error can quote the value it could not encode, so only codes, code names and
exception types reach the message. Every MongoStore operation runs inside ``translated``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bson.errors import BSONError
from pymongo.errors import (
    AutoReconnect,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

from .base import StoreError, StoreOutcomeUnknown, StoreRefused

_REFUSALS = (13, 18)  # Unauthorized, AuthenticationFailed


def _outcome_unknown(exc: PyMongoError) -> bool:
    """Whether a failed write may have been applied all the same: it reached the server (no server
    was found is the one failure that proves it did not) and its acknowledgement never came."""
    if isinstance(exc, ServerSelectionTimeoutError):
        return False
    return isinstance(exc, (AutoReconnect, WriteConcernError, ExecutionTimeout)) or exc.timeout


@contextmanager
def translated(operation: str, *, write: bool = False) -> Iterator[None]:
    """Turn every pymongo/BSON failure into StoreError with a message that holds no content.

    For a ``write``, a failure that leaves its outcome open is StoreOutcomeUnknown.
    """
    try:
        yield
    except OperationFailure as exc:  # includes WriteError, ExecutionTimeout, WriteConcernError
        code_name = (exc.details or {}).get("codeName") or ""
        if write and _outcome_unknown(exc):
            message = f"MongoDB may or may not {operation}: error code {exc.code} {code_name}"
            raise StoreOutcomeUnknown(message.rstrip()) from None
        message = f"MongoDB could not {operation}: error code {exc.code} {code_name}"
        raise (StoreRefused if exc.code in _REFUSALS else StoreError)(message.rstrip()) from None
    except PyMongoError as exc:
        # Network, server selection, timeouts: these messages describe hosts and timeouts, not data.
        if write and _outcome_unknown(exc):
            raise StoreOutcomeUnknown(f"MongoDB may or may not {operation}: {type(exc).__name__}: {exc}") from exc
        raise StoreError(f"MongoDB could not {operation}: {type(exc).__name__}: {exc}") from exc
    except (BSONError, OverflowError) as exc:  # e.g. an int beyond 64 bits in usage; the text may quote it
        message = f"could not {operation}: the record cannot be encoded as BSON ({type(exc).__name__})"
        raise StoreError(message) from None
