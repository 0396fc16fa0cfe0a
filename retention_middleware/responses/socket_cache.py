"""The ``store: false`` responses of one WebSocket, kept while it is open so a turn can continue one.

OpenAI's WebSocket mode lets ``previous_response_id`` name a ``store: false`` response created on
the same socket: it lives in a connection-local cache, never in storage. Here each such response is
kept as its own input and output items and its parent. Continuing it sends the upstream those items
(and those of any cached parents) as input, with ``previous_response_id`` pointing at the nearest
stored ancestor, if any, for the store to rehydrate. Memory is bounded: at most ``MAX_ENTRIES``
responses, the oldest dropped first, and everything goes when the socket closes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .items import input_as_items

MAX_ENTRIES = 64


@dataclass(frozen=True)
class _Entry:
    parent: str | None
    items: list[Any]


class SocketCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __contains__(self, response_id: object) -> bool:
        return response_id in self._entries

    def keep(self, response: dict[str, Any], request: dict[str, Any]) -> None:
        """Remember a completed ``store: false`` response of this socket with the request it answered
        (as sent upstream: its input already holds any cached history)."""
        response_id = response.get("id")
        output = response.get("output")
        if not isinstance(response_id, str):
            return
        parent = request.get("previous_response_id")
        items = [*input_as_items(request.get("input", [])), *(output if isinstance(output, list) else [])]
        self._entries[response_id] = _Entry(parent if isinstance(parent, str) else None, items)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def continued(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` continuing a cached response: the cached turn's items before the new input, and
        ``previous_response_id`` moved to the stored parent it continued (or removed)."""
        entry = self._entries[body["previous_response_id"]]
        upstream = {key: value for key, value in body.items() if key != "previous_response_id"}
        upstream["input"] = [*entry.items, *input_as_items(body.get("input", []))]
        if entry.parent is not None:
            upstream["previous_response_id"] = entry.parent
        return upstream

    def evict(self, response_id: str) -> None:
        self._entries.pop(response_id, None)

    def clear(self) -> None:
        self._entries.clear()
