from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import tracemalloc

import httpx
import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings, SettingsError
from retention_middleware.demo import EchoModel
from retention_middleware.errors import OpenAIError
from retention_middleware.store import MongoStore
from retention_middleware.tenancy import ANONYMOUS, TenantResolver

from support.asgi_tools import CountingUpstream, asgi_client, capture_all_logs

SECRET = "tenancy-secret-0123456789"


def auth(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", value.encode())]


def test_the_tenant_is_an_hmac_of_the_bearer_token_never_the_token() -> None:
    tenant = TenantResolver(SECRET, None).tenant_of(auth("Bearer sk-secret-key"))
    assert tenant == hmac.new(SECRET.encode(), b"sk-secret-key", hashlib.sha256).hexdigest()[:32]
    assert "sk-secret-key" not in tenant
    assert TenantResolver("another-secret-0123456789", None).tenant_of(auth("Bearer sk-secret-key")) != tenant


def test_a_trusted_header_names_the_tenant_when_present() -> None:
    resolver = TenantResolver(SECRET, "X-Org-Id")
    assert resolver.tenant_of([(b"x-org-id", b"org-42"), *auth("Bearer sk-a")]) == "org-42"
    assert resolver.tenant_of(auth("Bearer sk-a")) == TenantResolver(SECRET, None).tenant_of(auth("Bearer sk-a"))


def test_without_a_secret_callers_are_still_told_apart_by_their_key() -> None:
    # Issue 10 item 17: an ephemeral secret, made when the resolver is built.
    resolver = TenantResolver(None, None)
    tenant_a = resolver.tenant_of(auth("Bearer sk-a"))
    assert tenant_a not in (ANONYMOUS, "sk-a")
    assert "sk-a" not in tenant_a
    assert resolver.tenant_of(auth("Bearer sk-a")) == tenant_a
    assert resolver.tenant_of(auth("Bearer sk-b")) != tenant_a
    # The secret is random per process start: nobody can precompute another caller's tenant.
    assert TenantResolver(None, None).tenant_of(auth("Bearer sk-a")) != tenant_a
    assert TenantResolver(None, "x-org-id").tenant_of(auth("Bearer sk-a")) not in (ANONYMOUS, tenant_a)


def test_without_a_secret_a_database_deployment_never_hashes_under_a_random_one() -> None:
    # MongoDB with only a trusted header: a random secret would change on restart and differ between
    # replicas, losing every record filed under it. A request without the header is anonymous.
    resolver = TenantResolver(None, "x-org-id", ephemeral=False)
    assert resolver.tenant_of([(b"x-org-id", b"org-1"), *auth("Bearer sk-a")]) == "org-1"
    assert resolver.tenant_of(auth("Bearer sk-a")) == ANONYMOUS


def test_shared_tenancy_puts_every_caller_in_one_space() -> None:
    resolver = TenantResolver(None, None, shared=True)
    assert resolver.tenant_of(auth("Bearer sk-a")) == resolver.tenant_of(auth("Bearer sk-b")) == ANONYMOUS
    # A trusted gateway's header still names the tenant.
    assert TenantResolver(None, "x-org-id", shared=True).tenant_of([(b"x-org-id", b"org-1")]) == "org-1"


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b"Bearer sk-a"), (b"authorization", b"Bearer sk-b")],
        [(b"authorization", b"Bearer sk-a"), (b"authorization", b"Bearer sk-a")],
        [(b"x-org-id", b"org-1"), (b"x-org-id", b"org-2")],
    ],
    ids=["two-keys", "the-same-key-twice", "two-tenant-headers"],
)
def test_two_callers_in_one_request_are_refused(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(OpenAIError) as refused:
        TenantResolver(SECRET, "x-org-id").tenant_of(headers)
    assert refused.value.status == 400
    assert refused.value.code == "duplicate_header"
    assert b"sk-" not in refused.value.body() and b"org-" not in refused.value.body()


def test_raw_tokens_are_not_kept_after_the_request() -> None:
    # Issue 10 item 1: the old token-to-tenant cache kept up to 4096 raw keys, however large:
    # 300 distinct 1 MB keys held ~300 MB. Nothing of a key may outlive its request.
    resolver = TenantResolver(SECRET, None)
    resolver.tenant_of(auth("Bearer warm-up"))
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for number in range(100):
            token = f"Bearer {number:08d}".encode() + b"k" * 1_000_000
            resolver.tenant_of([(b"authorization", token)])
            del token
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1_000_000  # far less than one key: at most the tenants' own small strings


def test_other_schemes_and_empty_tokens_are_anonymous() -> None:
    resolver = TenantResolver(SECRET, None)
    for value in ("Basic dXNlcjpwYXNz", "Bearer ", "Bearer", "sk-a"):
        assert resolver.tenant_of(auth(value)) == ANONYMOUS
    assert resolver.tenant_of(auth("bearer sk-a")) == resolver.tenant_of(auth("Bearer sk-a"))


# -- through the middleware --------------------------------------------------------------------------


async def test_by_default_one_key_cannot_read_or_delete_another_keys_response() -> None:
    # No secret, no header, memory store: the defaults a first-time operator runs.
    middleware = RetentionMiddleware(EchoModel(), RetentionSettings())
    alice = {"authorization": "Bearer sk-alice"}
    mallory = {"authorization": "Bearer sk-mallory"}
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            created = await client.post("/v1/responses", json={"model": "m", "input": "mine"}, headers=alice)
            response_id = created.json()["id"]
            assert (await client.get(f"/v1/responses/{response_id}", headers=mallory)).status_code == 404
            assert (await client.get(f"/v1/responses/{response_id}")).status_code == 404  # no key at all
            assert (await client.delete(f"/v1/responses/{response_id}", headers=mallory)).status_code == 404
            assert (await client.get(f"/v1/responses/{response_id}", headers=alice)).status_code == 200
    tenants = [orjson.loads(line)["tenant"] for line in logs.access_lines()]
    assert tenants[0] == tenants[-1] != tenants[1]
    assert ANONYMOUS not in (tenants[0], tenants[1]) and tenants[2] == ANONYMOUS
    assert "sk-alice" not in logs.text() and "sk-mallory" not in logs.text()


@pytest.mark.parametrize(
    "headers",
    [
        [("authorization", "Bearer sk-a"), ("authorization", "Bearer sk-b")],
        [("x-org-id", "org-1"), ("x-org-id", "org-2")],
    ],
    ids=["two-keys", "two-tenant-headers"],
)
async def test_a_request_naming_two_callers_gets_400_and_is_never_forwarded(headers: list[tuple[str, str]]) -> None:
    upstream = CountingUpstream()
    middleware = RetentionMiddleware(upstream, RetentionSettings(tenant_header="x-org-id"))
    with capture_all_logs() as logs:
        async with asgi_client(middleware) as client:
            chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            answer = await client.post("/v1/chat/completions", json=chat, headers=httpx.Headers(headers))
            innocent = await client.post("/v1/chat/completions", json=chat, headers={"authorization": "Bearer sk-a"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "duplicate_header"
    assert upstream.calls == 1 and innocent.status_code == 200  # only the innocent request went on
    entry = orjson.loads(logs.access_lines()[0])
    assert (entry["status"], entry["error"]) == (400, "duplicate_header")


def test_shared_tenancy_is_chosen_explicitly_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="retention_middleware"):
        RetentionMiddleware(EchoModel(), RetentionSettings(tenancy="shared"))
        RetentionMiddleware(EchoModel(), RetentionSettings())
    warnings = [record for record in caplog.records if "RETENTION_TENANCY=shared" in record.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    ("values", "works"),
    [
        ({}, False),
        ({"tenancy": "shared"}, True),
        ({"tenant_secret": SECRET}, True),
        ({"tenant_header": "x-org-id"}, True),
    ],
    ids=["nothing", "shared", "secret", "header"],
)
def test_a_mongodb_store_needs_a_way_to_tell_callers_apart(values: dict[str, str], works: bool) -> None:
    build = lambda: RetentionSettings(store="mongodb://db.internal:27017/", **values)  # noqa: E731
    if works:
        build()
        return
    with pytest.raises(SettingsError) as refused:
        build()
    message = str(refused.value)
    assert "RETENTION_TENANT_SECRET" in message and "RETENTION_TENANT_HEADER" in message
    assert "RETENTION_TENANCY=shared" in message


def test_shared_tenancy_and_a_secret_contradict_each_other() -> None:
    with pytest.raises(SettingsError, match="RETENTION_TENANCY"):
        RetentionSettings(tenancy="shared", tenant_secret=SECRET)
    with pytest.raises(SettingsError, match="RETENTION_TENANCY"):
        RetentionSettings(tenancy="everyone")  # type: ignore[arg-type]


async def test_a_mongodb_deployment_with_only_a_header_files_headerless_requests_as_anonymous(
    mongo_settings: RetentionSettings,
) -> None:
    settings = dataclasses.replace(mongo_settings, tenant_secret=None, tenant_header="x-org-id")
    store = MongoStore(settings)
    middleware = RetentionMiddleware(EchoModel(), settings, store=store)
    try:
        with capture_all_logs() as logs:
            async with asgi_client(middleware) as client:
                body = {"model": "m", "input": "x"}
                key = {"authorization": "Bearer sk-a"}
                await client.post("/v1/responses", json=body, headers={**key, "x-org-id": "o1"})
                await client.post("/v1/responses", json=body, headers=key)
        tenants = [orjson.loads(line)["tenant"] for line in logs.access_lines()]
        assert tenants == ["o1", ANONYMOUS]  # never a hash under a secret that dies with this process
    finally:
        await store.close()
