"""Encryption at rest: content fields sealed with AES-256-GCM under per-tenant or caller-held keys."""

from __future__ import annotations

from .cipher import DecryptError
from .fields import SEALED, FieldSealer
from .layer import Encryption, encryption_for
from .modes import startup_line
from .store import EncryptingStore, KeyHolder

__all__ = [
    "SEALED",
    "DecryptError",
    "EncryptingStore",
    "Encryption",
    "FieldSealer",
    "KeyHolder",
    "encryption_for",
    "startup_line",
]
