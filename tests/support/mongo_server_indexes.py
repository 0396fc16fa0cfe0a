"""The test server's indexes: created, listed, dropped and changed like mongod's, and its TTL pass.

The specs these commands keep live beside mongomock rather than in it (``BackendState`` says why),
so the TTL is this module's to apply: ``expire`` deletes what mongod's TTL monitor would. Conflicts
are answered with mongod's codes (85 ``IndexOptionsConflict``, 86 ``IndexKeySpecsConflict``) so the
store's conflict handling is tested for real.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .mongo_server_state import BackendState, CommandError, Doc, unsupported, utcnow


class IndexCommands(BackendState):
    """createIndexes, listIndexes, dropIndexes and collMod on the kept index specs, and the TTL pass."""

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
            raise unsupported(f"index options {sorted(extra)}")
        key = dict(raw.get("key") or {})
        if not key or not isinstance(raw.get("name"), str):
            raise CommandError(9, "FailedToParse", "an index needs a key and a name")
        if any(direction not in (1, -1) for direction in key.values()):
            raise unsupported(f"index key {key} (only ascending/descending keys)")
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
            raise unsupported(f"collMod {sorted(change)}")
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

    # -- the TTL monitor's pass --------------------------------------------------------------------

    def expire(self, now: datetime | None = None) -> int:
        """Delete what mongod's TTL monitor would delete now; returns how many documents went."""
        now = now or utcnow()
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
