"""``retention-proxy tenant-id``: the id printed is the one the access log shows for that key."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from support.proxy_process import ProxyProcess, run_command

SECRET = "tenant-id-test-secret-0123456789"


def test_the_printed_tenant_id_is_the_access_logs(run_proxy: Callable[..., ProxyProcess]) -> None:
    printed = run_command("tenant-id", env={"RETENTION_TENANT_SECRET": SECRET}, stdin="sk-customer-42\n")
    assert printed.returncode == 0, printed.stderr
    tenant = printed.stdout.strip()
    assert len(tenant) == 32 and "sk-customer-42" not in printed.stdout + printed.stderr
    proxy = run_proxy("--demo", env={"RETENTION_TENANT_SECRET": SECRET})
    with httpx.Client(base_url=proxy.url, timeout=20) as client:
        answer = client.post(
            "/v1/chat/completions",
            json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": "Bearer sk-customer-42"},
        )
    assert answer.status_code == 200
    assert proxy.access_records(1)[0]["tenant"] == tenant
    # "Bearer <key>" pasted whole gives the same id
    again = run_command("tenant-id", env={"RETENTION_TENANT_SECRET": SECRET}, stdin="Bearer sk-customer-42")
    assert again.stdout.strip() == tenant


def test_without_a_secret_or_a_key_it_says_what_is_missing() -> None:
    no_secret = run_command("tenant-id", stdin="sk-1")
    assert no_secret.returncode == 2 and "RETENTION_TENANT_SECRET is not set" in no_secret.stderr
    no_key = run_command("tenant-id", env={"RETENTION_TENANT_SECRET": SECRET}, stdin="")
    assert no_key.returncode == 2 and "write the API key on stdin" in no_key.stderr
