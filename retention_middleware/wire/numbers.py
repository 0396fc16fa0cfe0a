"""Whole numbers read from requests (query parameters, header values), bounded before conversion.

``int()`` accepts far more than a client should be able to send: any Unicode decimal digit (so
full-width ``１００`` passes ``str.isdigit``, and superscripts pass it and then fail), underscores, signs
and surrounding spaces, and it refuses more than 4300 digits with a ValueError that would surface as
a 500. Every number the middleware reads from a request goes through ``bounded_whole`` instead: ASCII
digits only, no more of them than ``max_digits``, so the conversion is cheap and cannot raise.
"""

from __future__ import annotations

_ASCII_DIGITS = frozenset(b"0123456789")


def bounded_whole(text: str | bytes, max_digits: int) -> int | None:
    """``text`` as a non-negative integer if it is 1 to ``max_digits`` ASCII digits, else None."""
    raw = text.encode("latin-1", "replace") if isinstance(text, str) else text
    if not 0 < len(raw) <= max_digits or not _ASCII_DIGITS.issuperset(raw):
        return None
    return int(raw)
