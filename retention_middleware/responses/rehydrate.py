"""Rebuilding a conversation from the store for ``previous_response_id``.

Each stored turn lists the ids of all its ancestors, so the whole chain comes back in one store
query. The upstream input becomes, oldest first, each turn's input items followed by its output
items, then the new input. If any turn of the chain was deleted or has expired, the request fails
with 400 naming it: deleted content is never sent upstream again.
"""

from __future__ import annotations

from ..errors import OpenAIError, invalid_request
from ..store.base import ResponseStore, StoredResponse, StoreError


def store_unavailable() -> OpenAIError:
    return OpenAIError(
        503,
        "The response store is unavailable; please retry shortly.",
        type="server_error",
        code="store_unavailable",
    )


def _missing(previous_id: str, missing_id: str) -> OpenAIError:
    if missing_id == previous_id:
        message = f"Previous response with id '{previous_id}' not found."
    else:
        message = (
            f"Previous response with id '{previous_id}' cannot be continued: the earlier response "
            f"'{missing_id}' in its conversation has been deleted or has expired."
        )
    return invalid_request(message, param="previous_response_id", code="previous_response_not_found")


async def rehydrate(store: ResponseStore, tenant: str, previous_id: str) -> list[StoredResponse]:
    """The stored turns of the conversation ending at ``previous_id``, oldest first."""
    try:
        chain = await store.get_chain(tenant, previous_id)
    except StoreError:
        raise store_unavailable() from None
    if chain.response is None:
        raise _missing(previous_id, previous_id)
    turns: list[StoredResponse] = []
    for ancestor_id in chain.response.ancestors:
        ancestor = chain.ancestors.get(ancestor_id)
        if ancestor is None:
            raise _missing(previous_id, ancestor_id)
        turns.append(ancestor)
    turns.append(chain.response)
    for turn in turns:
        if turn.status == "in_progress":  # still streaming (here or on another replica): no output yet
            raise invalid_request(
                f"Previous response with id '{previous_id}' cannot be continued yet: the response "
                f"'{turn.id}' in its conversation is still in progress.",
                param="previous_response_id",
                code="previous_response_in_progress",
            )
    return turns
