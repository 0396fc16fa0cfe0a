"""Query parameters of the stored-response endpoints, checked before anything is looked up.

A bad value is a 400 naming the parameter; one that is not ours is ignored, as OpenAI does.
``include`` is accepted both as ``include=a&include=b`` and as ``include[]=a``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from ..errors import invalid_request
from .ids import checked_id
from .include import checked_include


def _pairs(query_string: bytes) -> list[tuple[str, str]]:
    return parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)


def _boolean(value: str, name: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0", ""):
        return False
    raise invalid_request(f"Invalid '{name}': expected true or false.", param=name, code="invalid_value")


def _count(value: str, name: str, low: int, high: int) -> int:
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise invalid_request(
            f"Invalid '{name}': expected an integer from {low} to {high}.", param=name, code="invalid_value"
        )
    return int(value)


@dataclass(frozen=True)
class RetrieveQuery:
    stream: bool = False
    starting_after: int | None = None
    include: frozenset[str] = frozenset()


def retrieve_query(query_string: bytes) -> RetrieveQuery:
    stream = False
    starting_after: int | None = None
    include: list[str] = []
    for name, value in _pairs(query_string):
        if name == "stream":
            stream = _boolean(value, name)
        elif name == "starting_after":
            starting_after = _count(value, name, 0, 2**31 - 1)
        elif name in ("include", "include[]"):
            include.append(value)
    return RetrieveQuery(stream, starting_after, checked_include(include))


@dataclass(frozen=True)
class ListQuery:
    limit: int = 20
    order: str = "desc"
    after: str | None = None
    before: str | None = None


def list_query(query_string: bytes) -> ListQuery:
    limit, order = 20, "desc"
    after: str | None = None
    before: str | None = None
    for name, value in _pairs(query_string):
        if name == "limit":
            limit = _count(value, name, 1, 100)
        elif name == "order":
            if value not in ("asc", "desc"):
                raise invalid_request("Invalid 'order': expected 'asc' or 'desc'.", param="order", code="invalid_value")
            order = value
        elif name == "after":
            after = checked_id(value, "after")
        elif name == "before":
            before = checked_id(value, "before")
    return ListQuery(limit, order, after, before)
