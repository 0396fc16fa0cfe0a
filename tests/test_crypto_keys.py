"""Key settings fail at start-up naming the setting and the fix; the key commands of retention-proxy."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from retention_middleware import RetentionSettings
from retention_middleware.crypto import EncryptingStore
from retention_middleware.crypto.commands import run_command
from retention_middleware.crypto.keys import new_key_text, parse_master_keys
from retention_middleware.crypto.layer import vault_backend
from retention_middleware.crypto.modes import effective_mode
from retention_middleware.middleware import RetentionMiddleware
from retention_middleware.proxy.cli import main
from retention_middleware.settings import SettingsError
from retention_middleware.store import MongoStore

from support.asgi_tools import answer_lifespan, run_lifespan
from support.crypto_tools import master_key_store
from support.mongo_fixtures import FakeClock, response_record

SECRET = "a-tenant-secret-0123456789abcdef"
GOOD = new_key_text()


def settings_from(**environ: str) -> RetentionSettings:
    return RetentionSettings.from_env(environ)


@pytest.mark.parametrize(
    ("environ", "named", "fix"),
    [
        ({"RETENTION_ENCRYPTION_KEY": "not base64!"}, "RETENTION_ENCRYPTION_KEY", "retention-proxy new-key"),
        (
            {"RETENTION_ENCRYPTION_KEY": base64.b64encode(os.urandom(16)).decode()},
            "RETENTION_ENCRYPTION_KEY",
            "decodes to 16 bytes, but a key is 32 random bytes",
        ),
        ({"RETENTION_ENCRYPTION_KEY": f"{GOOD},short"}, "key 2 of 2", "retention-proxy new-key"),
        ({"RETENTION_ENCRYPTION_KEY": f"{GOOD},{GOOD}"}, "RETENTION_ENCRYPTION_KEY", "list each key once"),
        ({"RETENTION_ENCRYPTION_KEY": " , "}, "RETENTION_ENCRYPTION_KEY", "retention-proxy new-key"),
        ({"RETENTION_ENCRYPTION_KEY_FILE": "/nonexistent/key"}, "RETENTION_ENCRYPTION_KEY_FILE", "readable file"),
        (
            {"RETENTION_ENCRYPTION_KEY": GOOD, "RETENTION_ENCRYPTION_KEY_FILE": "/x"},
            "RETENTION_ENCRYPTION_KEY_FILE",
            "set one, not both",
        ),
        ({"RETENTION_ENCRYPTION": "master-key"}, "RETENTION_ENCRYPTION", "retention-proxy new-key"),
        ({"RETENTION_ENCRYPTION": "aes"}, "RETENTION_ENCRYPTION", "caller-key"),
        ({"RETENTION_ENCRYPTION": "off", "RETENTION_ENCRYPTION_KEY": GOOD}, "RETENTION_ENCRYPTION", "unset the key"),
        (
            {
                "RETENTION_ENCRYPTION": "caller-key",
                "RETENTION_TENANT_HEADER": "x-tenant",
                "RETENTION_TENANT_SECRET": SECRET,
            },
            "RETENTION_TENANT_HEADER",
            "unset RETENTION_TENANT_HEADER",
        ),
        ({"RETENTION_ENCRYPTION": "caller-key"}, "RETENTION_TENANT_SECRET", "32+ random characters"),
        (
            {"RETENTION_ENCRYPTION": "caller-key", "RETENTION_TENANT_SECRET": SECRET, "RETENTION_ENCRYPTION_KEY": GOOD},
            "RETENTION_ENCRYPTION_KEY",
            "unset it",
        ),
    ],
)
def test_bad_key_settings_fail_naming_the_setting_and_the_fix(environ: dict[str, str], named: str, fix: str) -> None:
    with pytest.raises(SettingsError) as raised:
        settings_from(**environ)
    assert named in str(raised.value) and fix in str(raised.value)
    assert GOOD not in str(raised.value)  # a key is never echoed


def test_a_key_file_that_is_not_a_key_fails_naming_the_file(tmp_path: Path) -> None:
    binary = tmp_path / "binary"
    binary.write_bytes(os.urandom(32) + b"\xff")
    wrong = tmp_path / "short"
    wrong.write_text(base64.b64encode(b"x" * 31).decode())
    for path, fix in ((binary, "not base64 text"), (wrong, "decodes to 31 bytes")):
        with pytest.raises(SettingsError) as raised:
            settings_from(RETENTION_ENCRYPTION_KEY_FILE=str(path))
        assert "RETENTION_ENCRYPTION_KEY_FILE" in str(raised.value) and fix in str(raised.value)
        assert str(path) in str(raised.value)


def test_a_key_file_holding_a_rotation_list_works(tmp_path: Path) -> None:
    newer = new_key_text()
    path = tmp_path / "key"
    path.write_text(f"{newer},\n{GOOD}\n")  # as a Kubernetes secret may hold it, trailing newline included
    settings = settings_from(RETENTION_ENCRYPTION_KEY_FILE=str(path))
    assert effective_mode(settings) == "master-key"
    store = RetentionMiddleware(lambda *_: None, settings).store
    assert isinstance(store, EncryptingStore) and store.vault is not None
    assert store.vault.master_keys.newest.key_id == parse_master_keys(newer, "x").newest.key_id
    assert len(store.vault.master_keys.keys) == 2


def test_the_key_is_hidden_in_the_start_up_banner() -> None:
    view = settings_from(RETENTION_ENCRYPTION_KEY=GOOD).public_view()
    assert view["encryption_key"] == "(set)" and GOOD not in repr(settings_from(RETENTION_ENCRYPTION_KEY=GOOD))


def test_the_proxy_refuses_a_bad_key_at_start_up(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("RETENTION_ENCRYPTION_KEY", "c2hvcnQ=")
    with pytest.raises(SystemExit) as exited:
        main(["--demo", "--port", "0"])
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert "RETENTION_ENCRYPTION_KEY" in message and "retention-proxy new-key" in message


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "WARNING retention_middleware encryption at rest is off: stored content is kept in clear"),
        ({"RETENTION_ENCRYPTION_KEY": GOOD}, "INFO retention_middleware encryption at rest: master-key"),
        (
            {"RETENTION_ENCRYPTION": "caller-key", "RETENTION_TENANT_SECRET": SECRET},
            "INFO retention_middleware encryption at rest: caller-key",
        ),
    ],
)
async def test_start_up_says_in_one_line_whether_encryption_is_on(
    environ: dict[str, str], expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await answer_lifespan(receive, send)

    caplog.set_level("INFO", logger="retention_middleware")
    await run_lifespan(RetentionMiddleware(app, settings_from(**environ)))
    lines = [f"{r.levelname} {r.name} {r.getMessage()}" for r in caplog.records if "encryption" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_new_key_prints_a_fresh_usable_key(capsys: Any) -> None:
    assert run_command("new-key", [], {}) == 0
    with pytest.raises(SystemExit) as exited:
        main(["new-key"])
    assert exited.value.code == 0
    first, second = capsys.readouterr().out.split()
    assert first != second and len(base64.b64decode(first, validate=True)) == 32
    assert effective_mode(settings_from(RETENTION_ENCRYPTION_KEY=first)) == "master-key"


def test_rotate_keys_needs_a_database(capsys: Any) -> None:
    assert run_command("rotate-keys", [], {"RETENTION_ENCRYPTION_KEY": GOOD}) == 2
    assert "RETENTION_STORE=mongodb://" in capsys.readouterr().err


def _rotate(environ: dict[str, str]) -> int:
    # The command runs its own event loop, as it does from the shell: off this test's loop.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run_command, "rotate-keys", [], environ).result()


async def test_rotate_keys_re_wraps_every_data_key_under_the_newest(
    make_mongo_store: Any, mongo_uri: str, mongo_db_name: str, store_clock: FakeClock, capsys: Any
) -> None:
    inner: MongoStore = make_mongo_store()
    old = master_key_store(inner, GOOD, vault_backend(inner))
    await old.put(response_record("resp_1", store_clock, tenant="tenant-1"))
    await old.put(response_record("resp_2", store_clock, tenant="tenant-2"))
    newer = new_key_text()
    environ = {"RETENTION_STORE": mongo_uri, "RETENTION_MONGO_DB": mongo_db_name, "RETENTION_TENANT_SECRET": "r" * 32}
    assert _rotate({**environ, "RETENTION_ENCRYPTION_KEY": newer}) == 1  # the old key is missing
    assert "add it to RETENTION_ENCRYPTION_KEY after the newest" in capsys.readouterr().err
    assert _rotate({**environ, "RETENTION_ENCRYPTION_KEY": f"{newer},{GOOD}"}) == 0
    assert "2 data keys re-wrapped" in capsys.readouterr().out
    assert _rotate({**environ, "RETENTION_ENCRYPTION_KEY": newer}) == 0
    assert "0 data keys re-wrapped" in capsys.readouterr().out
    only_new = master_key_store(inner, newer, vault_backend(inner))
    assert await only_new.get("tenant-1", "resp_1") is not None and await only_new.get("tenant-2", "resp_2") is not None
