"""``GET /v1/responses/{id}/input_items``: each kind of input listed in the shape the spec gives it."""

from __future__ import annotations

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.demo import EchoModel

from support.asgi_tools import asgi_client


async def test_input_items_are_listed_as_the_spec_shapes_them() -> None:
    app = RetentionMiddleware(EchoModel("m"), RetentionSettings())
    sent = [
        {"role": "assistant", "content": "Hello"},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {"role": "user", "content": "and now?"},
    ]
    async with asgi_client(app) as http:
        created = (await http.post("/v1/responses", json={"model": "m", "input": sent})).json()
        page = (await http.get(f"/v1/responses/{created['id']}/input_items", params={"order": "asc"})).json()
        past_the_end = (
            await http.get(
                f"/v1/responses/{created['id']}/input_items", params={"after": page["last_id"], "order": "asc"}
            )
        ).json()
    assistant, call, output, user = page["data"]
    # Assistant shorthand: a valid output message, its text a part with annotations and logprobs.
    assert assistant["type"] == "message" and assistant["status"] == "completed"
    assert assistant["content"] == [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}]
    assert call["status"] == "completed" and output["status"] == "completed"
    assert output["id"].startswith("item_") and output["output"] == "42"
    assert user["content"] == [{"type": "input_text", "text": "and now?"}] and "status" not in user
    # An empty page: string ids, as the spec requires, not null.
    assert past_the_end == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}
