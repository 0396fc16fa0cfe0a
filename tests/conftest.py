"""Shared fixtures. MongoDB fixtures live in mongo_fixtures.py (the wire-protocol test server)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from retention_middleware.store import ResponseStore

pytest_plugins = ["support.mongo_fixtures", "support.proxy_process"]


@pytest.fixture(params=["memory", "mongo"])
def response_store(request: pytest.FixtureRequest) -> ResponseStore:
    """A store of each kind for middleware tests, on ``store_clock`` (pass the same clock to the
    middleware). The MongoDB one runs on the wire-protocol test server, or on the real server
    RETENTION_TEST_MONGODB_URI names."""
    if request.param == "memory":
        memory: ResponseStore = request.getfixturevalue("memory_store")
        return memory
    mongo: ResponseStore = request.getfixturevalue("make_mongo_store")()
    return mongo


@pytest.fixture
def clock(store_clock: Callable[[], datetime]) -> Callable[[], datetime]:
    return store_clock
