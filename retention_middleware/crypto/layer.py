"""The encryption layer one middleware builds from its settings: wraps the store, scopes request keys."""

from __future__ import annotations

from .._types import Headers
from ..settings import RetentionSettings
from ..store.base import ResponseStore
from ..store.conversations import ConversationStore
from ..store.mongo import MongoStore
from .caller_key import CallerKeys
from .context import RequestKeys, bearer_token
from .conversations import EncryptingConversationStore
from .fields import CallerKeySealer, FieldSealer, VaultSealer
from .keys import load_master_keys
from .modes import Mode, effective_mode
from .store import EncryptingStore
from .vault import KeyVault, MemoryVault, VaultBackend
from .vault_mongo import VAULT_COLLECTION, MongoVault


def vault_backend(store: ResponseStore) -> VaultBackend:
    """The vault beside the store's data: a collection of its MongoDB database, or process memory."""
    if isinstance(store, MongoStore):
        mongo = store
        return MongoVault(lambda: mongo.collection(VAULT_COLLECTION))
    return MemoryVault()


class Encryption:
    """What encryption at rest needs per middleware; build with ``encryption_for(settings)``."""

    def __init__(self, settings: RetentionSettings, mode: Mode) -> None:
        self.mode = mode
        self._settings = settings
        self._caller_keys = CallerKeys(settings.tenant_secret or "") if mode == "caller-key" else None

    def wrap(self, store: ResponseStore) -> EncryptingStore:
        if self._caller_keys is not None:
            return EncryptingStore(store, CallerKeySealer(self._caller_keys), None)
        master_keys = load_master_keys(self._settings)
        if master_keys is None:  # the settings refuse master-key mode without a key; this is a bug guard
            raise RuntimeError("master-key encryption without a master key")
        vault = KeyVault(vault_backend(store), master_keys)
        sealer: FieldSealer = VaultSealer(vault)
        return EncryptingStore(store, sealer, vault)

    @staticmethod
    def wrap_conversations(conversations: ConversationStore, store: EncryptingStore) -> EncryptingConversationStore:
        """``conversations`` sealed with ``store``'s sealer: one tenant (or caller) key for both, so
        erasure destroying it reaches conversations too."""
        return EncryptingConversationStore(conversations, store.sealer)

    def bind(self, headers: Headers) -> RequestKeys:
        """Keys for one request, bound to its context until ``unbind()``."""
        token = bearer_token(headers) if self._caller_keys is not None else None
        return RequestKeys(token).bind()


def encryption_for(settings: RetentionSettings) -> Encryption | None:
    """The encryption layer the settings ask for, or None when encryption at rest is off."""
    mode = effective_mode(settings)
    return None if mode == "off" else Encryption(settings, mode)
