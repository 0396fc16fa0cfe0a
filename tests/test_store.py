"""The store contract, run against both stores: what one does, the other must do the same way."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from retention_middleware.settings import RetentionSettings
from retention_middleware.store import (
    MemoryStore,
    MongoStore,
    ResponseStore,
    StoreError,
    StoreFull,
    make_store,
)

from support.mongo_fixtures import FakeClock, content_record, response_record, wait_until

OTHER = "tenant-b"

# JSON that a naive BSON mapping would mangle or reject: operator-like and dotted keys (tool schemas
# use "$ref"), unicode, 64-bit integers, floats, nesting and key order.
AWKWARD_JSON = {
    "parameters": {"$ref": "#/$defs/query", "$defs": {"query": {"type": "string"}}, "a.b": {"c.d": 1}},
    "text": "naïve café – 漢字 – emoji 🚀 – nul \u0000 inside",
    "ints": [2**63 - 1, -(2**63), 2**64 - 1, 0],
    "floats": [0.1, 1e308, -2.5e-300],
    "order": {"z": 1, "a": 2, "m": 3},
    "empty": [{}, [], "", None, False],
}


async def test_put_then_get_returns_the_same_record(store: ResponseStore, store_clock: FakeClock) -> None:
    record = response_record(
        "resp_1",
        store_clock,
        input_items=[{"type": "message", "content": AWKWARD_JSON}],
        response=AWKWARD_JSON,
    )
    await store.put(record)
    got = await store.get("tenant-a", "resp_1")
    assert got == record
    assert list(got.response["order"]) == ["z", "a", "m"]


async def test_datetimes_come_back_aware_utc_at_millisecond_precision(
    store: ResponseStore, store_clock: FakeClock
) -> None:
    store_clock.now = datetime(2030, 5, 6, 7, 8, 9, 123_456, tzinfo=timezone(timedelta(hours=2)))
    await store.put(response_record("resp_1", store_clock))
    got = await store.get("tenant-a", "resp_1")
    assert got is not None
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at == datetime(2030, 5, 6, 5, 8, 9, 123_000, tzinfo=timezone.utc)


async def test_naive_datetimes_are_refused(store: ResponseStore, store_clock: FakeClock) -> None:
    naive = FakeClock(datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.put(response_record("resp_1", naive))


async def test_caller_mutating_its_objects_after_put_changes_nothing(
    store: ResponseStore, store_clock: FakeClock
) -> None:
    record = response_record("resp_1", store_clock)
    await store.put(record)
    record.response["output"].clear()
    record.input_items.append("later")
    got = await store.get("tenant-a", "resp_1")
    assert got is not None and got.response["output"] and "later" not in got.input_items


async def test_a_missing_id_reads_as_none(store: ResponseStore) -> None:
    assert await store.get("tenant-a", "resp_missing") is None
    chain = await store.get_chain("tenant-a", "resp_missing")
    assert chain.response is None and chain.ancestors == {}


async def test_another_tenants_record_behaves_like_a_missing_one(store: ResponseStore, store_clock: FakeClock) -> None:
    await store.put(response_record("resp_1", store_clock))
    assert await store.get(OTHER, "resp_1") is None
    chain = await store.get_chain(OTHER, "resp_1")
    assert chain.response is None and chain.ancestors == {}
    assert await store.delete(OTHER, "resp_1") is False
    assert await store.get("tenant-a", "resp_1") is not None  # the owner still has it


async def test_expiry_is_visible_at_once(store: ResponseStore, store_clock: FakeClock) -> None:
    record = response_record("resp_1", store_clock, ttl=timedelta(seconds=90))
    await store.put(record)
    store_clock.now = record.expires_at - timedelta(milliseconds=1)
    assert await store.get("tenant-a", "resp_1") is not None
    store_clock.now = record.expires_at  # expires_at > now is required: at the instant it is gone
    assert await store.get("tenant-a", "resp_1") is None
    assert (await store.get_chain("tenant-a", "resp_1")).response is None
    assert await store.delete("tenant-a", "resp_1") is False


async def test_delete_removes_before_returning(store: ResponseStore, store_clock: FakeClock) -> None:
    await store.put(response_record("resp_1", store_clock))
    assert await store.delete("tenant-a", "resp_1") is True
    assert await store.get("tenant-a", "resp_1") is None
    assert (await store.get_chain("tenant-a", "resp_1")).response is None
    assert await store.delete("tenant-a", "resp_1") is False


async def test_replace_updates_only_a_record_that_still_exists(store: ResponseStore, store_clock: FakeClock) -> None:
    started = response_record("resp_1", store_clock, response={"id": "resp_1", "status": "in_progress"})
    await store.put(started)
    final = response_record("resp_1", store_clock, response={"id": "resp_1", "status": "completed", "output": [1]})
    assert await store.replace(final) is True
    assert await store.get("tenant-a", "resp_1") == final
    assert await store.replace(response_record("resp_1", store_clock, tenant=OTHER)) is False  # not theirs
    assert await store.delete("tenant-a", "resp_1") is True
    assert await store.replace(final) is False  # deleted: the final write must not bring it back
    assert await store.get("tenant-a", "resp_1") is None
    assert await store.replace(response_record("resp_never", store_clock)) is False
    assert await store.get("tenant-a", "resp_never") is None


async def test_delete_of_a_missing_id_is_false(store: ResponseStore) -> None:
    assert await store.delete("tenant-a", "resp_missing") is False


async def test_get_chain_returns_the_record_and_its_ancestors(store: ResponseStore, store_clock: FakeClock) -> None:
    first = response_record("resp_1", store_clock)
    second = response_record("resp_2", store_clock, ancestors=("resp_1",))
    third = response_record("resp_3", store_clock, ancestors=("resp_1", "resp_2"))
    for record in (first, second, third):
        await store.put(record)
    chain = await store.get_chain("tenant-a", "resp_3")
    assert chain.response == third
    assert chain.ancestors == {"resp_1": first, "resp_2": second}
    assert list(chain.ancestors) == ["resp_1", "resp_2"]  # oldest first


async def test_get_chain_shows_a_deleted_ancestor_as_missing(store: ResponseStore, store_clock: FakeClock) -> None:
    await store.put(response_record("resp_1", store_clock))
    await store.put(response_record("resp_2", store_clock, ancestors=("resp_1",)))
    await store.put(response_record("resp_3", store_clock, ancestors=("resp_1", "resp_2")))
    assert await store.delete("tenant-a", "resp_2") is True
    chain = await store.get_chain("tenant-a", "resp_3")
    assert chain.response is not None
    assert set(chain.ancestors) == {"resp_1"}


async def test_get_chain_leaves_out_expired_and_other_tenants_ancestors(
    store: ResponseStore, store_clock: FakeClock
) -> None:
    await store.put(response_record("resp_short", store_clock, ttl=timedelta(minutes=1)))
    await store.put(response_record("resp_theirs", store_clock, tenant=OTHER))
    await store.put(response_record("resp_kept", store_clock))
    ancestors = ("resp_short", "resp_theirs", "resp_kept", "resp_never")
    await store.put(response_record("resp_last", store_clock, ancestors=ancestors))
    store_clock.advance(timedelta(minutes=2))
    chain = await store.get_chain("tenant-a", "resp_last")
    assert chain.response is not None and chain.response.ancestors == ancestors
    assert set(chain.ancestors) == {"resp_kept"}


async def test_delete_tenant_leaves_the_other_tenant_untouched(store: ResponseStore, store_clock: FakeClock) -> None:
    for index in range(3):
        await store.put(response_record(f"resp_a{index}", store_clock))
    await store.put(response_record("resp_b", store_clock, tenant=OTHER))
    assert await store.delete_tenant("tenant-a") == 3
    assert all([await store.get("tenant-a", f"resp_a{index}") is None for index in range(3)])
    assert await store.get(OTHER, "resp_b") is not None
    assert await store.delete_tenant("tenant-a") == 0


async def test_a_duplicate_id_is_refused(store: ResponseStore, store_clock: FakeClock) -> None:
    await store.put(response_record("resp_1", store_clock))
    with pytest.raises(StoreError, match="already stored") as raised:
        await store.put(response_record("resp_1", store_clock, tenant=OTHER, response={"id": "other"}))
    assert not isinstance(raised.value, StoreFull)
    got = await store.get("tenant-a", "resp_1")
    assert got is not None and got.response["id"] == "resp_1"  # the first one is untouched


async def test_content_records_are_kept_per_tenant(store: ResponseStore, store_clock: FakeClock) -> None:
    first = content_record("log_1", store_clock)
    store_clock.advance(timedelta(seconds=1))
    second = content_record("log_2", store_clock)
    short = content_record("log_short", store_clock, ttl=timedelta(seconds=30))
    theirs = content_record("log_theirs", store_clock, tenant=OTHER)
    for record in (second, first, short, theirs):
        await store.put_content(record)
    assert await store.count_content("tenant-a") == 3
    store_clock.advance(timedelta(seconds=31))
    assert await store.count_content("tenant-a") == 2
    assert list(await store.find_content("tenant-a")) == [first, second]  # oldest first, expired left out
    assert await store.count_content(OTHER) == 1


async def test_delete_tenant_content_leaves_the_other_tenant_untouched(
    store: ResponseStore, store_clock: FakeClock
) -> None:
    await store.put_content(content_record("log_1", store_clock))
    await store.put_content(content_record("log_2", store_clock))
    await store.put_content(content_record("log_theirs", store_clock, tenant=OTHER))
    await store.put(response_record("resp_1", store_clock))
    assert await store.delete_tenant_content("tenant-a") == 2
    assert await store.count_content("tenant-a") == 0
    assert await store.find_content(OTHER) == [content_record("log_theirs", store_clock, tenant=OTHER)]
    assert await store.get("tenant-a", "resp_1") is not None  # stored responses are a separate kind


async def test_a_duplicate_content_id_is_refused(store: ResponseStore, store_clock: FakeClock) -> None:
    await store.put_content(content_record("log_1", store_clock))
    with pytest.raises(StoreError, match="already stored"):
        await store.put_content(content_record("log_1", store_clock))


async def test_start_is_idempotent_and_also_happens_lazily(store: ResponseStore, store_clock: FakeClock) -> None:
    # The fixture does not start the store: concurrent first operations must start it exactly once.
    results = await asyncio.gather(*(store.get("tenant-a", f"resp_{i}") for i in range(10)))
    assert results == [None] * 10
    await store.start()
    await store.start()
    await store.put(response_record("resp_1", store_clock))
    await store.check()
    assert await store.get("tenant-a", "resp_1") is not None


def test_make_store_picks_the_backend_from_settings() -> None:
    assert isinstance(make_store(RetentionSettings()), MemoryStore)
    assert isinstance(make_store(RetentionSettings(store="mongodb://127.0.0.1:1/", tenancy="shared")), MongoStore)


# -- MemoryStore specifics ---------------------------------------------------------------------------


def _size(record_id: str, clock: FakeClock) -> int:
    """What one record from response_record() costs against the budget."""
    return MemoryStore.response_cost(response_record(record_id, clock))


async def test_memory_budget_refuses_instead_of_evicting(store_clock: FakeClock) -> None:
    one = _size("resp_1", store_clock)
    store = MemoryStore(budget=2 * one, clock=store_clock)
    try:
        await store.put(response_record("resp_1", store_clock))
        await store.put(response_record("resp_2", store_clock))
        assert store.used_bytes == 2 * one
        with pytest.raises(StoreFull, match="RETENTION_MEMORY_BUDGET"):
            await store.put(response_record("resp_3", store_clock))
        with pytest.raises(StoreFull):
            await store.check()
        assert await store.get("tenant-a", "resp_1") is not None  # nothing live was evicted
        assert await store.get("tenant-a", "resp_3") is None
        assert await store.delete("tenant-a", "resp_1") is True  # deleting gives the bytes back
        await store.check()
        await store.put(response_record("resp_3", store_clock))
    finally:
        await store.close()


async def test_memory_budget_purges_expired_records_first(store_clock: FakeClock) -> None:
    one = _size("resp_1", store_clock)
    store = MemoryStore(budget=2 * one, clock=store_clock)
    try:
        await store.put(response_record("resp_1", store_clock, ttl=timedelta(minutes=1)))
        await store.put(response_record("resp_2", store_clock))
        store_clock.advance(timedelta(minutes=2))
        await store.put(response_record("resp_3", store_clock))  # fits once resp_1's bytes are back
        assert len(store) == 2 and store.used_bytes == 2 * one
    finally:
        await store.close()


async def test_memory_sweep_purges_expired_records(store_clock: FakeClock) -> None:
    store = MemoryStore(sweep_interval=0.02, clock=store_clock)
    try:
        await store.put(response_record("resp_1", store_clock, ttl=timedelta(minutes=1)))
        await store.put(response_record("resp_2", store_clock))
        await store.put_content(content_record("log_1", store_clock, ttl=timedelta(minutes=1)))
        kept = _size("resp_2", store_clock)
        store_clock.advance(timedelta(minutes=2))

        async def swept() -> bool:
            return len(store) == 1

        await wait_until(swept, timeout=5)
        assert store.used_bytes == kept
        assert await store.get("tenant-a", "resp_2") is not None
    finally:
        await store.close()


async def test_memory_close_stops_the_sweep_and_forgets_everything(store_clock: FakeClock) -> None:
    store = MemoryStore(sweep_interval=0.02, clock=store_clock)
    await store.start()
    await store.put(response_record("resp_1", store_clock))
    sweeps = [task for task in asyncio.all_tasks() if task.get_name() == "retention-sweep"]
    assert len(sweeps) == 1
    await store.close()
    assert sweeps[0].cancelled()
    assert len(store) == 0 and store.used_bytes == 0


def test_memory_store_keeps_sweeping_when_used_from_a_new_event_loop(store_clock: FakeClock) -> None:
    # A host may start a fresh loop (tests, reloads); the old loop's sweeper died with it.
    store = MemoryStore(sweep_interval=0.02, clock=store_clock)
    asyncio.run(store.put(response_record("resp_1", store_clock, ttl=timedelta(minutes=1))))

    async def in_a_new_loop() -> None:
        store_clock.advance(timedelta(minutes=2))

        async def swept() -> bool:
            await store.get("tenant-a", "missing")  # any operation restarts the sweep here
            return len(store) == 0

        try:
            await wait_until(swept, timeout=5)
        finally:
            await store.close()

    asyncio.run(in_a_new_loop())


_FILL_UNTIL_FULL = """
import asyncio, gc, sys
from datetime import datetime, timedelta, timezone
from retention_middleware.store import MemoryStore
from retention_middleware.store.base import StoredResponse, StoreFull

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

async def fill(budget):
    store = MemoryStore(budget)
    now = datetime.now(timezone.utc)
    gc.collect()
    before, count = rss(), 0
    try:
        while True:
            rid = f"resp_{count:032x}"
            await store.put(StoredResponse(
                id=rid, tenant="0123456789abcdef", created_at=now, expires_at=now + timedelta(days=1),
                model="m", status="completed", previous_response_id=None, ancestors=(),
                input_items=[{"type": "message", "role": "user", "content": "hi"}],
                response={"id": rid, "object": "response", "output": [{"type": "output_text", "text": "hello"}]},
                usage={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}))
            count += 1
    except StoreFull:
        pass
    gc.collect()
    print(count, rss() - before)

asyncio.run(fill(int(sys.argv[1])))
"""


def test_memory_budget_bounds_the_memory_the_process_really_holds() -> None:
    # A fresh process, so the growth measured is this store's alone. Each record is a few hundred
    # bytes of JSON: per-buffer allocator slack used to make 8 MiB of budget cost some 400 MiB.
    budget = 8 * 1024 * 1024
    done = subprocess.run(
        [sys.executable, "-c", _FILL_UNTIL_FULL, str(budget)], capture_output=True, text=True, timeout=50, check=True
    )
    count, growth = (int(field) for field in done.stdout.split())
    assert count > 1000  # many small records, not a few large ones
    assert growth <= 1.5 * budget, f"{count} records grew RSS by {growth / 2**20:.1f} MiB for an 8 MiB budget"
