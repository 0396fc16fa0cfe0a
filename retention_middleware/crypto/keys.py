"""Master keys: read from ``RETENTION_ENCRYPTION_KEY`` or ``RETENTION_ENCRYPTION_KEY_FILE``, checked at start-up.

A master key is 32 random bytes written in base64. The setting takes a comma-separated list, newest
first (``new,old…``): the newest wraps every data key created from now on, the older ones still unwrap
data keys wrapped before a rotation (``retention-proxy rotate-keys`` re-wraps those). The file form
holds the same text (a Kubernetes secret mounted as a file); surrounding whitespace is ignored.

A master key never encrypts content itself: it only wraps per-tenant data keys (``vault``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..settings import SettingsError
from .cipher import KEY_BYTES, KEY_ID_BYTES

if TYPE_CHECKING:
    from ..settings import RetentionSettings

KEY_ENV = "RETENTION_ENCRYPTION_KEY"
KEY_FILE_ENV = "RETENTION_ENCRYPTION_KEY_FILE"
MODE_ENV = "RETENTION_ENCRYPTION"
MAKE_ONE = "make one with `retention-proxy new-key`"


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    """Hex of a hash of the key: names it in the vault and in logs without revealing it."""
    aead: AESGCM


@dataclass(frozen=True)
class MasterKeys:
    """The configured master keys, newest first."""

    keys: tuple[MasterKey, ...]

    @property
    def newest(self) -> MasterKey:
        return self.keys[0]

    def by_id(self, key_id: str) -> MasterKey | None:
        return next((key for key in self.keys if key.key_id == key_id), None)


def new_key_text() -> str:
    """A fresh master key as the setting takes it: 32 random bytes in base64."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def master_key_id(raw: bytes) -> str:
    return hashlib.sha256(b"retention-middleware/master-key-id\x00" + raw).digest()[:KEY_ID_BYTES].hex()


def parse_master_keys(text: str, source: str) -> MasterKeys:
    """``new,old…`` as MasterKeys; SettingsError naming ``source`` and the fix for any bad entry."""
    entries = [part.strip() for part in text.split(",") if part.strip()]
    if not entries:
        raise SettingsError(f"{source}: no key given; {MAKE_ONE}")
    keys: list[MasterKey] = []
    for position, entry in enumerate(entries, start=1):
        which = f"{source}: key {position} of {len(entries)}"
        try:
            raw = base64.b64decode(entry, validate=True)
        except (binascii.Error, ValueError):
            raise SettingsError(f"{which} is not valid base64; {MAKE_ONE}") from None
        if len(raw) != KEY_BYTES:
            raise SettingsError(
                f"{which} decodes to {len(raw)} bytes, but a key is {KEY_BYTES} random bytes in base64; {MAKE_ONE}"
            )
        keys.append(MasterKey(master_key_id(raw), AESGCM(raw)))
    if len({key.key_id for key in keys}) != len(keys):
        raise SettingsError(f"{source}: the same key is listed twice; list each key once, newest first")
    return MasterKeys(tuple(keys))


def load_master_keys(settings: RetentionSettings) -> MasterKeys | None:
    """The master keys the settings name (from the variable or the file), or None when none is set."""
    if settings.encryption_key is not None and settings.encryption_key_file is not None:
        raise SettingsError(f"encryption_key ({KEY_ENV}) and encryption_key_file ({KEY_FILE_ENV}): set one, not both")
    if settings.encryption_key is not None:
        return parse_master_keys(settings.encryption_key, f"encryption_key ({KEY_ENV})")
    path = settings.encryption_key_file
    if path is None:
        return None
    source = f"encryption_key_file ({KEY_FILE_ENV})"
    try:
        with open(os.path.expanduser(path), encoding="ascii") as file:
            text = file.read()
    except OSError as error:
        raise SettingsError(f"{source}: cannot read {path!r} ({error.strerror}); point it at a readable file") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{source}: {path!r} is not base64 text; {MAKE_ONE} and write it to the file") from None
    return parse_master_keys(text, f"{source} {path!r}")
