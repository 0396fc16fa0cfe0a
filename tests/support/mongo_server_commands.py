"""The test server's command dispatcher: which commands exist, and every failure as an ``{ok: 0}`` reply.

``CommandBackend.run`` takes one decoded command, runs it under the backend's lock and always returns
a reply document: a ``CommandError`` becomes mongod's error shape, mongomock's own failures become
``BadValue`` (or ``DuplicateKey``), and a bug in the server itself fails the command loudly and is
kept in ``errors`` for the fixtures to assert on. Besides the table, this module holds the handshake,
collection and database administration, and mongod's ``failCommand`` fail point.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from mongomock import filtering
from pymongo.errors import OperationFailure, PyMongoError

from .mongo_server_documents import DocumentCommands
from .mongo_server_indexes import IndexCommands
from .mongo_server_state import CommandError, Doc, unsupported, utcnow

MAX_BSON_SIZE = 16 * 1024 * 1024


class CommandBackend(DocumentCommands, IndexCommands):
    """Runs decoded commands against mongomock. One lock makes it safe for many connection threads."""

    def __init__(self, max_wire_version: int = 21) -> None:
        super().__init__(max_wire_version)
        self._connection_ids = itertools.count(1)
        self._fail_point: Doc | None = None
        self._handlers: dict[str, Callable[[str, Doc], Doc]] = {
            "hello": self._hello,
            "ismaster": self._hello,
            "isMaster": self._hello,
            "ping": lambda db, cmd: {"ok": 1},
            "buildInfo": self._build_info,
            "buildinfo": self._build_info,
            "endSessions": lambda db, cmd: {"ok": 1},
            "insert": self._insert,
            "find": self._find,
            "getMore": self._get_more,
            "killCursors": self._kill_cursors,
            "count": self._count,
            "delete": self._delete,
            "update": self._update,
            "findAndModify": self._find_and_modify,
            "aggregate": self._aggregate,
            "createIndexes": self._create_indexes,
            "listIndexes": self._list_indexes,
            "dropIndexes": self._drop_indexes,
            "collMod": self._coll_mod,
            "listCollections": self._list_collections,
            "drop": self._drop,
            "dropDatabase": self._drop_database,
            "configureFailPoint": self._configure_fail_point,
        }

    # -- dispatch ----------------------------------------------------------------------------------

    def run(self, db: str, command: Mapping[str, Any]) -> Doc:
        """Execute one command document and return the reply document (never raises)."""
        cmd = dict(command)
        name = next(iter(cmd), "")
        handler = self._handlers.get(name)
        if handler is None:
            return unsupported(f"command {name!r}").reply()
        try:
            with self.lock:
                reply = handler(db, cmd)
        except CommandError as exc:
            return exc.reply()
        except NotImplementedError as exc:  # mongomock knows the feature exists but lacks it
            return unsupported(f"{name}: {exc}").reply()
        except OperationFailure as exc:  # mongomock's own validation, e.g. a bad pipeline stage
            code = exc.code or 2
            return CommandError(code, "DuplicateKey" if code == 11000 else "BadValue", str(exc)).reply()
        except PyMongoError as exc:
            return CommandError(2, "BadValue", str(exc)).reply()
        except Exception as exc:  # a bug in this server: fail the command loudly, keep the connection
            self.errors.append(traceback.format_exc())
            return CommandError(1, "InternalError", f"test server error: {exc!r}").reply()
        reply.setdefault("ok", 1)
        return reply

    # -- handshake and administration --------------------------------------------------------------

    def _hello(self, db: str, cmd: Doc) -> Doc:
        # No topologyVersion: the driver then polls instead of streaming hello replies.
        return {
            "helloOk": True,
            "isWritablePrimary": True,
            "ismaster": True,
            "maxBsonObjectSize": MAX_BSON_SIZE,
            "maxMessageSizeBytes": 48_000_000,
            "maxWriteBatchSize": 100_000,
            "localTime": utcnow(),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": next(self._connection_ids),
            "minWireVersion": 0,
            "maxWireVersion": self.max_wire_version,
            "readOnly": False,
        }

    def _build_info(self, db: str, cmd: Doc) -> Doc:
        return {
            "version": "7.0.0-test-server",
            "versionArray": [7, 0, 0, 0],
            "maxBsonObjectSize": MAX_BSON_SIZE,
        }

    # -- collections and databases -----------------------------------------------------------------

    def _list_collections(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "filter", "nameOnly", "authorizedCollections", "cursor")
        docs = [
            {"name": name, "type": "collection", "options": {}, "info": {"readOnly": False}}
            for name in sorted(self._client[db].list_collection_names())
        ]
        wanted = cmd.get("filter") or {}
        docs = [doc for doc in docs if filtering.filter_applies(wanted, doc)]
        if cmd.get("nameOnly"):
            docs = [{"name": doc["name"], "type": doc["type"]} for doc in docs]
        return self._cursor_reply(f"{db}.$cmd.listCollections", docs, (cmd.get("cursor") or {}).get("batchSize"))

    def _drop(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd)
        name = cmd["drop"]
        if not self._exists(db, name):
            raise CommandError(26, "NamespaceNotFound", "ns not found")
        count = len(self._specs(db, name))
        self._client[db].drop_collection(name)
        self._indexes.pop((db, name), None)
        return {"nIndexesWas": count, "ns": f"{db}.{name}"}

    def _drop_database(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd)
        self._client.drop_database(db)
        for key in [key for key in self._indexes if key[0] == db]:
            del self._indexes[key]
        return {"dropped": db}

    # -- mongod's failCommand fail point (a test command, also on a real mongod with enableTestCommands)

    def _configure_fail_point(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "mode", "data")
        if cmd["configureFailPoint"] != "failCommand":
            raise unsupported(f"fail point {cmd['configureFailPoint']!r}")
        mode, data = cmd.get("mode"), dict(cmd.get("data") or {})
        extra = set(data) - {"failCommands", "errorCode", "closeConnection", "blockConnection", "blockTimeMS"}
        if extra:
            raise unsupported(f"failCommand data {sorted(extra)}")
        if mode == "off":
            self._fail_point = None
        elif mode == "alwaysOn":
            self._fail_point = {"times": None, **data}
        elif isinstance(mode, Mapping) and set(mode) == {"times"}:
            self._fail_point = {"times": int(mode["times"]), **data}
        else:
            raise unsupported(f"fail point mode {mode!r}")
        return {"count": 0}

    def fail_point_for(self, command_name: str) -> Doc | None:
        """The failCommand settings that apply to this command now (using up one of its ``times``)."""
        with self.lock:
            point = self._fail_point
            if point is None or command_name not in point.get("failCommands", []):
                return None
            if point["times"] is not None:
                point["times"] -= 1
                if point["times"] <= 0:
                    self._fail_point = None
            return point
