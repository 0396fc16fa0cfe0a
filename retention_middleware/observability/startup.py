"""Start-up warnings a newcomer needs, one line each.

The memory store is volatile and per process (shared tenancy is said by the middleware itself);
and a ``RETENTION_*`` variable nobody reads (``RETENTION_TTLL``) is a setting silently not applied,
so it is named with the nearest valid name.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping

from ..settings import ENV_PREFIX, RetentionSettings

# Read elsewhere than RetentionSettings: the proxy's server options and the test suite's MongoDB.
OTHER_KNOWN = frozenset(
    f"RETENTION_{name}"
    for name in ("HOST", "PORT", "GRACE", "DEMO", "WORKERS", "LOG_LEVEL", "LOG_FORMAT", "SSL_CERTFILE",
                 "SSL_KEYFILE", "TEST_MONGODB_URI")
)  # fmt: skip


def known_variables(extra: Iterable[str] = ()) -> frozenset[str]:
    fields = {str(spec.metadata["env"]) for spec in dataclasses.fields(RetentionSettings) if "env" in spec.metadata}
    return frozenset(fields) | OTHER_KNOWN | frozenset(extra)


def unknown_variable_warnings(environ: Mapping[str, str], extra: Iterable[str] = ()) -> list[str]:
    known = known_variables(extra)
    lines = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            nearest = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {nearest[0]}?" if nearest else ""
            lines.append(f"{name} is not a setting and is ignored{hint}")
    return lines


def startup_warnings(settings: RetentionSettings, environ: Mapping[str, str], extra: Iterable[str] = ()) -> list[str]:
    lines = []
    if not settings.uses_mongodb:
        lines.append(
            "store is memory: stored responses live in this process only and are lost when it stops; "
            "use RETENTION_STORE=mongodb://... to keep them across restarts and share them between processes"
        )
    # Shared tenancy (RETENTION_TENANCY=shared) is warned about by the middleware itself, once, when
    # it is built: isolation by bearer token is the default, so there is nothing to say otherwise.
    return lines + unknown_variable_warnings(environ, extra)
