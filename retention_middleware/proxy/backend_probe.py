"""``--responses-backend auto`` at start-up: ask the upstream once, before the banner is printed,
whether it serves ``/v1/responses``, so the banner can say which backend is in use.

An answer that decides nothing (the upstream down, a 5xx) leaves ``auto`` in force: the middleware
asks again on the first request (``backends/choice.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from ..backends.choice import Mode, probe
from ..settings import RetentionSettings


async def _ask(settings: RetentionSettings, *, demo: bool) -> Mode | None:
    if demo:
        from ..demo import EchoModel

        return await probe(EchoModel())
    from .forwarder import UpstreamProxy

    upstream = UpstreamProxy(settings)  # a throwaway client on a throwaway event loop
    # The probe's own failure is reported in the banner ("asked again on the first request"), not as
    # the forwarder's 502 warning, which would come before the banner and read as a client's request.
    quiet = logging.getLogger("retention_middleware.proxy")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return await probe(upstream, timeout=settings.upstream_connect_timeout.total_seconds() + 5)
    finally:
        quiet.setLevel(level)
        await upstream.aclose()


def resolved_backend(settings: RetentionSettings, *, demo: bool) -> tuple[RetentionSettings, str]:
    """The settings with ``auto`` replaced by what the upstream said, and the banner's note."""
    if settings.responses_backend != "auto":
        return settings, settings.responses_backend
    mode = asyncio.run(_ask(settings, demo=demo))
    if mode is None:
        return settings, "auto (the upstream did not say yet; asked again on the first request)"
    served = "serves" if mode == "responses" else "does not serve"
    return dataclasses.replace(settings, responses_backend=mode), f"{mode} (auto: the upstream {served} /v1/responses)"
