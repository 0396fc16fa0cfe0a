"""How the echo model reads a request: words in, tokens out, and vLLM-shaped 400s for bad parameters.

One word is one token, so counting words is the whole tokenizer; every endpoint checks its
parameters through these readers so a malformed request fails the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import cycle, islice
from typing import Any

from ..errors import OpenAIError, invalid_request

Body = dict[str, Any]


def missing(param: str) -> OpenAIError:
    return invalid_request(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def invalid(param: str, expected: str) -> OpenAIError:
    return invalid_request(f"Invalid '{param}': expected {expected}.", param=param, code="invalid_type")


def words_of(content: Any) -> list[str]:
    """Words of a string, or of the ``text`` of each content part in a list."""
    if isinstance(content, str):
        return content.split()
    words: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                words += part["text"].split()
    return words


def limit_of(body: Body, *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid(name, "an integer of at least 1")
        return value
    return None


def generate(words: list[str], limit: int | None) -> list[str]:
    """The output tokens: the echoed words, repeated cyclically up to ``limit`` when given."""
    if limit is None or not words:
        return words
    return list(islice(cycle(words), limit))


def pieces(tokens: list[str]) -> Iterator[str]:
    """Stream deltas whose concatenation is ``" ".join(tokens)``."""
    for index, token in enumerate(tokens):
        yield token if index == 0 else " " + token


def flag_of(body: Body, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(name, "a boolean")
    return value


def model_of(body: Body, default: str) -> str:
    model = body.get("model")
    if model is None:
        return default
    if not isinstance(model, str) or not model:
        raise invalid("model", "a non-empty string")
    return model


def prompts_of(body: Body, name: str) -> list[list[str]]:
    """A completions prompt or embeddings input: string, strings, token ids, or lists of token ids."""
    value = body.get(name)
    if value is None:
        raise missing(name)
    if isinstance(value, str):
        return [value.split()]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [[str(v) for v in value]]
        if all(isinstance(v, str) for v in value):
            return [v.split() for v in value]
        if all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in value):
            return [[str(i) for i in v] for v in value]
    raise invalid(name, "a string, an array of strings, or token ids")
