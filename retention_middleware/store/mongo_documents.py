"""Records to MongoDB documents and back: one document per stored response or content record.

Content (input items, responses, logged requests) is stored as orjson bytes, not as sub-documents,
so it round-trips exactly and the server never interprets it; datetimes must be timezone-aware so
``expires_at`` means the same instant to every reader and to the TTL monitor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from .base import ContentRecord, StoredResponse, StoreError

Document = dict[str, Any]


def aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got a naive datetime")
    return moment


def _json_binary(value: Any, what: str) -> bytes:
    # Content is stored as orjson bytes, which BSON carries as Binary (subtype 0), not as a
    # sub-document: JSON keys such as "$ref" or "a.b" inside tool schemas, key order and numbers then
    # round-trip exactly, and the server never reads user content as field paths or operators.
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        raise StoreError(f"{what} is not JSON-serialisable") from None


def _from_json(blob: bytes, record_id: str) -> Any:
    try:
        return orjson.loads(blob)
    except orjson.JSONDecodeError:
        raise StoreError(f"stored record {record_id!r} holds content that is not valid JSON") from None


def response_document(record: StoredResponse) -> Document:
    return {
        "_id": record.id,
        "tenant": record.tenant,
        "created_at": aware(record.created_at, "created_at"),
        "expires_at": aware(record.expires_at, "expires_at"),
        "model": record.model,
        "status": record.status,
        "previous_response_id": record.previous_response_id,
        "ancestors": list(record.ancestors),
        "usage": record.usage,
        "input_items": _json_binary(record.input_items, "input_items"),
        "response": _json_binary(record.response, "response"),
    }


def stored_response(doc: Document) -> StoredResponse:
    return StoredResponse(
        id=doc["_id"],
        tenant=doc["tenant"],
        created_at=doc["created_at"],
        expires_at=doc["expires_at"],
        model=doc.get("model"),
        status=doc.get("status"),
        previous_response_id=doc.get("previous_response_id"),
        ancestors=tuple(doc.get("ancestors") or ()),
        input_items=_from_json(doc["input_items"], doc["_id"]),
        response=_from_json(doc["response"], doc["_id"]),
        usage=doc.get("usage"),
    )


def content_document(record: ContentRecord) -> Document:
    return {
        "_id": record.id,
        "tenant": record.tenant,
        "model": record.model,
        "endpoint": record.endpoint,
        "reason": record.reason,
        "created_at": aware(record.created_at, "created_at"),
        "expires_at": aware(record.expires_at, "expires_at"),
        "request": _json_binary(record.request, "request"),
        "response": _json_binary(record.response, "response"),
    }


def content_record(doc: Document) -> ContentRecord:
    return ContentRecord(
        id=doc["_id"],
        tenant=doc["tenant"],
        model=doc.get("model"),
        endpoint=doc["endpoint"],
        reason=doc["reason"],
        created_at=doc["created_at"],
        expires_at=doc["expires_at"],
        request=_from_json(doc["request"], doc["_id"]),
        response=_from_json(doc["response"], doc["_id"]),
    )
