"""Chat Completions answer -> Responses answer: JSON rules, stream rules, and the spec's schemas."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from retention_middleware.backends.response_translation import response_from_completion
from retention_middleware.backends.stream_translation import StreamTranslator

from support.asgi_tools import random_split
from support.openai_schema import validate, validate_event

REQUEST = {"model": "m", "input": "x", "store": False, "tools": [{"type": "function", "name": "f", "parameters": {}}]}
USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 2},
         "completion_tokens_details": {"reasoning_tokens": 3}}  # fmt: skip


def completion(message: dict[str, Any], finish: str | None = "stop", usage: Any = USAGE) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "served-model",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": usage}  # fmt: skip


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def shape(response: dict[str, Any]) -> list[Any]:
    """The output as (type, the text / name+arguments) pairs."""
    out: list[Any] = []
    for item in response["output"]:
        if item["type"] == "message":
            out.append(("message", [part.get("text", part.get("refusal")) for part in item["content"]]))
        elif item["type"] == "reasoning":
            out.append(("reasoning", item["content"][0]["text"]))
        else:
            out.append(("function_call", item["call_id"], item["name"], item["arguments"]))
    return out


JSON_RULES: list[tuple[str, dict[str, Any], str | None, list[Any], str, Any]] = [
    ("content is one output_text message", {"content": "hello"}, "stop", [("message", ["hello"])], "completed", None),
    ("reasoning_content is a reasoning item first", {"content": "hi", "reasoning_content": "think"}, "stop",
     [("reasoning", "think"), ("message", ["hi"])], "completed", None),
    ("vLLM's newer reasoning field too", {"content": "hi", "reasoning": "think"}, "stop",
     [("reasoning", "think"), ("message", ["hi"])], "completed", None),
    ("tool_calls are function_call items, parallel ones in order",
     {"content": None, "tool_calls": [call("c1", "f", "{}"), call("c2", "g", '{"a":1}')]}, "tool_calls",
     [("function_call", "c1", "f", "{}"), ("function_call", "c2", "g", '{"a":1}')], "completed", None),
    ("empty content next to tool calls is no message", {"content": "", "tool_calls": [call("c1", "f", "{}")]},
     "tool_calls", [("function_call", "c1", "f", "{}")], "completed", None),
    ("length is incomplete with its reason", {"content": "cut"}, "length", [("message", ["cut"])], "incomplete",
     {"reason": "max_output_tokens"}),
    ("content_filter is incomplete with its reason", {"content": ""}, "content_filter", [("message", [""])],
     "incomplete", {"reason": "content_filter"}),
    ("arguments sent as an object become a JSON string",
     {"content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f",
                                                                                   "arguments": {"a": 1}}}]},
     "tool_calls", [("function_call", "c1", "f", '{"a":1}')], "completed", None),
    ("a refusal is a refusal part", {"content": None, "refusal": "I can't."}, "stop", [("message", ["I can't."])],
     "completed", None),
]  # fmt: skip


@pytest.mark.parametrize(("message", "finish", "output", "status", "incomplete"), [r[1:] for r in JSON_RULES],
                         ids=[r[0] for r in JSON_RULES])  # fmt: skip
def test_json_rule(message: dict[str, Any], finish: str, output: list[Any], status: str, incomplete: Any) -> None:
    response = response_from_completion(REQUEST, completion(message, finish))
    assert shape(response) == output
    assert response["status"] == status
    assert response["incomplete_details"] == incomplete
    assert response["model"] == "served-model"
    validate(response, "Response")


def test_json_usage_is_mapped_and_ids_are_minted_fresh() -> None:
    first = response_from_completion(REQUEST, completion({"content": "a", "tool_calls": [call("", "f", "{}")]}))
    second = response_from_completion(REQUEST, completion({"content": "a"}))
    assert first["usage"] == {
        "input_tokens": 5, "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
        "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 12,
    }  # fmt: skip
    assert first["id"] != second["id"] and first["id"].startswith("resp_")
    assert len(first["id"]) - len("resp_") >= 32  # at least 128 bits of randomness, hex-encoded
    assert first["output"][1]["call_id"].startswith("call_")  # a call without an id gets one
    assert response_from_completion(REQUEST, completion({"content": "a"}, usage=None))["usage"] is None


# -- streams ------------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "served", "choices": choices}
    return b"data: " + orjson.dumps({**body, **extra}) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def events_of(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: ")]


def translate(messages: list[bytes]) -> tuple[list[bytes], list[dict[str, Any]]]:
    translator = StreamTranslator(REQUEST)
    out = [translator.feed(body, final=index == len(messages) - 1) for index, body in enumerate(messages)]
    events = events_of(b"".join(out))
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    for event in events:
        validate_event(event)
    return out, events


def terminal(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] in ("response.completed", "response.incomplete", "response.failed")
    response: dict[str, Any] = events[-1]["response"]
    return response


def test_a_text_stream_is_the_full_event_sequence() -> None:
    messages = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
                chunk({}, "stop"), chunk(None, usage=USAGE), DONE]  # fmt: skip
    out, events = translate(messages)
    assert [event["type"] for event in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed",
    ]  # fmt: skip
    response = terminal(events)
    assert shape(response) == [("message", ["Hello"])]
    assert response["usage"]["input_tokens"] == 5 and response["usage"]["output_tokens"] == 7
    assert len(out) == len(messages)  # one message out per message in
    # No buffering: the first text delta leaves with the chunk that carried it.
    assert b'"delta":"Hel"' in out[1]


def test_tool_calls_split_across_many_chunks_and_parallel_calls() -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    messages = [chunk({"role": "assistant"})]
    for index, (call_id, name) in enumerate([("call_a", "get_weather"), ("call_b", "get_time")]):
        messages.append(chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                               "function": {"name": name, "arguments": ""}}]}))  # fmt: skip
        messages += [chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[i : i + 2]}}]})
                     for i in range(0, len(arguments), 2)]  # fmt: skip
    messages += [chunk({}, "tool_calls"), DONE]
    _, events = translate(messages)
    response = terminal(events)
    assert shape(response) == [("function_call", "call_a", "get_weather", arguments),
                               ("function_call", "call_b", "get_time", arguments)]  # fmt: skip
    done = [event for event in events if event["type"] == "response.function_call_arguments.done"]
    assert [(event["name"], event["arguments"], event["output_index"]) for event in done] == [
        ("get_weather", arguments, 0), ("get_time", arguments, 1)]  # fmt: skip
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
                     and e["output_index"] == 0)  # fmt: skip
    assert deltas == arguments


def test_interleaved_parallel_calls_and_a_name_arriving_after_the_first_fragment() -> None:
    messages = [
        chunk({"tool_calls": [{"index": 0, "id": "c0", "function": {"arguments": '{"a"'}}]}),  # no name yet
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "function": {"name": "f"}},
                    {"index": 1, "id": "c1", "function": {"name": "g", "arguments": "{"}},
                ]
            }
        ),  # fmt: skip
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "function": {"arguments": ":1}"}},
                    {"index": 1, "function": {"arguments": "}"}},
                ]
            },
            "tool_calls",
        ),  # fmt: skip
    ]
    _, events = translate(messages)  # no [DONE]: the end of the body ends it
    assert shape(terminal(events)) == [("function_call", "c0", "f", '{"a":1}'), ("function_call", "c1", "g", "{}")]


def test_a_name_repeated_in_every_fragment_is_the_name_once() -> None:
    fragments = ['{"a"', ":1", "}"]
    messages = [chunk({"tool_calls": [{"index": 0, "id": "c0", "function": {"name": "f", "arguments": part}}]})
                for part in fragments] + [chunk({}, "tool_calls")]  # fmt: skip
    _, events = translate(messages)
    assert shape(terminal(events)) == [("function_call", "c0", "f", '{"a":1}')]


def test_reasoning_then_text_are_two_items() -> None:
    messages = [chunk({"reasoning_content": "Let me"}), chunk({"reasoning_content": " think"}),
                chunk({"content": "Answer"}), chunk({}, "stop"), DONE]  # fmt: skip
    _, events = translate(messages)
    assert shape(terminal(events)) == [("reasoning", "Let me think"), ("message", ["Answer"])]
    kinds = [event["type"] for event in events]
    assert kinds.count("response.reasoning_text.delta") == 2
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")


def test_empty_deltas_make_no_events() -> None:
    _, with_empty = translate([chunk({"content": "a"}), chunk({}), chunk({"content": ""}), chunk({}, "stop"), DONE])
    _, without = translate([chunk({"content": "a"}), chunk({}, "stop"), DONE])
    assert [event["type"] for event in with_empty] == [event["type"] for event in without]


def test_finish_reason_length_is_incomplete() -> None:
    _, events = translate([chunk({"content": "cut"}), chunk({}, "length"), DONE])
    assert events[-1]["type"] == "response.incomplete"
    assert terminal(events)["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_stream_without_a_usage_chunk_completes_without_usage() -> None:
    _, events = translate([chunk({"content": "a"}), chunk({}, "stop"), DONE])
    assert events[-1]["type"] == "response.completed"
    assert terminal(events)["usage"] is None


def test_an_empty_answer_is_one_empty_message() -> None:
    _, events = translate([chunk({"role": "assistant", "content": ""}), chunk({}, "stop"), DONE])
    assert shape(terminal(events)) == [("message", [""])]


def test_a_stream_cut_before_its_finish_reason_fails() -> None:
    _, events = translate([chunk({"content": "half"}), b""])
    assert events[-1]["type"] == "response.failed"
    assert terminal(events)["status"] == "failed"
    assert shape(terminal(events)) == [("message", ["half"])]


def test_an_error_chunk_fails_the_response_and_nothing_follows() -> None:
    error = b'data: {"error": {"message": "out of memory", "code": 500}}\n\n'
    _, events = translate([chunk({"content": "a"}), error, chunk({"content": "b"}), DONE])
    assert events[-1]["type"] == "response.failed"
    assert terminal(events)["error"] == {"code": "server_error", "message": "out of memory"}


@pytest.mark.parametrize("seed", range(5))
def test_chunks_split_at_any_byte_translate_the_same(seed: int) -> None:
    whole = b"".join([chunk({"reasoning_content": "r\u00e9"}), chunk({"content": "caf\u00e9 "}),
                      chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}),
                      chunk({}, "tool_calls"), chunk(None, usage=USAGE), DONE])  # fmt: skip
    _, reference = translate([whole])
    _, split = translate(random_split(whole, random.Random(seed), max_piece=7))
    strip = {"id", "item_id", "created_at", "completed_at"}
    assert shape(terminal(split)) == shape(terminal(reference))
    assert [{k: v for k, v in e.items() if k not in strip and k != "response" and k != "item"} for e in split] == [
        {k: v for k, v in e.items() if k not in strip and k != "response" and k != "item"} for e in reference
    ]


def test_per_chunk_output_is_proportional_to_the_chunk() -> None:
    """A long stream: each message's translation stays small (no re-sending of what came before)."""
    translator = StreamTranslator(REQUEST)
    translator.feed(chunk({"content": "start"}), final=False)
    sizes = [len(translator.feed(chunk({"content": "word "}), final=False)) for _ in range(2000)]
    assert max(sizes) - min(sizes) <= len(str(len(sizes)))  # only the sequence_number grows


def test_logprobs_are_carried_in_deltas_and_in_the_part() -> None:
    entry = {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.25,
                                                                                     "bytes": [72, 105]}]}  # fmt: skip
    with_logprobs = chunk({"content": "Hi"}).replace(
        b'"logprobs":null', b'"logprobs":' + orjson.dumps({"content": [entry]})
    )
    _, events = translate([with_logprobs, chunk({}, "stop"), DONE])
    delta = next(event for event in events if event["type"] == "response.output_text.delta")
    assert delta["logprobs"] == [entry]
    assert terminal(events)["output"][0]["content"][0]["logprobs"] == [entry]
    message = {"content": "Hi"}
    completion_with = completion(message)
    completion_with["choices"][0]["logprobs"] = {"content": [entry]}
    assert response_from_completion(REQUEST, completion_with)["output"][0]["content"][0]["logprobs"] == [entry]
