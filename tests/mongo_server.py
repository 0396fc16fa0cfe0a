"""A MongoDB server for tests: mockupdb's wire-protocol classes in front of mongomock.

The store has to be tested through the real driver (``AsyncMongoClient``: its pool, timeouts, error
classes, BSON codecs), and no mongod can be installed here. So this module listens on a loopback
port, decodes each message with mockupdb, runs the command with mongomock and answers in the
protocol the driver spoke. It is deliberately strict: a command or option it does not implement is
an error (code 59), never a silent ``ok``, so a test cannot pass by accident.

mockupdb's own ``MockupDB`` server is not used for the sockets: it binds ``localhost`` rather than
``127.0.0.1``, cannot listen again after ``stop()``, and lets a broken pipe escape its threads. The
socket handling here is small; parsing and reply framing stay mockupdb's.

Differences from mongod worth knowing: one global lock (commands run one at a time, connections are
still served concurrently); the TTL monitor runs every ``ttl_interval`` seconds instead of 60; TTL
indexes are kept out of mongomock, whose own TTL would delete on every read; no auth, TLS,
transactions, compression, change streams or server-side sessions beyond accepting ``endSessions``.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import mockupdb
import mongomock
from bson.int64 import Int64
from mongomock import filtering
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

Doc = dict[str, Any]

MAX_BSON_SIZE = 16 * 1024 * 1024
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


def _unsupported(what: str) -> CommandError:
    return CommandError(UNSUPPORTED, "CommandNotFound", f"{what} is not supported by the test server")


def _utcnow() -> datetime:
    # mockupdb decodes BSON dates as naive UTC datetimes, so the backend works in naive UTC too.
    return datetime.now(timezone.utc).replace(tzinfo=None)


class CommandBackend:
    """Runs decoded commands against mongomock. One lock makes it safe for many connection threads."""

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
            return _unsupported(f"command {name!r}").reply()
        try:
            with self.lock:
                reply = handler(db, cmd)
        except CommandError as exc:
            return exc.reply()
        except NotImplementedError as exc:  # mongomock knows the feature exists but lacks it
            return _unsupported(f"{name}: {exc}").reply()
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

    @staticmethod
    def _check(cmd: Doc, *allowed: str) -> None:
        name = next(iter(cmd))
        for field in cmd:
            if field != name and field not in allowed and field not in _GENERIC_FIELDS:
                raise _unsupported(f"option {field!r} of {name}")

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
            "localTime": _utcnow(),
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

    # -- writes ------------------------------------------------------------------------------------

    def _insert(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "documents", "ordered", "bypassDocumentValidation")
        coll = self._collection(db, cmd["insert"], create=True)
        inserted, errors = 0, []
        for index, doc in enumerate(cmd.get("documents", [])):
            try:
                coll.insert_one(doc)
                inserted += 1
            except DuplicateKeyError:
                # The shape mongod gives, so the driver raises DuplicateKeyError (or BulkWriteError).
                errors.append(
                    {
                        "index": index,
                        "code": 11000,
                        "errmsg": f"E11000 duplicate key error collection: {db}.{cmd['insert']} "
                        f"index: _id_ dup key: {{ _id: {doc.get('_id')!r} }}",
                        "keyPattern": {"_id": 1},
                        "keyValue": {"_id": doc.get("_id")},
                    }
                )
                if cmd.get("ordered", True):
                    break
        reply: Doc = {"n": inserted}
        if errors:
            reply["writeErrors"] = errors
        return reply

    def _delete(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "deletes", "ordered")
        coll = self._collection(db, cmd["delete"])
        removed = 0
        for spec in cmd.get("deletes", []):
            if set(spec) - {"q", "limit"}:
                raise _unsupported(f"delete options {sorted(set(spec) - {'q', 'limit'})}")
            if spec.get("limit", 0) == 1:
                removed += coll.delete_one(spec["q"]).deleted_count
            else:
                removed += coll.delete_many(spec["q"]).deleted_count
        return {"n": removed}

    def _update(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "updates", "ordered", "bypassDocumentValidation")
        coll = self._collection(db, cmd["update"], create=True)
        matched = modified = 0
        upserted: list[Doc] = []
        for index, spec in enumerate(cmd.get("updates", [])):
            if set(spec) - {"q", "u", "upsert", "multi"}:
                raise _unsupported(f"update options {sorted(set(spec) - {'q', 'u', 'upsert', 'multi'})}")
            update, upsert = spec["u"], bool(spec.get("upsert", False))
            if isinstance(update, list):
                raise _unsupported("an update with an aggregation pipeline")
            if any(key.startswith("$") for key in update):
                method = coll.update_many if spec.get("multi") else coll.update_one
                result = method(spec["q"], update, upsert=upsert)
            else:
                result = coll.replace_one(spec["q"], update, upsert=upsert)
            matched += result.matched_count
            modified += result.modified_count
            if result.upserted_id is not None:
                upserted.append({"index": index, "_id": result.upserted_id})
        reply: Doc = {"n": matched + len(upserted), "nModified": modified}
        if upserted:
            reply["upserted"] = upserted
        return reply

    def _find_and_modify(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "query", "sort", "remove", "update", "new", "fields", "upsert")
        coll = self._collection(db, cmd["findAndModify"], create=bool(cmd.get("upsert")))
        query, fields = cmd.get("query") or {}, cmd.get("fields")
        sort = list(cmd["sort"].items()) if cmd.get("sort") else None
        if cmd.get("remove"):
            value = coll.find_one_and_delete(query, projection=fields, sort=sort)
            return {"lastErrorObject": {"n": int(value is not None)}, "value": value}
        update = cmd.get("update")
        if not isinstance(update, Mapping):
            raise _unsupported("findAndModify without remove or an update document")
        existed = coll.find_one(query, {"_id": 1}) is not None
        new = ReturnDocument.AFTER if cmd.get("new") else ReturnDocument.BEFORE
        method = coll.find_one_and_update if any(k.startswith("$") for k in update) else coll.find_one_and_replace
        value = method(query, update, projection=fields, sort=sort, upsert=bool(cmd.get("upsert")), return_document=new)
        n = int(existed or bool(cmd.get("upsert")))
        return {"lastErrorObject": {"n": n, "updatedExisting": existed}, "value": value}

    # -- reads -------------------------------------------------------------------------------------

    def _find(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "filter", "sort", "projection", "skip", "limit", "batchSize", "singleBatch")
        name = cmd["find"]
        docs: list[Doc] = []
        if self._exists(db, name):
            cursor = self._collection(db, name).find(cmd.get("filter") or {}, cmd.get("projection"))
            if cmd.get("sort"):
                cursor = cursor.sort(list(cmd["sort"].items()))
            docs = list(cursor.skip(int(cmd.get("skip", 0))).limit(abs(int(cmd.get("limit", 0)))))
        reply = self._cursor_reply(f"{db}.{name}", docs, cmd.get("batchSize"))
        if cmd.get("singleBatch") and reply["cursor"]["id"]:
            self._cursors.pop(int(reply["cursor"]["id"]), None)
            reply["cursor"]["id"] = Int64(0)
        return reply

    def _get_more(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "collection", "batchSize")
        cursor_id = int(cmd["getMore"])
        if cursor_id not in self._cursors:
            raise CommandError(43, "CursorNotFound", f"cursor id {cursor_id} not found")
        ns, docs = self._cursors.pop(cursor_id)
        reply = self._cursor_reply(ns, docs, cmd.get("batchSize"), first=False)
        return reply

    def _kill_cursors(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "cursors")
        ids = [int(cursor_id) for cursor_id in cmd.get("cursors", [])]
        killed = [Int64(i) for i in ids if self._cursors.pop(i, None) is not None]
        missing = [Int64(i) for i in ids if i not in killed]
        return {"cursorsKilled": killed, "cursorsNotFound": missing, "cursorsAlive": [], "cursorsUnknown": []}

    def _count(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "query", "skip", "limit")
        if not self._exists(db, cmd["count"]):
            return {"n": 0}
        kwargs = {k: int(cmd[k]) for k in ("skip", "limit") if cmd.get(k)}
        return {"n": self._collection(db, cmd["count"]).count_documents(cmd.get("query") or {}, **kwargs)}

    def _aggregate(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "pipeline", "cursor", "allowDiskUse")
        name = cmd["aggregate"]
        if not isinstance(name, str):
            raise _unsupported("a database-level aggregate")
        docs = list(self._collection(db, name).aggregate(list(cmd.get("pipeline", []))))
        return self._cursor_reply(f"{db}.{name}", docs, (cmd.get("cursor") or {}).get("batchSize"))

    # -- indexes -----------------------------------------------------------------------------------

    def _specs(self, db: str, name: str) -> dict[str, Doc]:
        """The collection's index specs, ``_id_`` first, as listIndexes reports them."""
        own = self._indexes.setdefault((db, name), {})
        return {"_id_": {"v": 2, "key": {"_id": 1}, "name": "_id_"}, **own}

    def _create_indexes(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "indexes", "commitQuorum")
        name = cmd["createIndexes"]
        created_collection = not self._exists(db, name)
        existing = self._specs(db, name)
        wanted: list[Doc] = []
        for raw in cmd.get("indexes", []):
            spec = self._validated_index(raw)
            same_name = existing.get(spec["name"])
            same_key = next((s for s in existing.values() if list(s["key"].items()) == list(spec["key"].items())), None)
            if same_name is not None and dict(same_name["key"]) != dict(spec["key"]):
                raise CommandError(
                    86,
                    "IndexKeySpecsConflict",
                    "An existing index has the same name as the requested index. "
                    f"Requested index: {spec}, existing index: {same_name}",
                )
            if same_key is not None and same_key["name"] != spec["name"]:
                raise CommandError(
                    85,
                    "IndexOptionsConflict",
                    f"Index already exists with a different name: {same_key['name']}",
                )
            if same_name is not None and same_name != spec:
                raise CommandError(
                    85,
                    "IndexOptionsConflict",
                    "An equivalent index already exists with the same name but different options. "
                    f"Requested index: {spec}, existing index: {same_name}",
                )
            if same_name is None:
                wanted.append(spec)
        # All or nothing, like mongod: nothing is built if any spec conflicts.
        coll = self._collection(db, name, create=True)
        for spec in wanted:
            options = {k: spec[k] for k in ("unique", "sparse", "partialFilterExpression") if k in spec}
            coll.create_index(list(spec["key"].items()), name=spec["name"], **options)
            self._indexes[(db, name)][spec["name"]] = spec
        reply: Doc = {
            "numIndexesBefore": len(existing),
            "numIndexesAfter": len(existing) + len(wanted),
            "createdCollectionAutomatically": created_collection,
        }
        if not wanted:
            reply["note"] = "all indexes already exist"
        return reply

    @staticmethod
    def _validated_index(raw: Mapping[str, Any]) -> Doc:
        allowed = {"key", "name", "expireAfterSeconds", "unique", "sparse", "partialFilterExpression", "v"}
        extra = set(raw) - allowed - {"background"}  # background is ignored by mongod since 4.2
        if extra:
            raise _unsupported(f"index options {sorted(extra)}")
        key = dict(raw.get("key") or {})
        if not key or not isinstance(raw.get("name"), str):
            raise CommandError(9, "FailedToParse", "an index needs a key and a name")
        if any(direction not in (1, -1) for direction in key.values()):
            raise _unsupported(f"index key {key} (only ascending/descending keys)")
        spec: Doc = {"v": 2, "key": key, "name": raw["name"]}
        if "expireAfterSeconds" in raw:
            seconds = raw["expireAfterSeconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
                raise CommandError(67, "CannotCreateIndex", "expireAfterSeconds must be a non-negative integer")
            spec["expireAfterSeconds"] = int(seconds)
        for option in ("unique", "sparse", "partialFilterExpression"):
            if raw.get(option):
                spec[option] = raw[option]
        return spec

    def _list_indexes(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "cursor")
        name = cmd["listIndexes"]
        if not self._exists(db, name):
            raise CommandError(26, "NamespaceNotFound", f"ns does not exist: {db}.{name}")
        specs = [dict(spec) for spec in self._specs(db, name).values()]
        return self._cursor_reply(f"{db}.$cmd.listIndexes.{name}", specs, (cmd.get("cursor") or {}).get("batchSize"))

    def _drop_indexes(self, db: str, cmd: Doc) -> Doc:
        self._check(cmd, "index")
        name, which = cmd["dropIndexes"], cmd.get("index")
        if not self._exists(db, name):
            raise CommandError(26, "NamespaceNotFound", f"ns not found {db}.{name}")
        own = self._indexes.setdefault((db, name), {})
        before = len(own) + 1
        if which == "*":
            names = list(own)
        elif isinstance(which, str):
            names = [which]
        elif isinstance(which, list):
            names = list(which)
        else:  # a key pattern
            names = [n for n, spec in own.items() if list(spec["key"].items()) == list(dict(which).items())]
            if not names:
                raise CommandError(27, "IndexNotFound", f"can't find index with key: {dict(which)}")
        for index_name in names:
            if index_name == "_id_":
                raise CommandError(72, "InvalidOptions", "cannot drop _id index")
            if index_name not in own:
                raise CommandError(27, "IndexNotFound", f"index not found with name [{index_name}]")
        for index_name in names:
            del own[index_name]
            self._collection(db, name).drop_index(index_name)
        return {"nIndexesWas": before}

    def _coll_mod(self, db: str, cmd: Doc) -> Doc:
        # Only what an operator needs to reconcile a TTL index in place, as the store's error suggests.
        self._check(cmd, "index")
        name, change = cmd["collMod"], dict(cmd.get("index") or {})
        if set(change) - {"name", "keyPattern", "expireAfterSeconds"} or "expireAfterSeconds" not in change:
            raise _unsupported(f"collMod {sorted(change)}")
        if not self._exists(db, name):
            raise CommandError(26, "NamespaceNotFound", f"ns does not exist: {db}.{name}")
        own = self._indexes.setdefault((db, name), {})
        match = [
            spec
            for spec in own.values()
            if spec["name"] == change.get("name") or dict(spec["key"]) == dict(change.get("keyPattern") or {})
        ]
        if not match:
            raise CommandError(27, "IndexNotFound", f"cannot find index {change} for ns {db}.{name}")
        spec = match[0]
        old = spec.get("expireAfterSeconds")
        spec["expireAfterSeconds"] = int(change["expireAfterSeconds"])
        reply: Doc = {"expireAfterSeconds_new": spec["expireAfterSeconds"]}
        if old is not None:
            reply["expireAfterSeconds_old"] = old
        return reply

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
            raise _unsupported(f"fail point {cmd['configureFailPoint']!r}")
        mode, data = cmd.get("mode"), dict(cmd.get("data") or {})
        extra = set(data) - {"failCommands", "errorCode", "closeConnection", "blockConnection", "blockTimeMS"}
        if extra:
            raise _unsupported(f"failCommand data {sorted(extra)}")
        if mode == "off":
            self._fail_point = None
        elif mode == "alwaysOn":
            self._fail_point = {"times": None, **data}
        elif isinstance(mode, Mapping) and set(mode) == {"times"}:
            self._fail_point = {"times": int(mode["times"]), **data}
        else:
            raise _unsupported(f"fail point mode {mode!r}")
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

    # -- the TTL monitor's pass --------------------------------------------------------------------

    def expire(self, now: datetime | None = None) -> int:
        """Delete what mongod's TTL monitor would delete now; returns how many documents went."""
        now = now or _utcnow()
        removed = 0
        with self.lock:
            for (db, name), specs in list(self._indexes.items()):
                for spec in list(specs.values()):
                    seconds = spec.get("expireAfterSeconds")
                    if seconds is None or len(spec["key"]) != 1 or not self._exists(db, name):
                        continue
                    field = next(iter(spec["key"]))
                    # $lt on a date matches dates only, and an array when any element (so the
                    # earliest) is past: the same rule mongod's monitor applies.
                    cutoff = now - timedelta(seconds=seconds)
                    removed += self._client[db][name].delete_many({field: {"$lt": cutoff}}).deleted_count
        return removed


class MongoTestServer:
    """A loopback MongoDB endpoint backed by :class:`CommandBackend`, with a TTL monitor thread.

    ``stop()`` closes the listener and every connection but keeps the data, like a mongod that
    went down; ``restart()`` listens again on the same port so clients built from ``uri`` reconnect.
    """

    def __init__(self, *, ttl_interval: float = 60.0, max_wire_version: int = 21) -> None:
        self.backend = CommandBackend(max_wire_version)
        self.ttl_interval = ttl_interval
        self.ttl_passes = 0
        self.ttl_deleted = 0
        self.port = 0
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        self._closed = threading.Event()
        self._ttl_thread: threading.Thread | None = None

    @property
    def errors(self) -> list[str]:
        """Tracebacks of anything that went wrong inside the server; tests assert it stays empty."""
        return self.backend.errors

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> MongoTestServer:
        self._listen(0)
        self._ttl_thread = threading.Thread(target=self._ttl_monitor, name="mongo-test-ttl", daemon=True)
        self._ttl_thread.start()
        return self

    def restart(self) -> None:
        if self.running:
            raise RuntimeError("the test server is already listening")
        self._listen(self.port)

    def stop(self) -> None:
        """Stop listening and drop every connection; data, indexes and the TTL monitor remain."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with self._connections_lock:
            connections = dict(self._connections)
        # Wake the accept loop with a connection of our own: closing a socket does not reliably
        # interrupt a thread blocked in accept() on every platform.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        listener.close()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in connections.values():
            thread.join(5)

    def close(self) -> None:
        self.stop()
        self._closed.set()
        if self._ttl_thread is not None:
            self._ttl_thread.join(5)

    def __enter__(self) -> MongoTestServer:
        return self if self.running else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- threads -----------------------------------------------------------------------------------

    def _listen(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # SO_REUSEADDR lets restart() take the same port back while old connections sit in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name="mongo-test-accept", daemon=True
        )
        self._accept_thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._connections_lock:
                if self._listener is not listener:  # stop() has begun: this is its wake-up call
                    conn.close()
                    return
                thread = threading.Thread(target=self._serve, args=(conn,), name="mongo-test-conn", daemon=True)
                self._connections[conn] = thread
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                request = mockupdb.mock_server_receive_request(conn, None)
                reply = self._answer(request)
                if reply is not None:
                    conn.sendall(reply)
        except OSError:
            pass  # the client hung up, or stop() closed the connection
        except Exception:
            self.errors.append(traceback.format_exc())
        finally:
            with self._connections_lock:
                self._connections.pop(conn, None)
            conn.close()

    def _answer(self, request: mockupdb.Request) -> bytes | None:
        if isinstance(request, mockupdb.OpMsg):
            reply = self._failed(request.command_name) or self.backend.run(request.doc["$db"], request.doc)
            if request.flags & mockupdb.OP_MSG_FLAGS["moreToCome"]:
                return None  # an unacknowledged write (w=0): the client expects no answer
            return mockupdb.OpMsgReply(reply).reply_bytes(request)
        if isinstance(request, mockupdb.Command):
            # Legacy OP_QUERY is only used for the first handshake, before the driver knows OP_MSG works.
            name = request.command_name
            if name not in ("ismaster", "isMaster", "hello"):
                doc = _unsupported(f"OP_QUERY command {name!r}").reply()
            else:
                doc = self.backend.run(request.namespace, request.doc)
            return mockupdb.OpReply(doc).reply_bytes(request)
        raise ValueError(f"legacy opcode {type(request).__name__} is not supported by the test server")

    def _failed(self, command_name: str) -> Doc | None:
        """Apply mongod's failCommand fail point: delay, hang up, or answer with an error code."""
        point = self.backend.fail_point_for(command_name)
        if point is None:
            return None
        if point.get("blockConnection"):
            time.sleep(point.get("blockTimeMS", 0) / 1000)  # outside the lock: other connections go on
        if point.get("closeConnection"):
            raise ConnectionAbortedError("failCommand closeConnection")  # an OSError: _serve hangs up
        if "errorCode" in point:
            code = int(point["errorCode"])
            return CommandError(code, "FailPoint", "Failing command via 'failCommand' failpoint").reply()
        return None

    def _ttl_monitor(self) -> None:
        while not self._closed.wait(self.ttl_interval):
            try:
                self.ttl_deleted += self.backend.expire()
            except Exception:
                self.errors.append(traceback.format_exc())
            self.ttl_passes += 1
