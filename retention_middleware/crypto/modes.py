"""Which encryption mode the settings choose, checked once at start-up, and the line start-up prints.

- ``off``: content is stored in clear (the default when no master key is set).
- ``master-key``: content sealed under per-tenant data keys wrapped by the operator's master key
  (``auto`` picks it when ``RETENTION_ENCRYPTION_KEY`` or ``…_FILE`` is set).
- ``caller-key``: content sealed under a key derived from the caller's own bearer token; the server
  keeps no key that opens it. It needs bearer-token tenancy: with a tenant header there is no caller key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..settings import SettingsError
from .keys import KEY_ENV, KEY_FILE_ENV, MAKE_ONE, MODE_ENV, load_master_keys

if TYPE_CHECKING:
    from ..settings import RetentionSettings

Mode = Literal["off", "master-key", "caller-key"]
MODES = ("auto", "off", "master-key", "caller-key")
_EXPLICIT: dict[str, Mode] = {"off": "off", "master-key": "master-key", "caller-key": "caller-key"}


def effective_mode(settings: RetentionSettings) -> Mode:
    chosen = settings.encryption
    if chosen == "auto":
        has_key = settings.encryption_key is not None or settings.encryption_key_file is not None
        return "master-key" if has_key else "off"
    if chosen in _EXPLICIT:
        return _EXPLICIT[chosen]
    raise SettingsError(f"encryption ({MODE_ENV}): {chosen!r} is not one of " + ", ".join(MODES))


def check_encryption_settings(settings: RetentionSettings) -> None:
    """Raise SettingsError naming the setting and the fix; reads the key (file) to prove it is usable."""
    mode = effective_mode(settings)
    has_key = settings.encryption_key is not None or settings.encryption_key_file is not None
    if mode == "off" and has_key:
        raise SettingsError(
            f"encryption ({MODE_ENV}) is off but a master key is set ({KEY_ENV} / {KEY_FILE_ENV}); "
            f"unset the key or use {MODE_ENV}=master-key"
        )
    if mode == "master-key" and load_master_keys(settings) is None:
        raise SettingsError(f"encryption ({MODE_ENV}) is master-key but no key is set: set {KEY_ENV}; {MAKE_ONE}")
    if mode == "caller-key":
        if settings.tenant_header is not None:
            raise SettingsError(
                f"encryption ({MODE_ENV}) is caller-key, which derives each key from the caller's bearer "
                "token, but tenants come from a header (RETENTION_TENANT_HEADER), where there is no caller "
                f"key; unset RETENTION_TENANT_HEADER or use {MODE_ENV}=master-key"
            )
        if settings.tenant_secret is None:
            raise SettingsError(
                f"encryption ({MODE_ENV}) is caller-key, which needs RETENTION_TENANT_SECRET (the salt of "
                "every derived key and what tells callers apart); set it to 32+ random characters"
            )
        if has_key:
            raise SettingsError(
                f"encryption ({MODE_ENV}) is caller-key, where the server holds no key, but a master key is "
                f"set ({KEY_ENV} / {KEY_FILE_ENV}); unset it"
            )


def startup_line(settings: RetentionSettings) -> str:
    """One line for the start-up log saying whether stored content is encrypted, and how."""
    mode = effective_mode(settings)
    if mode == "off":
        return f"encryption at rest is off: stored content is kept in clear; set {KEY_ENV} ({MAKE_ONE}) to encrypt it"
    if mode == "caller-key":
        return "encryption at rest: caller-key (stored content is readable only with the caller's own API key)"
    keys = load_master_keys(settings)
    newest = keys.newest.key_id if keys is not None else "(none)"
    count = len(keys.keys) if keys is not None else 0
    return f"encryption at rest: master-key (per-tenant data keys wrapped by master key {newest}, {count} configured)"
