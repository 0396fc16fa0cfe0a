"""``retention-proxy new-key`` and ``retention-proxy rotate-keys``: the two key chores of an operator.

``new-key`` prints a fresh master key (32 random bytes, base64), ready for ``RETENTION_ENCRYPTION_KEY``
or a key file. ``rotate-keys`` reads the same settings as the proxy and re-wraps every data key in the
MongoDB vault under the newest master key of ``RETENTION_ENCRYPTION_KEY=new,old…``; records need no
rewrite (they are sealed by data keys, which do not change), and afterwards the old master key can be
dropped from the list. Exit status 0 when every key is under the newest, 1 when some could not be
unwrapped or the store failed, 2 for bad settings.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence

from ..settings import RetentionSettings, SettingsError
from ..store.base import StoreError
from ..store.mongo import MongoStore
from .keys import KEY_ENV, load_master_keys, new_key_text
from .layer import vault_backend
from .vault import KeyVault

COMMANDS = ("new-key", "rotate-keys")


async def _rotate(settings: RetentionSettings) -> tuple[int, int, int, str]:
    master_keys = load_master_keys(settings)
    if master_keys is None:
        raise SettingsError(f"rotate-keys needs the master keys: set {KEY_ENV}=new,old…")
    store = MongoStore(settings)
    try:
        vault = KeyVault(vault_backend(store), master_keys)
        rewrapped, current, unreadable = await vault.rotate()
    finally:
        await store.close()
    return rewrapped, current, unreadable, master_keys.newest.key_id


def run_command(name: str, args: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run one key command; its exit status."""
    if args:
        print(f"retention-proxy {name}: takes no arguments (settings come from RETENTION_*)", file=sys.stderr)
        return 2
    if name == "new-key":
        print(new_key_text())
        return 0
    try:
        settings = RetentionSettings.from_env(environ)
        if not settings.uses_mongodb:
            raise SettingsError(
                "rotate-keys works on the MongoDB key vault: set RETENTION_STORE=mongodb://… (the memory "
                "store's keys live and die with its process)"
            )
        rewrapped, current, unreadable, newest = asyncio.run(_rotate(settings))
    except SettingsError as error:
        print(f"retention-proxy rotate-keys: error: {error}", file=sys.stderr)
        return 2
    except StoreError as error:
        print(f"retention-proxy rotate-keys: error: the store failed ({error.code}): {error}", file=sys.stderr)
        return 1
    print(f"rotate-keys: {rewrapped} data keys re-wrapped under master key {newest}, {current} already were")
    if unreadable:
        print(
            f"rotate-keys: {unreadable} data keys are wrapped by a master key that is not configured; "
            f"add it to {KEY_ENV} after the newest and run rotate-keys again",
            file=sys.stderr,
        )
        return 1
    return 0
