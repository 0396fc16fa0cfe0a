"""EncryptingStore on both stores: content sealed at rest, opened only by the right key for the right record."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import bson
import pytest

from retention_middleware.crypto.caller_key import CallerKeys
from retention_middleware.crypto.fields import SEALED, CallerKeySealer
from retention_middleware.crypto.keys import new_key_text, parse_master_keys
from retention_middleware.crypto.layer import vault_backend
from retention_middleware.crypto.store import EncryptingStore
from retention_middleware.store import MongoStore, ResponseStore, StoredResponse

from support.crypto_tools import as_caller, master_key_store
from support.crypto_tools import caller_key_store as support_caller_key_store
from support.mongo_fixtures import FakeClock, MongoClient, content_record, response_record

CANARY = "CANARY-the-eagle-lands-at-dawn-4417"
KEY_A, KEY_B = new_key_text(), new_key_text()
SECRET = "caller-key-test-secret-0123456789"


def canary_record(response_id: str, clock: FakeClock, *, tenant: str = "tenant-a", **kw: Any) -> StoredResponse:
    return response_record(
        response_id,
        clock,
        tenant=tenant,
        input_items=[{"type": "message", "role": "user", "content": f"{CANARY} question {response_id}"}],
        response={"id": response_id, "object": "response", "output": [{"type": "message", "content": CANARY}]},
        **kw,
    )


def caller_key_store(inner: ResponseStore) -> EncryptingStore:
    return support_caller_key_store(inner, SECRET)


@pytest.fixture(params=["master-key", "caller-key"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def encrypted(store: ResponseStore, mode: str) -> EncryptingStore:
    return master_key_store(store, KEY_A, vault_backend(store)) if mode == "master-key" else caller_key_store(store)


async def test_round_trip_in_every_mode(store: ResponseStore, store_clock: FakeClock, mode: str) -> None:
    sealed = encrypted(store, mode)
    first = canary_record("resp_1", store_clock)
    second = canary_record("resp_2", store_clock, ancestors=("resp_1",))
    logged = content_record("content_1", store_clock)
    with as_caller("sk-alice"):
        await sealed.put(first)
        await sealed.put(second)
        await sealed.put_content(logged)
        assert await sealed.get("tenant-a", "resp_1") == first
        chain = await sealed.get_chain("tenant-a", "resp_2")
        assert chain.response == second and chain.ancestors == {"resp_1": first}
        assert list(await sealed.find_content("tenant-a")) == [logged]
    # What the wrapped store holds is sealed; metadata stays in clear for its queries.
    held = await store.get("tenant-a", "resp_1")
    assert held is not None and set(held.response) == {SEALED} and held.model == "demo-model"
    assert held.usage == first.usage and CANARY not in repr(held)
    assert CANARY not in repr(await store.find_content("tenant-a")) and "prompt content_1" not in repr(
        await store.find_content("tenant-a")
    )
    assert await sealed.delete("tenant-a", "resp_1") and await sealed.get("tenant-a", "resp_1") is None


async def test_raw_mongodb_documents_hold_no_canary(
    make_mongo_store: Any, mongo_client: MongoClient, mongo_db_name: str, store_clock: FakeClock, mode: str
) -> None:
    inner: MongoStore = make_mongo_store()
    sealed = encrypted(inner, mode)
    with as_caller("sk-alice"):
        await sealed.put(canary_record("resp_1", store_clock))
        await sealed.put_content(
            dataclasses.replace(content_record("content_1", store_clock), request={"prompt": CANARY})
        )
    database = mongo_client[mongo_db_name]
    raw = b""
    for name in ("responses", "content", "data_keys"):
        async for document in database[name].find({}):
            raw += bson.encode(document)
    assert b"resp_1" in raw and b"tenant-a" in raw and b"demo-model" in raw  # the metadata it queries
    for needle in (CANARY, "question resp_1", "prompt", "answer"):
        assert needle.encode() not in raw, needle
    keys_held = await database["data_keys"].count_documents({})
    assert keys_held == (1 if mode == "master-key" else 0)  # caller-key: the server holds no key at all


async def _put_sealed_copy(store: ResponseStore, record: StoredResponse, **changes: Any) -> None:
    await store.put(dataclasses.replace(record, **changes))


async def test_a_ciphertext_moved_to_another_record_tenant_or_field_does_not_open(
    store: ResponseStore, store_clock: FakeClock, mode: str
) -> None:
    sealed = encrypted(store, mode)
    with as_caller("sk-alice"):
        await sealed.put(canary_record("resp_a", store_clock))
        await sealed.put(canary_record("resp_b", store_clock))
    held_a = await store.get("tenant-a", "resp_a")
    held_b = await store.get("tenant-a", "resp_b")
    assert held_a is not None and held_b is not None
    # B's row with A's sealed response: the associated data names resp_a, so it must not open as resp_b.
    await store.delete("tenant-a", "resp_b")
    await _put_sealed_copy(store, held_b, response=held_a.response)
    await _put_sealed_copy(store, held_a, id="resp_moved")
    await _put_sealed_copy(
        store, held_a, id="resp_fields", input_items=[held_a.response], response=held_a.input_items[0]
    )
    with as_caller("sk-alice") as keys:
        assert await sealed.get("tenant-a", "resp_a") is not None
        for response_id in ("resp_b", "resp_moved", "resp_fields"):
            assert await sealed.get("tenant-a", response_id) is None, response_id
        assert keys.decrypt_failed
        # The same row filed under another tenant (same id, same bytes) does not open either.
        await store.delete("tenant-a", "resp_a")
        await _put_sealed_copy(store, held_a, tenant="tenant-b")
        assert await sealed.get("tenant-b", "resp_a") is None


def _tampered(sealed_value: dict[str, str], how: str) -> dict[str, str]:
    envelope = bytearray(base64.b64decode(sealed_value[SEALED]))
    if how == "truncated":
        envelope = envelope[:-1]
    elif how == "short":
        envelope = envelope[:20]
    elif how == "flipped-ciphertext":
        envelope[25] ^= 0x01
    elif how == "flipped-tag":
        envelope[-1] ^= 0x80
    elif how == "flipped-nonce":
        envelope[10] ^= 0x01
    return {SEALED: base64.b64encode(bytes(envelope)).decode()}


@pytest.mark.parametrize("how", ["truncated", "short", "flipped-ciphertext", "flipped-tag", "flipped-nonce"])
async def test_a_truncated_or_bit_flipped_ciphertext_is_refused(
    store: ResponseStore, store_clock: FakeClock, how: str
) -> None:
    sealed = encrypted(store, "master-key")
    await sealed.put(canary_record("resp_a", store_clock))
    held = await store.get("tenant-a", "resp_a")
    assert held is not None and isinstance(held.response, dict)
    await store.delete("tenant-a", "resp_a")
    await store.put(dataclasses.replace(held, response=_tampered(held.response, how)))
    with as_caller(None) as keys:
        assert await sealed.get("tenant-a", "resp_a") is None
        assert (await sealed.get_chain("tenant-a", "resp_a")).response is None
        assert keys.decrypt_failed


async def test_content_in_clear_is_never_handed_out_when_encryption_is_on(
    store: ResponseStore, store_clock: FakeClock
) -> None:
    await store.put(canary_record("resp_plain", store_clock))  # written before encryption, or planted
    await store.put_content(content_record("content_plain", store_clock))
    sealed = encrypted(store, "master-key")
    assert await sealed.get("tenant-a", "resp_plain") is None
    assert list(await sealed.find_content("tenant-a")) == []


async def test_rotation_keeps_records_under_two_master_keys_readable(
    store: ResponseStore, store_clock: FakeClock
) -> None:
    backend = vault_backend(store)
    old = master_key_store(store, KEY_A, backend)
    first = canary_record("resp_old", store_clock, tenant="tenant-1")
    await old.put(first)
    both = master_key_store(store, f"{KEY_B},{KEY_A}", backend)  # new,old
    second = canary_record("resp_new", store_clock, tenant="tenant-2")
    await both.put(second)
    assert await both.get("tenant-1", "resp_old") == first and await both.get("tenant-2", "resp_new") == second
    newest = parse_master_keys(KEY_B, "b").newest.key_id
    wrapped_by = {entry.tenant: entry.master_key_id for entry in await backend.entries()}
    assert wrapped_by["tenant-2"] == newest and wrapped_by["tenant-1"] != newest
    # Without the old key, the old tenant's data key cannot be unwrapped: closed, not an error.
    assert await master_key_store(store, KEY_B, backend).get("tenant-1", "resp_old") is None
    assert await both.rotate_keys() == (1, 1, 0)
    assert {entry.master_key_id for entry in await backend.entries()} == {newest}
    only_new = master_key_store(store, KEY_B, backend)
    assert await only_new.get("tenant-1", "resp_old") == first and await only_new.get("tenant-2", "resp_new") == second
    assert await master_key_store(store, KEY_A, backend).get("tenant-1", "resp_old") is None  # old key retired


async def test_destroying_the_key_makes_a_backup_copy_unreadable(store: ResponseStore, store_clock: FakeClock) -> None:
    backend = vault_backend(store)
    sealed = master_key_store(store, KEY_A, backend)
    original = canary_record("resp_1", store_clock)
    await sealed.put(original)
    await sealed.put(canary_record("resp_other", store_clock, tenant="tenant-b"))
    backup = await store.get("tenant-a", "resp_1")  # a copy taken aside, as a backup would
    assert backup is not None
    assert await sealed.destroy_tenant_keys("tenant-a") == 1
    assert await sealed.destroy_tenant_keys("tenant-a") == 0
    await store.delete_tenant("tenant-a")
    await store.put(backup)  # the backup restored into the database
    # Every reader now, this process or a fresh one with the same master key, finds no key that opens it.
    assert await sealed.get("tenant-a", "resp_1") is None
    assert await master_key_store(store, KEY_A, backend).get("tenant-a", "resp_1") is None
    assert await sealed.get("tenant-b", "resp_other") is not None  # another tenant keeps its key
    # The tenant's next write gets a fresh data key, and it works.
    await store.delete("tenant-a", "resp_1")
    await sealed.put(original)
    assert await sealed.get("tenant-a", "resp_1") == original
    assert {entry.tenant for entry in await backend.entries()} == {"tenant-a", "tenant-b"}


async def test_caller_key_only_the_callers_own_key_reads(store: ResponseStore, store_clock: FakeClock) -> None:
    sealed = caller_key_store(store)
    record = canary_record("resp_1", store_clock)
    with as_caller("sk-alice"):
        await sealed.put(record)
    with as_caller("sk-alice"):
        assert await sealed.get("tenant-a", "resp_1") == record  # the right key can
    for token in ("sk-mallory", "sk-alice2", None):  # another key of the same tenant, or none, cannot
        with as_caller(token) as keys:
            assert await sealed.get("tenant-a", "resp_1") is None
            assert keys.decrypt_failed
    # The operator's tools: the database, the server secret, any master key and the vault see nothing.
    operator = master_key_store(store, KEY_A, vault_backend(store))
    assert await operator.get("tenant-a", "resp_1") is None
    assert await operator.rotate_keys() == (0, 0, 0)
    other_secret = EncryptingStore(store, CallerKeySealer(CallerKeys("another-server-secret-000000")), None)
    with as_caller("sk-alice"):
        assert await other_secret.get("tenant-a", "resp_1") is None


async def test_caller_key_refuses_to_store_without_a_bearer_token(store: ResponseStore, store_clock: FakeClock) -> None:
    from retention_middleware.store import StoreError

    sealed = caller_key_store(store)
    with as_caller(None), pytest.raises(StoreError) as raised:
        await sealed.put(canary_record("resp_1", store_clock))
    assert raised.value.code == "caller_key_missing"
    assert await store.get("tenant-a", "resp_1") is None  # no half-written record
