"""``conversation`` on ``POST /v1/responses``: a response that reads from and adds to a conversation.

Before the upstream is called, the conversation's items are put in front of the new input (the
upstream still gets ``store: false`` and never the ``conversation`` parameter). When the response
has completed, the turn's input items and output items are added at the end of the conversation;
if the conversation was deleted meanwhile, nothing is added.
"""

from __future__ import annotations

from typing import Any

from ..errors import invalid_request
from ..responses.ids import checked_id
from ..responses.items import input_as_items
from ..responses.rehydrate import store_unavailable
from ..store.base import StoreError
from ..store.conversations import ConversationStore, Item
from .items import minted_id, not_found, stored_item, zero_refusal

# A failed response adds nothing: the conversation would hold a question without its answer.
_APPENDED_STATUSES = ("completed", "incomplete")


def conversation_id_of(request: dict[str, Any], *, zero: bool) -> str | None:
    """The conversation a create request names (an id or ``{"id": ...}``), checked; raises 400."""
    value = request.get("conversation")
    if value is None:
        return None
    if zero:
        raise zero_refusal("conversation")
    if request.get("previous_response_id") is not None:
        raise invalid_request(
            "Mutually exclusive parameters: provide either 'previous_response_id' or 'conversation', not both.",
            param="conversation",
            code="mutually_exclusive_parameters",
        )
    if isinstance(value, dict):
        return checked_id(value.get("id"), "conversation.id")
    return checked_id(value, "conversation")


class ConversationTurn:
    """One response's part in a conversation: the history it was given and the items it adds."""

    def __init__(self, store: ConversationStore, tenant: str, conversation_id: str, request: dict[str, Any]) -> None:
        self.store = store
        self.tenant = tenant
        self.conversation_id = conversation_id
        self.request = request
        # Checked (and given ids) now, so a malformed input item is a 400 before the upstream is called.
        self.new_items = [
            stored_item(item, f"input[{index}]") for index, item in enumerate(input_as_items(request.get("input", [])))
        ]
        self.appended: int | None = None
        """How many items were added after completion; None until then, or if nothing was."""

    async def upstream_request(self, upstream: dict[str, Any]) -> dict[str, Any]:
        """What the upstream gets: the conversation's items, then the new input; no ``conversation``."""
        try:
            history = await self.store.items(self.tenant, self.conversation_id)
        except StoreError:
            raise store_unavailable() from None
        if history is None:
            raise not_found("Conversation", self.conversation_id)
        rewritten = dict(upstream)
        rewritten.pop("conversation", None)
        rewritten["input"] = history + input_as_items(self.request.get("input", []))
        return rewritten

    async def append(self, response: dict[str, Any]) -> bool:
        """Add the turn to the conversation; False if the conversation is gone (nothing added).

        Raises StoreError when the store fails; the caller then undoes the response's own storing.
        """
        if response.get("status") not in _APPENDED_STATUSES:
            return True
        output = response.get("output")
        items: list[Item] = list(self.new_items)
        for item in output if isinstance(output, list) else []:
            if isinstance(item, dict):
                items.append(item if isinstance(item.get("id"), str) else {"id": minted_id(item.get("type")), **item})
        added = await self.store.append(self.tenant, self.conversation_id, items)
        if added is None:
            return False
        self.appended = len(added)
        return True
