"""The state the stream translator keeps per open output item: where it is and its text so far."""

from __future__ import annotations

from typing import Any

from .response_translation import mint


class OpenItem:
    """An output item being streamed: its place, and the pieces of its current content part."""

    __slots__ = ("kind", "item_id", "output_index", "parts", "pieces", "part_kind", "logprobs", "delta_head")

    def __init__(self, kind: str, item_id: str, output_index: int) -> None:
        self.kind = kind
        self.item_id = item_id
        self.output_index = output_index
        self.parts: list[dict[str, Any]] = []  # finished content parts
        self.pieces: list[str] = []  # the open part's text so far
        self.part_kind: str | None = None
        self.logprobs: list[Any] = []
        self.delta_head: bytes | None = None  # the encoded start of this part's delta events


class OpenCall:
    __slots__ = ("item_id", "call_id", "name", "arguments", "output_index")

    def __init__(self, call_id: str) -> None:
        self.item_id = mint("fc")
        self.call_id = call_id
        self.name = ""
        self.arguments: list[str] = []
        self.output_index = -1  # -1 until the item is announced (it needs its name)
