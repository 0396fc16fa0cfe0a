"""Noise: tiny pieces of content (``{``, a single letter, "the") do not redact unrelated records.

A small random model writes exactly such output; while it streams, the rest of the process's logs
must stay readable. Content worth redacting still is, however short a whole prompt is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from retention_middleware.logs.log_guard import GuardRegistration

from support.asgi_tools import capture_all_logs

# What a tiny random model streams: braces, single letters, short common words, lines of dashes.
RANDOM_OUTPUT = ["{", "\n", "a", " the", "\n", "I", " and", "'", "s", " of", "\n", "}", "\n", "-" * 12, "\n", "\\"]
UNRELATED = "GET /health -> {a: 1, s: 'ok'} The cat thinks the cache of a and b is ------------ fine"


@pytest.fixture
def noisy() -> Iterator[GuardRegistration]:
    registration = GuardRegistration()
    registration.content.add_source({"model": "m", "messages": [{"role": "user", "content": "a"},
                                                                 {"role": "user", "content": "{"}]})  # fmt: skip
    # A non-streamed answer with logprobs: every token, and every token not chosen, is a string.
    tokens = [{"token": token, "logprob": -1.0, "top_logprobs": [{"token": "The", "logprob": -2.0}]}
              for token in ["I", " think", " the", " cat"]]  # fmt: skip
    choice = {"message": {"content": "I think the cat"}, "logprobs": {"content": tokens}}
    registration.content.add_source({"choices": [choice]})
    for delta in RANDOM_OUTPUT:
        registration.content.add_generated(0, delta)
    yield registration
    registration.release()


def logged(*args: object) -> str:
    with capture_all_logs() as logs:
        logging.getLogger("test.guard.noise").info(*args)  # type: ignore[arg-type]
    return logs.text().split(" ", 2)[2].rstrip("\n")


def test_pieces_without_letters_or_too_short_do_not_redact_unrelated_records(noisy: GuardRegistration) -> None:
    assert logged(UNRELATED) == UNRELATED
    assert logged("status %s %s %s", "{", "the", "a") == "status { the a"


def test_content_worth_redacting_still_is(noisy: GuardRegistration) -> None:
    noisy.content.add_source({"messages": [{"role": "user", "content": "hi"},
                                           {"role": "user", "content": "Line one of it\nthanks\nok"}]})  # fmt: skip
    for delta in [" Kenobi", " general", " there"]:
        noisy.content.add_generated(1, delta)
    assert logged("prompt: %r", "hi") == "prompt: '[redacted]'"  # a whole prompt, however short
    assert logged("last line but one: %s", "thanks") == "last line but one: [redacted]"  # a line of a prompt
    assert logged("all is ok") == "all is ok"  # a line too short to tell from anybody's words
    assert logged("delta: %r", " general") == "delta: '[redacted]'"  # one streamed delta, logged alone
    assert logged("general: 3 idle") == "general: 3 idle"  # ... but not the same word elsewhere
