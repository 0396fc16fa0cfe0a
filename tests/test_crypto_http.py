"""Encryption at rest as a client and an operator see it: through the middleware, on both stores."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.crypto import SEALED
from retention_middleware.crypto.keys import new_key_text
from retention_middleware.demo import EchoModel
from retention_middleware.store.base import ResponseStore, StoredResponse
from retention_middleware.tenancy import TenantResolver

from support.asgi_tools import asgi_client, capture_all_logs
from support.mongo_fixtures import FakeClock

SECRET = "crypto-http-secret-0123456789abcdef"
KEY = new_key_text()


def tenant_of(api_key: str) -> str:
    return TenantResolver(SECRET, None).tenant_of([(b"authorization", f"Bearer {api_key}".encode())])


def bearer(api_key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"}


def middleware(store: ResponseStore, clock: FakeClock, **settings: Any) -> RetentionMiddleware:
    chosen = {"tenant_secret": SECRET, "encryption_key": KEY, **settings}
    return RetentionMiddleware(EchoModel(), RetentionSettings(**chosen), store=store, clock=clock)


def canary() -> str:
    return f"CANARY-{uuid.uuid4().hex}"


async def create(client: httpx.AsyncClient, api_key: str, text: str, **extra: Any) -> httpx.Response:
    return await client.post("/v1/responses", headers=bearer(api_key), json={"model": "demo", "input": text, **extra})


async def tamper(store: ResponseStore, tenant: str, response_id: str) -> str:
    """Flip one ciphertext bit of a stored response in place; the sealed text it held."""
    held = await store.get(tenant, response_id)
    assert held is not None
    envelope = bytearray(base64.b64decode(held.response[SEALED]))
    envelope[30] ^= 0x04
    await store.delete(tenant, response_id)
    await store.put(dataclasses.replace(held, response={SEALED: base64.b64encode(bytes(envelope)).decode()}))
    return str(held.response[SEALED])


def rehydrated(first: httpx.Response, second: httpx.Response) -> bool:
    """The echo model counts every word it was sent: the second turn got the first one's whole history."""
    earlier = first.json()["usage"]
    return bool(second.json()["usage"]["input_tokens"] > earlier["input_tokens"] + earlier["output_tokens"])


def access(logs: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in logs.access_lines()]


async def test_everything_round_trips_and_the_store_holds_only_sealed_content(
    response_store: ResponseStore, clock: FakeClock
) -> None:
    secret_text = canary()
    app = middleware(response_store, clock, opt_in_tenants=frozenset({tenant_of("sk-a")}))
    async with asgi_client(app) as client:
        first = await create(client, "sk-a", f"remember {secret_text}")
        second = await create(client, "sk-a", "and then?", previous_response_id=first.json()["id"])
        assert rehydrated(first, second)
        got = await client.get(f"/v1/responses/{first.json()['id']}", headers=bearer("sk-a"))
        assert got.json() == first.json()
        items = await client.get(f"/v1/responses/{first.json()['id']}/input_items", headers=bearer("sk-a"))
        assert secret_text in items.json()["data"][0]["content"][0]["text"]
    held = await response_store.get(tenant_of("sk-a"), first.json()["id"])
    assert isinstance(held, StoredResponse) and set(held.response) == {SEALED} and secret_text not in repr(held)
    kept = await response_store.find_content(tenant_of("sk-a"))
    assert len(kept) == 2 and secret_text not in repr(kept)
    opened = await app.store.find_content(tenant_of("sk-a"))  # the operator's view, with the master key
    assert {record.request["input"] for record in opened} == {f"remember {secret_text}", "and then?"}


async def test_erasure_destroys_the_key_and_a_backup_copy_no_longer_decrypts(
    response_store: ResponseStore, clock: FakeClock
) -> None:
    app = middleware(response_store, clock)
    async with asgi_client(app) as client:
        created = (await create(client, "sk-a", canary())).json()
        other = (await create(client, "sk-b", canary())).json()
        backup = await response_store.get(tenant_of("sk-a"), created["id"])  # copied aside before the erasure
        erased = await client.delete("/v1/retention/data", headers=bearer("sk-a"))
        assert erased.json() == {
            "object": "retention.erasure",
            "responses_deleted": 1,
            "content_records_deleted": 0,
            "conversations_deleted": 0,
            "keys_destroyed": 1,
        }
        assert backup is not None
        await response_store.put(backup)  # the backup restored into the database
        with capture_all_logs() as logs:
            restored = await client.get(f"/v1/responses/{created['id']}", headers=bearer("sk-a"))
        assert restored.status_code == 404 and restored.json()["error"]["code"] == "not_found"
        assert access(logs)[0]["error"] == "decrypt_failed"
        assert (await client.get(f"/v1/responses/{other['id']}", headers=bearer("sk-b"))).status_code == 200
        # The tenant carries on with a fresh data key.
        fresh = (await create(client, "sk-a", "a new start")).json()
        assert (await client.get(f"/v1/responses/{fresh['id']}", headers=bearer("sk-a"))).json() == fresh
        again = await client.delete("/v1/retention/data", headers=bearer("sk-a"))
        assert again.json()["keys_destroyed"] == 1 and again.json()["responses_deleted"] == 2


async def test_a_record_that_fails_to_decrypt_is_404_logged_as_decrypt_failed_and_never_logged(
    response_store: ResponseStore, clock: FakeClock
) -> None:
    secret_text = canary()
    app = middleware(response_store, clock)
    async with asgi_client(app) as client:
        created = (await create(client, "sk-a", secret_text)).json()
        sealed = await tamper(response_store, tenant_of("sk-a"), created["id"])
        with capture_all_logs() as logs:
            got = await client.get(f"/v1/responses/{created['id']}", headers=bearer("sk-a"))
            items = await client.get(f"/v1/responses/{created['id']}/input_items", headers=bearer("sk-a"))
        assert (
            got.status_code == 404
            and got.json()["error"]["message"] == f"Response with id '{created['id']}' not found."
        )
        assert items.status_code == 404
        assert [entry["error"] for entry in access(logs)] == ["decrypt_failed", "decrypt_failed"]
        text = logs.text()
        assert created["id"] in text  # the warning names the record, so an operator can find it
        assert secret_text not in text and sealed[:16] not in text and sealed[-16:] not in text
        # Deleting needs no key: the owner can still remove what no longer opens.
        assert (await client.delete(f"/v1/responses/{created['id']}", headers=bearer("sk-a"))).status_code == 200


async def test_a_chain_through_a_turn_that_fails_to_decrypt_is_refused_naming_it(
    response_store: ResponseStore, clock: FakeClock
) -> None:
    app = middleware(response_store, clock)
    async with asgi_client(app) as client:
        first = (await create(client, "sk-a", canary())).json()
        second = (await create(client, "sk-a", "more", previous_response_id=first["id"])).json()
        await tamper(response_store, tenant_of("sk-a"), first["id"])
        with capture_all_logs() as logs:
            refused = await create(client, "sk-a", "go on", previous_response_id=second["id"])
        error = refused.json()["error"]
        assert refused.status_code == 400 and error["code"] == "previous_response_not_found"
        assert first["id"] in error["message"] and error["param"] == "previous_response_id"
        assert access(logs)[0]["error"] == "decrypt_failed"


async def test_caller_key_mode_only_the_callers_own_key_reads(response_store: ResponseStore, clock: FakeClock) -> None:
    secret_text = canary()
    app = middleware(response_store, clock, encryption="caller-key", encryption_key=None)
    async with asgi_client(app) as client:
        created = (await create(client, "sk-a", secret_text)).json()
        path = f"/v1/responses/{created['id']}"
        assert (await client.get(path, headers=bearer("sk-a"))).json() == created  # the right key can
        assert (await client.get(path, headers=bearer("sk-b"))).status_code == 404  # another key cannot
        assert (await client.get(path)).status_code == 404
        continued = await create(client, "sk-a", "next", previous_response_id=created["id"])
        assert rehydrated((await client.get(path, headers=bearer("sk-a"))), continued)
        # Without a bearer token there is no key: answered, but not stored, and the log says why.
        with capture_all_logs() as logs:
            anonymous = await client.post("/v1/responses", json={"model": "demo", "input": "hello"})
        assert anonymous.status_code == 200 and access(logs)[0]["error"] == "caller_key_missing"
        erased = await client.delete("/v1/retention/data", headers=bearer("sk-a"))
        assert erased.json()["keys_destroyed"] == 0 and erased.json()["responses_deleted"] == 2  # no key held
    # The operator's tools, database and master key alike, read nothing.
    async with asgi_client(app) as client:
        again = (await create(client, "sk-a", secret_text)).json()
    held = await response_store.get(tenant_of("sk-a"), again["id"])
    assert held is not None and secret_text not in repr(held)
    operator = middleware(response_store, clock)  # same database and secret, plus a master key
    async with asgi_client(operator) as client:
        assert (await client.get(f"/v1/responses/{again['id']}", headers=bearer("sk-a"))).status_code == 404


async def test_listed_responses_are_opened_and_one_that_fails_to_decrypt_is_left_out(
    response_store: ResponseStore, clock: FakeClock
) -> None:
    app = middleware(response_store, clock)
    texts = [canary() for _ in range(3)]
    async with asgi_client(app) as client:
        created = []
        for text in texts:
            created.append((await create(client, "sk-a", text)).json())
            clock.advance(timedelta(seconds=1))  # distinct creation times: the list's order is theirs
        listed = await client.get("/v1/responses", params={"order": "asc"}, headers=bearer("sk-a"))
        assert [entry["id"] for entry in listed.json()["data"]] == [entry["id"] for entry in created]
        assert listed.json()["data"] == created  # opened: exactly what each create answered
        await tamper(response_store, tenant_of("sk-a"), created[1]["id"])
        with capture_all_logs() as logs:
            again = await client.get("/v1/responses", params={"order": "asc"}, headers=bearer("sk-a"))
        assert again.status_code == 200
        assert created[1]["id"] not in [entry["id"] for entry in again.json()["data"]]
        assert texts[0] in again.text and texts[1] not in again.text
        assert all(text not in logs.text() for text in texts)
