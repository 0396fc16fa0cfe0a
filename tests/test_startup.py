"""Start-up warnings: volatile memory store, shared tenancy, misspelt RETENTION_* variables."""

from __future__ import annotations

from collections.abc import Callable

from retention_middleware.observability.startup import startup_warnings, unknown_variable_warnings
from retention_middleware.settings import RetentionSettings

from support.proxy_process import ProxyProcess


def test_a_misspelt_variable_is_named_with_the_nearest_valid_name() -> None:
    lines = unknown_variable_warnings({"RETENTION_TTLL": "3d", "RETENTION_STORE": "memory", "PATH": "/bin"})
    assert lines == ["RETENTION_TTLL is not a setting and is ignored; did you mean RETENTION_TTL?"]
    assert unknown_variable_warnings({"RETENTION_UPSTREAM_TIMEOT": "1s"}) == [
        "RETENTION_UPSTREAM_TIMEOT is not a setting and is ignored; did you mean RETENTION_UPSTREAM_TIMEOUT?"
    ]
    (far,) = unknown_variable_warnings({"RETENTION_ZZZZZZZZZZZZZZZZZZZZZ": "1"})
    assert "did you mean" not in far
    # every setting's variable, and the proxy's own, are known
    assert unknown_variable_warnings({"RETENTION_WORKERS": "2", "RETENTION_LOG_FORMAT": "json"}) == []


def test_the_memory_store_warns_and_mongodb_with_a_secret_does_not() -> None:
    memory = startup_warnings(RetentionSettings(), {})
    assert len(memory) == 1  # callers are isolated by default: nothing to say about tenancy
    assert memory[0].startswith("store is memory: stored responses live in this process only")
    quiet = RetentionSettings(store="mongodb://db:27017", tenant_secret="x" * 32)
    assert startup_warnings(quiet, {}) == []


def test_the_proxy_prints_one_line_each_at_start_up(run_proxy: Callable[..., ProxyProcess]) -> None:
    proxy = run_proxy("--demo", "--tenancy", "shared", env={"RETENTION_TTLL": "3d"})
    proxy.wait_started()
    proxy.stop()
    warnings = [line for line in proxy.stderr.seen if line.startswith("WARNING ")]
    assert [line.split(": ", 1)[1].split(":")[0].split(" is not")[0] for line in warnings] == [
        "RETENTION_TENANCY=shared",  # said as the middleware is built
        "encryption at rest is off",
        "store is memory",
        "RETENTION_TTLL",
    ]
    assert "did you mean RETENTION_TTL?" in warnings[3]
