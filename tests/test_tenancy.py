from __future__ import annotations

import hashlib
import hmac

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


def test_without_a_secret_or_header_everyone_is_anonymous() -> None:
    assert TenantResolver(None, None).tenant_of(auth("Bearer sk-a")) == ANONYMOUS
    assert TenantResolver(None, "x-org-id").tenant_of(auth("Bearer sk-a")) == ANONYMOUS


def test_other_schemes_and_empty_tokens_are_anonymous() -> None:
    resolver = TenantResolver(SECRET, None)
    for value in ("Basic dXNlcjpwYXNz", "Bearer ", "Bearer", "sk-a"):
        assert resolver.tenant_of(auth(value)) == ANONYMOUS
    assert resolver.tenant_of(auth("bearer sk-a")) == resolver.tenant_of(auth("Bearer sk-a"))
