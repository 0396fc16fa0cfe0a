"""The store's MongoDB indexes: declared once, created at start-up, and a conflict explained, never fixed.

A collection may already hold an index under one of our names or on one of our keys with other
options (an older TTL, say). MongoDB then refuses with code 85 or 86; the store does not drop or
change an existing index itself, it fails start-up with a message naming the index, what differs
and the shell command that reconciles it (``collMod`` for a TTL change).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from .base import StoreConfigurationError
from .mongo_documents import Document
from .mongo_errors import translated

TTL_INDEX = "expires_at_ttl"
TENANT_INDEX = "tenant_created_at"
# Created once in start(), never per request, each with an explicit name so a conflict is reported
# by name. expireAfterSeconds=0: every document carries its own expiry in expires_at.
INDEXES = (
    IndexModel([("expires_at", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=0),
    IndexModel([("tenant", ASCENDING), ("created_at", ASCENDING)], name=TENANT_INDEX),
)
_INDEX_CONFLICT_CODES = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict


async def ensure_indexes(collection: AsyncCollection[Document], indexes: Sequence[IndexModel] = INDEXES) -> None:
    """Create the store's indexes; an existing conflicting index is reported, never dropped."""
    with translated(f"create the indexes of {collection.full_name}"):
        try:
            await collection.create_indexes(list(indexes))
        except OperationFailure as exc:
            if exc.code not in _INDEX_CONFLICT_CODES:
                raise
            raise StoreConfigurationError(await _describe_conflict(collection, exc, indexes)) from None


_IGNORED_INDEX_FIELDS = frozenset({"v", "key", "name", "ns", "background"})


def _options(spec: Mapping[str, Any]) -> Document:
    return {k: v for k, v in spec.items() if k not in _IGNORED_INDEX_FIELDS}


async def _describe_conflict(
    collection: AsyncCollection[Document], exc: OperationFailure, indexes: Sequence[IndexModel] = INDEXES
) -> str:
    """Which index conflicts, what differs, and how an operator fixes it by hand."""
    ns, name = collection.full_name, collection.name
    leave = "It was left in place: the middleware never drops or changes an index itself."
    try:
        existing = {spec["name"]: spec async for spec in await collection.list_indexes()}
    except PyMongoError:
        existing = {}
    for model in indexes:
        wanted = model.document
        key, index = dict(wanted["key"]), wanted["name"]
        same_name = existing.get(index)
        same_key = next((s for s in existing.values() if dict(s["key"]) == key and s["name"] != index), None)
        if same_name is not None and dict(same_name["key"]) != key:
            return (
                f"index {index!r} on {ns} has key {dict(same_name['key'])}, but retention-middleware needs "
                f"{key} under that name. {leave} Drop or rename it by hand "
                f"(db.{name}.dropIndex({index!r})), then start again."
            )
        if same_name is not None and _options(same_name) != _options(wanted):
            fix = f"db.{name}.dropIndex({index!r})"
            if "expireAfterSeconds" in wanted and set(_options(same_name)) <= {"expireAfterSeconds"}:
                fix = (
                    f"db.runCommand({{collMod: {name!r}, index: {{name: {index!r}, expireAfterSeconds: "
                    f"{wanted['expireAfterSeconds']}}}}}) (or {fix})"
                )
            return (
                f"index {index!r} on {ns} exists with options {_options(same_name)}, but "
                f"retention-middleware needs {_options(wanted)} (each record carries its own "
                f"expires_at). {leave} Change it with {fix}, then start again."
            )
        if same_key is not None:
            return (
                f"an index on {key} already exists on {ns} as {same_key['name']!r} with options "
                f"{_options(same_key)}; retention-middleware needs it named {index!r} with options "
                f"{_options(wanted)}. {leave} Drop it by hand (db.{name}.dropIndex({same_key['name']!r})), "
                "then start again."
            )
    code_name = (exc.details or {}).get("codeName", "")
    return (
        f"creating the indexes {[m.document['name'] for m in indexes]} on {ns} conflicts with an existing "
        f"index (error code {exc.code} {code_name}). {leave} Compare db.{name}.getIndexes() with them "
        "and fix it by hand, then start again."
    )
