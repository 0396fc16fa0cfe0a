"""AES-256-GCM for one content field: a fresh 96-bit nonce per encryption, the record bound as associated data.

A sealed field is the envelope ``version (1) | data key id (8) | nonce (12) | ciphertext and tag``.
The associated data names the tenant, the record id and the field, so a ciphertext copied into another
record, another tenant or another field fails authentication, as does any flipped or missing byte.
The key id only picks the key to try (it says nothing about the plaintext); authenticity comes from
GCM's tag alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits, GCM's native nonce size: random nonces are safe far past our volumes
KEY_ID_BYTES = 8
VERSION = 1
_HEADER = 1 + KEY_ID_BYTES + NONCE_BYTES
_TAG_BYTES = 16
_AD_LABEL = b"retention-middleware/field/v1"


class DecryptError(Exception):
    """A sealed field could not be opened: wrong or missing key, tampered or truncated bytes.

    The message never holds any byte of the envelope; the caller treats the record as missing.
    """


@dataclass(frozen=True)
class DataKey:
    """One AES-256 key, ready to use, and the id envelopes sealed under it carry."""

    key_id: bytes
    aead: AESGCM

    @classmethod
    def of(cls, key_id: bytes, raw: bytes) -> DataKey:
        if len(raw) != KEY_BYTES or len(key_id) != KEY_ID_BYTES:
            raise ValueError("a data key is 32 bytes with an 8-byte id")
        return cls(key_id, AESGCM(raw))


def associated_data(*parts: str) -> bytes:
    """The parts, each length-prefixed, so ("ab", "c") and ("a", "bc") never collide."""
    out = bytearray(_AD_LABEL)
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        out += len(encoded).to_bytes(4, "big") + encoded
    return bytes(out)


def field_associated_data(tenant: str, record_id: str, field: str) -> bytes:
    return associated_data(tenant, record_id, field)


def seal(key: DataKey, ad: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return bytes([VERSION]) + key.key_id + nonce + key.aead.encrypt(nonce, plaintext, ad)


def key_id_of(envelope: bytes) -> bytes:
    """The id of the key an envelope claims to be sealed under; DecryptError if it is no envelope."""
    if len(envelope) < _HEADER + _TAG_BYTES or envelope[0] != VERSION:
        raise DecryptError("not a sealed field of a known version, or truncated")
    return envelope[1 : 1 + KEY_ID_BYTES]


def open_sealed(key: DataKey, ad: bytes, envelope: bytes) -> bytes:
    if key_id_of(envelope) != key.key_id:
        raise DecryptError("sealed under another key")
    nonce = envelope[1 + KEY_ID_BYTES : _HEADER]
    try:
        return key.aead.decrypt(nonce, envelope[_HEADER:], ad)
    except InvalidTag:
        raise DecryptError("authentication failed: wrong key, another record's data, or tampered bytes") from None
