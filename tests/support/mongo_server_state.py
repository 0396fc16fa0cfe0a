"""What every command of the MongoDB test server shares: its data, its open cursors, and how it says no.

The documents live in mongomock, the index specs beside it (mongomock would apply a TTL on every
read) and the open cursors here, so a getMore can continue any command's batch. A failure is a
``CommandError``, an ``{ok: 0}`` reply shaped like mongod's; anything not implemented fails with code
59 rather than a silent ``ok``, so a test cannot pass by accident.
"""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timezone
from typing import Any

import mongomock
from bson.int64 import Int64

Doc = dict[str, Any]

UNSUPPORTED = 59  # CommandNotFound: what mongod answers for a command it does not know.

# Fields the driver adds to every command; they change nothing on a single in-memory node.
_GENERIC_FIELDS = frozenset(
    {
        "$db",
        "lsid",
        "$readPreference",
        "$clusterTime",
        "maxTimeMS",
        "writeConcern",
        "readConcern",
        "comment",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
    }
)


class CommandError(Exception):
    """An ``{ok: 0}`` answer, shaped like mongod's so the driver raises the matching error."""

    def __init__(self, code: int, code_name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.code_name = code_name

    def reply(self) -> Doc:
        return {"ok": 0, "errmsg": str(self), "code": self.code, "codeName": self.code_name}


def unsupported(what: str) -> CommandError:
    return CommandError(UNSUPPORTED, "CommandNotFound", f"{what} is not supported by the test server")


def utcnow() -> datetime:
    # mockupdb decodes BSON dates as naive UTC datetimes, so the backend works in naive UTC too.
    return datetime.now(timezone.utc).replace(tzinfo=None)


class BackendState:
    """The mongomock client, the index specs and the open cursors, with the helpers every command uses.

    One lock makes it safe for many connection threads: the dispatcher holds it around each command.
    """

    def __init__(self, max_wire_version: int = 21) -> None:
        self.lock = threading.Lock()
        self.max_wire_version = max_wire_version
        self.errors: list[str] = []
        """Tracebacks of failures inside the server itself; the fixtures assert it stays empty."""
        self._client: mongomock.MongoClient = mongomock.MongoClient()
        # Index specs as the server reports them, by (db, collection) then name. mongomock is told
        # about keys and uniqueness only: given expireAfterSeconds it would purge expired documents
        # on every read, which would hide whether the store filters on expires_at itself.
        self._indexes: dict[tuple[str, str], dict[str, Doc]] = {}
        self._cursors: dict[int, tuple[str, list[Doc]]] = {}
        self._cursor_ids = itertools.count(1)

    @staticmethod
    def _check(cmd: Doc, *allowed: str) -> None:
        name = next(iter(cmd))
        for field in cmd:
            if field != name and field not in allowed and field not in _GENERIC_FIELDS:
                raise unsupported(f"option {field!r} of {name}")

    def _collection(self, db: str, name: Any, *, create: bool = False) -> mongomock.Collection:
        if not isinstance(name, str) or not name:
            raise CommandError(73, "InvalidNamespace", f"invalid collection name {name!r}")
        database = self._client[db]
        if create and not self._exists(db, name):
            # mongod keeps an emptied collection; mongomock forgets it unless it is created explicitly.
            database.create_collection(name)
            self._indexes.setdefault((db, name), {})
        return database[name]

    def _exists(self, db: str, name: str) -> bool:
        return name in self._client[db].list_collection_names()

    def _cursor_reply(self, ns: str, docs: list[Doc], batch_size: Any, *, first: bool = True) -> Doc:
        size = len(docs) if batch_size is None else int(batch_size)
        batch, rest = docs[:size], docs[size:]
        cursor_id = 0
        if rest:
            cursor_id = next(self._cursor_ids)
            self._cursors[cursor_id] = (ns, rest)
        key = "firstBatch" if first else "nextBatch"
        return {"cursor": {"id": Int64(cursor_id), "ns": ns, key: batch}}
