from __future__ import annotations

import json

import pytest

from retention_middleware.logs.redaction import REDACTED, ContentMatcher

CANARY = "CANARY-5f1e2d3c"
PROMPT = f"Please summarise the memo {CANARY} for me.\nIt's urgent!\nthanks"


def matcher(*texts: str) -> ContentMatcher:
    m = ContentMatcher()
    for text in texts:
        m.add(text)
    return m


@pytest.mark.parametrize(
    "logged",
    [
        PROMPT,
        repr(PROMPT),
        json.dumps(PROMPT),
        json.dumps({"messages": [{"role": "user", "content": PROMPT}]}),
        f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n",
        repr(f"<|im_start|>user\n{PROMPT}<|im_end|>"),
        PROMPT[:30],  # truncated the way --max-log-len does
        PROMPT[12:40],  # any long-enough stretch
    ],
)
def test_the_canary_and_its_stretches_are_redacted_however_the_prompt_was_logged(logged: str) -> None:
    redacted = matcher(PROMPT).redact(f"Received request chatcmpl-1: prompt: {logged}, params: x")
    assert CANARY[:9] not in redacted
    assert "summarise" not in redacted
    assert REDACTED in redacted
    assert redacted.startswith("Received request chatcmpl-1: prompt: ")


def test_non_ascii_content_is_found_in_json_escapes_too() -> None:
    content = "秘密のメッセージ SEARCH_PROOF_雪 です"
    m = matcher(content)
    for logged in (content, json.dumps(content), json.dumps(content, ensure_ascii=False)):
        out = m.redact(f"body={logged}")
        assert "SEARCH_PROOF" not in out and "秘密" not in out and "\\u79d8" not in out


def test_short_content_is_matched_as_whole_words_only() -> None:
    m = matcher("hi")
    assert m.redact("this is his hi") == f"this is his {REDACTED}"
    assert m.redact("prompt: 'user\\nhi'") == f"prompt: 'user\\n{REDACTED}'"


def test_text_that_shares_nothing_long_is_left_alone() -> None:
    m = matcher("The quick brown fox jumps over the lazy dog in the request")
    line = "Finished request chatcmpl-42 in 0.12s with status 200"
    assert m.redact(line) == line


def test_holds_finds_a_streamed_delta_inside_the_content() -> None:
    m = matcher("Hello there, general Kenobi")
    assert m.holds(" general")
    assert not m.holds("Kenobi!")
    assert not m.holds("He")  # too short to tell content from coincidence


def test_adjacent_and_overlapping_matches_make_one_redaction() -> None:
    m = matcher("alpha bravo charlie delta", "charlie delta echo foxtrot")
    assert m.redact("x alpha bravo charlie delta echo foxtrot y") == f"x {REDACTED} y"
