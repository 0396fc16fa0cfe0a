from __future__ import annotations

from typing import Any

import pytest

from retention_middleware.wire.metering import (
    completion_chunk_texts,
    is_usage_only_chunk,
    normalise_usage,
    response_event_text,
    usage_of_body,
)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (  # chat completions, with details
            {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
             "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}},
            {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15, "cached_tokens": 4, "reasoning_tokens": 2},
        ),
        (  # vLLM chat, details null
            {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10, "prompt_tokens_details": None},
            {"input_tokens": 3, "output_tokens": 7, "total_tokens": 10, "cached_tokens": 0, "reasoning_tokens": 0},
        ),
        (  # embeddings
            {"prompt_tokens": 8, "total_tokens": 8},
            {"input_tokens": 8, "output_tokens": 0, "total_tokens": 8, "cached_tokens": 0, "reasoning_tokens": 0},
        ),
        (  # Responses API (vLLM's extra per-turn fields ignored)
            {"input_tokens": 436, "input_tokens_details": {"cached_tokens": 432, "input_tokens_per_turn": [436]},
             "output_tokens": 36, "output_tokens_details": {"reasoning_tokens": 18}, "total_tokens": 472},
            {"input_tokens": 436, "output_tokens": 36, "total_tokens": 472, "cached_tokens": 432,
             "reasoning_tokens": 18},
        ),
        (  # no total: derived
            {"input_tokens": 1, "output_tokens": 2},
            {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3, "cached_tokens": 0, "reasoning_tokens": 0},
        ),
        (None, None),
        ({"foo": 1}, None),
        ("12", None),
    ],
)  # fmt: skip
def test_usage_is_normalised_across_apis(usage: Any, expected: Any) -> None:
    assert normalise_usage(usage) == expected


def test_counts_of_the_wrong_type_are_not_trusted() -> None:
    assert normalise_usage({"prompt_tokens": True, "completion_tokens": "5"}) == {
        "input_tokens": None, "output_tokens": None, "total_tokens": None, "cached_tokens": 0,
        "reasoning_tokens": 0,
    }  # fmt: skip


def test_usage_of_a_body() -> None:
    assert usage_of_body({"usage": {"prompt_tokens": 1, "completion_tokens": 1}})["total_tokens"] == 2  # type: ignore[index]
    assert usage_of_body([1, 2]) is None


def test_usage_only_chunk() -> None:
    assert is_usage_only_chunk({"choices": [], "usage": {"prompt_tokens": 1}})
    assert not is_usage_only_chunk({"choices": [{"delta": {}}], "usage": {"prompt_tokens": 1}})
    assert not is_usage_only_chunk({"choices": [], "usage": None})


def test_chunk_texts_keep_choices_and_fields_apart() -> None:
    chunk = {
        "choices": [
            {"index": 0, "delta": {"content": "Hel", "reasoning_content": "think"}},
            {"index": 1, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}},
            {"index": 2, "text": "completion text"},
        ]
    }
    assert completion_chunk_texts(chunk) == [
        ((0, "content"), "Hel"),
        ((0, "reasoning_content"), "think"),
        ((1, "tool", 0), '{"a"'),
        (2, "completion text"),
    ]


def test_response_delta_events() -> None:
    event = {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0, "content_index": 0,
             "delta": "HEL"}  # fmt: skip
    assert response_event_text(event) == (("response.output_text.delta", "m1", 0, 0), "HEL")
    assert response_event_text({"type": "response.completed", "response": {}}) is None
