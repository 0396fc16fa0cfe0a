"""Checking ids before they go anywhere near a store query.

An id taken from a body or a path must be a plain string of id characters. Anything else — in
particular an object such as ``{"$ne": null}`` that a document database would read as an operator —
is answered with 400 and never reaches the store.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import invalid_request

# Upstreams mint the ids (vLLM and OpenAI use resp_ plus hex); this admits every such id and
# nothing a query language could read as syntax.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$")


def checked_id(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise invalid_request(f"Invalid type for '{param}': expected a string.", param=param, code="invalid_type")
    if not _ID.match(value):
        # The value is not echoed: it failed the check, so it may be anything, content included.
        raise invalid_request(f"Invalid '{param}': not a valid id.", param=param, code="invalid_value")
    return value
