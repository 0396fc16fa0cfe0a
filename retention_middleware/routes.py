"""The request classifier: which OpenAI endpoint a request is for, from its method and path alone.

Both ``/v1/...`` and the bare paths some servers also serve (llama.cpp, for one) are recognised.
Paths are normalised before they are matched, so that no spelling an upstream might route to an
inspected endpoint slips past as ``OTHER``: runs of slashes collapse, ``.`` and ``..`` segments are
resolved, a trailing slash is ignored, and the fixed segments match in any ASCII case. vLLM and most
servers are case-sensitive and answer ``/V1/RESPONSES`` with 404, but some (ASP.NET, IIS, servers
behind a case-folding gateway) are not; classifying case-insensitively costs a case-sensitive upstream
nothing (it still sees the path as sent, and answers 404) and keeps a case-insensitive one guarded.
Response ids keep their case. ``HEAD`` on a stored response is served like ``GET``, and any other
``GET``/``HEAD``/``DELETE`` path under ``/responses/`` (an id holding an encoded slash, extra segments)
goes to the stored-response handler, whose id check answers 400: such paths are never forwarded.
Everything else is ``OTHER`` and is forwarded untouched.
"""

from __future__ import annotations

import enum
import re


class Route(enum.Enum):
    CHAT = "chat.completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    RESPONSES_CREATE = "responses.create"
    RESPONSES_RETRIEVE = "responses.retrieve"
    RESPONSES_DELETE = "responses.delete"
    RESPONSES_INPUT_ITEMS = "responses.input_items"
    RESPONSES_LIST = "responses.list"
    RESPONSES_COMPACT = "responses.compact"
    RESPONSES_INPUT_TOKENS = "responses.input_tokens"
    MODELS = "models"
    RETENTION_ERASE = "retention.erase"
    CONVERSATIONS = "conversations"
    OTHER = "other"


_EXACT: dict[tuple[str, str], Route] = {}
for _prefix in ("/v1", ""):
    _EXACT[("POST", f"{_prefix}/chat/completions")] = Route.CHAT
    _EXACT[("POST", f"{_prefix}/completions")] = Route.COMPLETIONS
    _EXACT[("POST", f"{_prefix}/embeddings")] = Route.EMBEDDINGS
    _EXACT[("POST", f"{_prefix}/responses")] = Route.RESPONSES_CREATE
    _EXACT[("GET", f"{_prefix}/models")] = Route.MODELS
    _EXACT[("GET", f"{_prefix}/responses")] = Route.RESPONSES_LIST
    _EXACT[("POST", f"{_prefix}/responses/compact")] = Route.RESPONSES_COMPACT
    _EXACT[("POST", f"{_prefix}/responses/input_tokens")] = Route.RESPONSES_INPUT_TOKENS
_EXACT[("DELETE", "/v1/retention/data")] = Route.RETENTION_ERASE

# The id segment is taken as it stands; its syntax is checked by the handler, which can answer with
# a proper 400 rather than a silent pass-through. ASCII-only case folding: with Unicode rules the
# Kelvin sign would match "k".
_RESPONSE_ITEM = re.compile(r"^(?:/v1)?/responses/([^/]+)(/input_items)?$", re.IGNORECASE | re.ASCII)
_RESPONSE_ANY = re.compile(r"^(?:/v1)?/responses/(.+)$", re.IGNORECASE | re.ASCII)
_CONVERSATIONS = re.compile(r"^(?:/v1)?/conversations(?:/.*)?$", re.IGNORECASE | re.ASCII)
# Model ids may hold slashes ("Qwen/Qwen3-4B").
_MODEL_ITEM = re.compile(r"^(?:/v1)?/models/.+$", re.IGNORECASE | re.ASCII)
_SLASHES = re.compile(r"//+")


def normalise(path: str, *, resolve_dots: bool = True) -> str:
    """The path as a lenient router would see it: one slash between segments, dot segments resolved,
    no trailing slash."""
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if resolve_dots and "/." in path:
        segments: list[str] = []
        for segment in path.split("/")[1:]:
            if segment == "..":
                if segments:
                    segments.pop()
            elif segment != ".":
                segments.append(segment)
        path = "/" + "/".join(segments)
    if len(path) > 1 and path[-1] == "/":
        path = path[:-1]
    return path


def classify(method: str, path: str, raw_path: bytes | None = None) -> tuple[Route, str | None]:
    """The route and, for ``/responses/{id}``, the raw id from the path.

    ``raw_path`` (the path before percent-decoding) lets an id holding ``%2F`` be told from two
    segments; such an id is returned whole, slash included, so the handler refuses it.
    """
    route = _EXACT.get((method, path))
    if route is not None:  # the common case, already in canonical form
        return route, None
    # An encoded slash is not a separator, so "a%2F..%2Fb" is one (invalid) id, not a way up.
    encoded_slash = raw_path is not None and b"%2f" in raw_path.lower()
    path = normalise(path, resolve_dots=not encoded_slash)
    folded = path.lower() if path.isascii() else path
    route = _EXACT.get((method, folded))
    if route is not None:
        return route, None
    if method == "GET" and "/models/" in folded and _MODEL_ITEM.match(path):
        return Route.MODELS, None
    if "conversations" in folded and _CONVERSATIONS.match(path):
        # Every method and sub-path: a conversation is kept data and must never reach the upstream.
        return Route.CONVERSATIONS, None
    if "/responses/" in folded and method in ("GET", "HEAD", "DELETE"):
        match = None if encoded_slash else _RESPONSE_ITEM.match(path)
        if match and not (method == "DELETE" and match.group(2)):
            response_id, input_items = match.groups()
            if method == "DELETE":
                return Route.RESPONSES_DELETE, response_id
            return (Route.RESPONSES_INPUT_ITEMS if input_items else Route.RESPONSES_RETRIEVE), response_id
        rest = _RESPONSE_ANY.match(path)
        if rest:
            # Not a plain id: the handler answers 400 and nothing is forwarded.
            return (Route.RESPONSES_DELETE if method == "DELETE" else Route.RESPONSES_RETRIEVE), rest.group(1)
    return Route.OTHER, None


def is_responses_socket(path: str) -> bool:
    """Whether a WebSocket to ``path`` is the Responses API's WebSocket mode (``/v1/responses``)."""
    return path.rstrip("/") in ("/v1/responses", "/responses")
