from __future__ import annotations

import hashlib
import hmac
import tracemalloc

import pytest

from retention_middleware.errors import OpenAIError
from retention_middleware.tenancy import ANONYMOUS, TenantResolver

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
