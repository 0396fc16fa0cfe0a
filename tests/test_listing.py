"""``GET /v1/responses``: the caller's stored responses, newest first, paged with the openai
client's own cursor pagination, on both stores; tenant-scoped, expired ones never listed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx2
import pytest
from openai import AsyncOpenAI
from openai.pagination import AsyncCursorPage
from openai.types.responses import Response

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.demo import EchoModel
from retention_middleware.store.base import ResponseStore

from support.asgi_tools import asgi_client

MODEL = "demo-echo"
SECRET = "t" * 32


async def create(app: Any, clock: Any, count: int, key: str = "sk-alice") -> list[str]:
    ids = []
    async with asgi_client(app, headers={"authorization": f"Bearer {key}"}) as http:
        for number in range(count):
            # Stored a millisecond apart (the stores' resolution); within one millisecond the order
            # is by id, which says nothing about which came first.
            clock.advance(timedelta(milliseconds=1))
            answer = await http.post("/v1/responses", json={"model": MODEL, "input": f"turn {number}"})
            ids.append(answer.json()["id"])
    return ids


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_the_openai_client_pages_through_250_responses(
    order: str, response_store: ResponseStore, clock: Any
) -> None:
    app = RetentionMiddleware(
        EchoModel(MODEL), RetentionSettings(tenant_secret=SECRET), store=response_store, clock=clock
    )
    ids = await create(app, clock, 250)
    await create(app, clock, 3, key="sk-bob")  # another tenant's are never listed
    # In-process (the MongoDB client belongs to this event loop), through the SDK's own transport.
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test/v1") as http:
        sdk = AsyncOpenAI(base_url="http://test/v1", api_key="sk-alice", max_retries=0, http_client=http)
        params = {"order": order, "limit": 100}
        page_type = AsyncCursorPage[Response]
        listed = [
            r async for r in sdk.get_api_list("/responses", model=Response, page=page_type, options={"params": params})
        ]
        first_page = await sdk.get_api_list("/responses", model=Response, page=page_type, options={"params": params})
    assert [response.id for response in listed] == (ids[::-1] if order == "desc" else ids)
    assert all(response.output_text.startswith("turn") for response in listed)
    assert len(first_page.data) == 100 and first_page.has_more


async def test_before_pages_back_and_expired_responses_are_never_listed(
    response_store: ResponseStore, clock: Any
) -> None:
    settings = RetentionSettings(tenant_secret=SECRET, ttl=timedelta(hours=1))
    app = RetentionMiddleware(EchoModel(MODEL), settings, store=response_store, clock=clock)
    old = await create(app, clock, 2)
    clock.advance(timedelta(minutes=40))
    new = await create(app, clock, 5)
    async with asgi_client(app, headers={"authorization": "Bearer sk-alice"}) as http:
        page = (await http.get("/v1/responses", params={"limit": 2, "before": new[1]})).json()
        # newest first: before new[1] (in that order) come new[4], new[3], new[2]; the nearest two
        assert [r["id"] for r in page["data"]] == [new[3], new[2]] and page["has_more"] is True
        clock.advance(timedelta(minutes=30))  # the first two have expired
        listed = (await http.get("/v1/responses", params={"order": "asc"})).json()
        assert [r["id"] for r in listed["data"]] == new
        assert listed["first_id"] == new[0] and listed["last_id"] == new[-1] and listed["has_more"] is False
        gone = await http.get("/v1/responses", params={"after": old[0]})
        assert gone.status_code == 400 and gone.json()["error"]["param"] == "after"
    async with asgi_client(app, headers={"authorization": "Bearer sk-nobody"}) as http:
        empty = (await http.get("/v1/responses")).json()
    assert empty == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}


@pytest.mark.parametrize(
    ("query", "param"),
    [("limit=0", "limit"), ("limit=101", "limit"), ("order=up", "order"), ("after=%7B%22%24ne%22%3A1%7D", "after")],
)
async def test_bad_list_parameters_are_400_naming_them(query: str, param: str) -> None:
    app = RetentionMiddleware(EchoModel(MODEL), RetentionSettings())
    async with asgi_client(app) as http:
        answer = await http.get(f"/v1/responses?{query}")
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
