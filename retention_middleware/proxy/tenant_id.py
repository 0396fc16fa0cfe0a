"""``retention-proxy tenant-id``: the tenant id an API key maps to, for ``RETENTION_OPT_IN_TENANTS``.

The key is read from stdin (never a flag: it would show in process listings and shell history) and
hashed under ``RETENTION_TENANT_SECRET`` exactly as the middleware does, so the id printed is the one
the access log shows for that caller.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from ..settings import RetentionSettings
from ..tenancy import ANONYMOUS, TenantResolver


def tenant_id(stdin: TextIO, environ: Mapping[str, str]) -> int:
    settings = RetentionSettings.from_env(environ)
    if not settings.tenant_secret:
        print(
            "retention-proxy tenant-id: error: RETENTION_TENANT_SECRET is not set; tenant ids are HMACs "
            "under that secret (export the proxy's value first)",
            file=sys.stderr,
        )
        return 2
    key = stdin.readline().strip()
    if key.lower().startswith("bearer "):
        key = key[7:].strip()
    if not key:
        print("retention-proxy tenant-id: error: write the API key on stdin: retention-proxy tenant-id < key.txt",
              file=sys.stderr)  # fmt: skip
        return 2
    tenant = TenantResolver(settings.tenant_secret, None).tenant_of([(b"authorization", b"Bearer " + key.encode())])
    if tenant == ANONYMOUS:  # cannot happen with a secret and a key; never print a wrong id
        return 1
    print(tenant)
    return 0
