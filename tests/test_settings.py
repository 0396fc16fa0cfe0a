from __future__ import annotations

from datetime import timedelta

import pytest

from retention_middleware.settings import RetentionSettings, SettingsError, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("12h", 43200), ("30d", 2592000), ("2w", 1209600), ("250ms", 0.25),
     ("45", 45), (" 1.5h ", 5400)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [("16MiB", 16 * 1024**2), ("512KiB", 512 * 1024), ("1GB", 10**9), ("100", 100), ("2mb", 2_000_000),
     ("1.5KiB", 1536)],
)  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_defaults_match_the_design() -> None:
    settings = RetentionSettings()
    assert settings.store == "memory"
    assert settings.mongo_db == "retention"
    assert settings.ttl == timedelta(days=30)
    assert settings.policy == "standard"
    assert settings.max_body == 16 * 1024**2
    assert settings.upstream == "http://127.0.0.1:8000"
    assert settings.log_guard is True and settings.log_client_address is False


def test_from_env_reads_every_variable() -> None:
    settings = RetentionSettings.from_env(
        {
            "RETENTION_STORE": "mongodb://db.example:27017",
            "RETENTION_MONGO_DB": "zdr",
            "RETENTION_TTL": "12h",
            "RETENTION_POLICY": "standard",
            "RETENTION_TENANT_SECRET": "s" * 32,
            "RETENTION_TENANT_HEADER": "X-Org-Id",
            "RETENTION_MAX_BODY": "1MiB",
            "RETENTION_STORE_FAILURE": "reject",
            "RETENTION_LOG_GUARD": "false",
            "RETENTION_UPSTREAM": "http://10.0.0.5:9000",
            "RETENTION_UPSTREAM_MAX_CONNECTIONS": "50",
            "RETENTION_OPT_IN_TENANTS": "abc, def,",
            "UNRELATED": "ignored",
        }
    )
    assert settings.store == "mongodb://db.example:27017"
    assert settings.mongo_db == "zdr"
    assert settings.ttl == timedelta(hours=12)
    assert settings.policy == "standard"
    assert settings.tenant_header == "X-Org-Id"
    assert settings.max_body == 1024**2
    assert settings.store_failure == "reject"
    assert settings.log_guard is False
    assert settings.upstream == "http://10.0.0.5:9000"
    assert settings.upstream_max_connections == 50
    assert settings.opt_in_tenants == frozenset({"abc", "def"})


def test_keyword_overrides_win_over_the_environment() -> None:
    settings = RetentionSettings.from_env({"RETENTION_TTL": "12h"}, ttl=timedelta(hours=1))
    assert settings.ttl == timedelta(hours=1)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"RETENTION_TTL": "thirty days"}, ["RETENTION_TTL", "30d"]),
        ({"RETENTION_TTL": "0s"}, ["RETENTION_TTL", "positive"]),
        ({"RETENTION_POLICY": "none"}, ["RETENTION_POLICY", "standard, zero"]),
        ({"RETENTION_STORE": "redis://cache"}, ["RETENTION_STORE", "mongodb://"]),
        ({"RETENTION_MAX_BODY": "16 parsecs"}, ["RETENTION_MAX_BODY", "16MiB"]),
        ({"RETENTION_STORE_FAILURE": "ignore"}, ["RETENTION_STORE_FAILURE", "serve, reject"]),
        ({"RETENTION_LOG_GUARD": "maybe"}, ["RETENTION_LOG_GUARD", "true or false"]),
        ({"RETENTION_UPSTREAM": "localhost:8000"}, ["RETENTION_UPSTREAM", "http://"]),
        ({"RETENTION_TENANT_SECRET": "short"}, ["RETENTION_TENANT_SECRET", "16 characters"]),
        ({"RETENTION_UPSTREAM_MAX_CONNECTIONS": "many"}, ["RETENTION_UPSTREAM_MAX_CONNECTIONS", "whole number"]),
        ({"RETENTION_MONGO_WRITE_CONCERN": "all"}, ["RETENTION_MONGO_WRITE_CONCERN", "majority"]),
        ({"RETENTION_MONGO_WRITE_CONCERN": "0"}, ["RETENTION_MONGO_WRITE_CONCERN", "1 or more"]),
        ({"RETENTION_POLICY": "zero", "RETENTION_LOGGED_MODELS": "m"}, ["RETENTION_POLICY", "RETENTION_LOGGED_MODELS"]),
    ],
)
def test_invalid_values_name_the_setting_and_the_fix(env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(SettingsError) as error:
        RetentionSettings.from_env(env)
    for name in names:
        assert name in str(error.value)


def test_public_view_hides_secrets() -> None:
    settings = RetentionSettings(store="mongodb://user:hunter2hunter2@db:27017/x", tenant_secret="t" * 32)
    view = settings.public_view()
    assert "hunter2" not in str(view) and "t" * 32 not in str(view)
    assert view["store"] == "mongodb://user:***@db:27017/x"
    assert view["tenant_secret"] == "(set)"
    assert "t" * 32 not in repr(settings)


def test_settings_are_frozen() -> None:
    settings = RetentionSettings()
    with pytest.raises(AttributeError):
        settings.ttl = timedelta(1)  # type: ignore[misc]


def test_conversation_ttl_reads_a_duration_and_defaults_to_unset() -> None:
    assert RetentionSettings().conversation_ttl is None  # the conversation store then uses ttl
    settings = RetentionSettings.from_env({"RETENTION_CONVERSATION_TTL": "12h"})
    assert settings.conversation_ttl == timedelta(hours=12)
    assert settings.public_view()["conversation_ttl"] == "12h"
    for bad in ("soon", "0s"):
        with pytest.raises(SettingsError, match="RETENTION_CONVERSATION_TTL"):
            RetentionSettings.from_env({"RETENTION_CONVERSATION_TTL": bad})


@pytest.mark.parametrize(
    ("name", "value"),
    [("max_json_depth", 0), ("max_json_depth", 201), ("max_input_items", 0), ("max_input_items", True)],
)
def test_hostile_input_bounds_are_checked_naming_the_setting(name: str, value: object) -> None:
    with pytest.raises(SettingsError, match=name):
        RetentionSettings(**{name: value})


def test_hostile_input_bounds_read_from_the_environment() -> None:
    settings = RetentionSettings.from_env({"RETENTION_MAX_JSON_DEPTH": "64", "RETENTION_MAX_INPUT_ITEMS": "500"})
    assert (settings.max_json_depth, settings.max_input_items) == (64, 500)
