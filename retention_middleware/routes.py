"""The request classifier: which OpenAI endpoint a request is for, from its method and path alone.

Both ``/v1/...`` and the bare paths some servers also serve (llama.cpp, for one) are recognised; a
trailing slash is ignored. Everything else is ``OTHER`` and is forwarded untouched.
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
# a proper 400 rather than a silent pass-through.
_RESPONSE_ITEM = re.compile(r"^(?:/v1)?/responses/([^/]+)(/input_items)?/?$")
_CONVERSATIONS = re.compile(r"^(?:/v1)?/conversations(?:/.*)?$")
# Model ids may hold slashes ("Qwen/Qwen3-4B").
_MODEL_ITEM = re.compile(r"^(?:/v1)?/models/.+$")


def classify(method: str, path: str) -> tuple[Route, str | None]:
    """The route and, for ``/responses/{id}``, the raw id from the path."""
    if len(path) > 1 and path[-1] == "/":
        path = path[:-1]
    route = _EXACT.get((method, path))
    if route is not None:
        return route, None
    if method == "GET" and "/models/" in path and _MODEL_ITEM.match(path):
        return Route.MODELS, None
    if "conversations" in path and _CONVERSATIONS.match(path):
        # Every method and sub-path: a conversation is kept data and must never reach the upstream.
        return Route.CONVERSATIONS, None
    if "/responses/" in path:
        match = _RESPONSE_ITEM.match(path)
        if match:
            response_id, input_items = match.groups()
            if input_items and method == "GET":
                return Route.RESPONSES_INPUT_ITEMS, response_id
            if not input_items and method == "GET":
                return Route.RESPONSES_RETRIEVE, response_id
            if not input_items and method == "DELETE":
                return Route.RESPONSES_DELETE, response_id
    return Route.OTHER, None


def is_responses_socket(path: str) -> bool:
    """Whether a WebSocket to ``path`` is the Responses API's WebSocket mode (``/v1/responses``)."""
    return path.rstrip("/") in ("/v1/responses", "/responses")
