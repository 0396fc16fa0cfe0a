"""``GET /v1/responses`` on MongoDB: a page of a tenant's responses through ``tenant_created_at``.

Responses are ordered by (``created_at``, ``_id``): the id breaks ties between responses stored in
the same millisecond, so a cursor never skips or repeats one. A cursor is an id; its ``created_at``
is read first (one small query), then the page is one ``find`` on the tenant and a ``created_at``
range, hinted to the ``(tenant, created_at)`` index and fetching one more than asked to learn
``has_more``.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from .base import ResponsePage
from .mongo_documents import Document, stored_response
from .mongo_errors import translated
from .mongo_indexes import TENANT_INDEX


def _beyond(cursor: Document, direction: int) -> Document:
    """The filter for documents strictly past ``cursor`` going ``direction`` (1 up, -1 down)."""
    op = "$gt" if direction == ASCENDING else "$lt"
    created = cursor["created_at"]
    return {"$or": [{"created_at": {op: created}}, {"created_at": created, "_id": {op: cursor["_id"]}}]}


async def list_page(
    responses: AsyncCollection[Document],
    live: Document,
    *,
    limit: int,
    order: str,
    after: str | None,
    before: str | None,
) -> ResponsePage | None:
    cursors: dict[str, Document] = {}
    with translated("list responses"):
        for name, cursor_id in (("after", after), ("before", before)):
            if cursor_id is not None:
                found = await responses.find_one({"_id": cursor_id, **live}, projection={"created_at": 1})
                if found is None:
                    return None
                cursors[name] = found
        forward = ASCENDING if order == "asc" else DESCENDING
        # Only "before": walk backwards from it, nearest first, then turn the page the right way round.
        backwards = "before" in cursors and "after" not in cursors
        direction = -forward if backwards else forward
        query: dict[str, Any] = dict(live)
        bounds = []
        if "after" in cursors:
            bounds.append(_beyond(cursors["after"], forward))
        if "before" in cursors:
            bounds.append(_beyond(cursors["before"], -forward))
        if bounds:
            query["$and"] = bounds
        found_docs = (
            await responses.find(query)
            .sort([("created_at", direction), ("_id", direction)])
            .hint(TENANT_INDEX)
            .limit(limit + 1)
            .to_list()
        )
    has_more = len(found_docs) > limit
    page = [stored_response(doc) for doc in found_docs[:limit]]
    if backwards:
        page.reverse()
    return ResponsePage(page, has_more)
