"""The test server's document commands: inserts, updates, deletes, finds, counts and aggregates.

Each one runs on mongomock and answers in mongod's reply shape (``writeErrors`` with code 11000 for a
duplicate key, cursors with first and next batches) so the driver raises and iterates exactly as it
would against mongod. Options a command does not implement are refused, not ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

from bson.int64 import Int64
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from .mongo_server_state import BackendState, CommandError, Doc, unsupported


class DocumentCommands(BackendState):
    """Writes and reads on the collections' documents."""

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
                raise unsupported(f"delete options {sorted(set(spec) - {'q', 'limit'})}")
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
                raise unsupported(f"update options {sorted(set(spec) - {'q', 'u', 'upsert', 'multi'})}")
            update, upsert = spec["u"], bool(spec.get("upsert", False))
            if isinstance(update, list):
                raise unsupported("an update with an aggregation pipeline")
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
            raise unsupported("findAndModify without remove or an update document")
        existed = coll.find_one(query, {"_id": 1}) is not None
        new = ReturnDocument.AFTER if cmd.get("new") else ReturnDocument.BEFORE
        method = coll.find_one_and_update if any(k.startswith("$") for k in update) else coll.find_one_and_replace
        value = method(query, update, projection=fields, sort=sort, upsert=bool(cmd.get("upsert")), return_document=new)
        n = int(existed or bool(cmd.get("upsert")))
        return {"lastErrorObject": {"n": n, "updatedExisting": existed}, "value": value}

    # -- reads -------------------------------------------------------------------------------------

    def _find(self, db: str, cmd: Doc) -> Doc:
        # hint: mongomock has no indexes to choose between; the real server checks the name exists.
        self._check(cmd, "filter", "sort", "projection", "skip", "limit", "batchSize", "singleBatch", "hint")
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
            raise unsupported("a database-level aggregate")
        docs = list(self._collection(db, name).aggregate(list(cmd.get("pipeline", []))))
        return self._cursor_reply(f"{db}.{name}", docs, (cmd.get("cursor") or {}).get("batchSize"))
