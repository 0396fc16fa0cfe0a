from __future__ import annotations

import random

import pytest

from retention_middleware.wire import sse
from retention_middleware.wire.sse import SSEParser

from support.asgi_tools import random_split
from support.cassettes import all_cassettes, load

MIXED = (
    b'event: response.created\ndata: {"a":1}\n\n'
    b": keep-alive comment\r\n"
    b"data: first line\r\ndata: second line\r\n\r\n"
    b"data: \xe9\x9b\xaa snow\rdata:no-space\r\r"
    b"id: 7\nretry: 100\nunknown: field\ndata: {}\n\n"
    b"event: only-event-no-data\n\n"
    b"data: [DONE]\n\n"
)


def parse_all(pieces: list[bytes]) -> tuple[list[tuple[str | None, bytes]], int, SSEParser]:
    parser = SSEParser()
    events = []
    total = 0
    for piece in pieces:
        for event in parser.feed(piece):
            events.append((event.event, event.data))
            total += event.raw_length
    return events, total, parser


def test_fields_line_ends_comments_and_multiline_data() -> None:
    events, _, _ = parse_all([MIXED])
    assert events == [
        ("response.created", b'{"a":1}'),
        (None, b"first line\nsecond line"),
        (None, "雪 snow".encode() + b"\nno-space"),
        (None, b"{}"),
        (None, b"[DONE]"),
    ]


@pytest.mark.parametrize("seed", range(200))
def test_any_split_gives_the_same_events_and_accounts_for_every_byte(seed: int) -> None:
    expected, _, _ = parse_all([MIXED])
    pieces = random_split(MIXED, random.Random(seed), max_piece=5)
    events, attributed, parser = parse_all(pieces)
    assert events == expected
    assert attributed + parser.pending_bytes == len(MIXED)


def test_split_between_cr_and_lf_is_one_line_end() -> None:
    events, _, _ = parse_all([b"data: a\r", b"\n", b"\r", b"\ndata: b\r\n\r\n"])
    assert events == [(None, b"a"), (None, b"b")]


def test_raw_lengths_cut_the_stream_into_its_events() -> None:
    stream = b"data: one\n\n: c\ndata: two\r\n\r\ndata: [DONE]\n\n"
    parser = SSEParser()
    spans = [event.raw_length for event in parser.feed(stream)]
    assert spans == [len(b"data: one\n\n"), len(b": c\ndata: two\r\n\r\n"), len(b"data: [DONE]\n\n")]


@pytest.mark.parametrize("name", [n for n in all_cassettes() if "stream" in n])
def test_recorded_streams_parse_to_their_recorded_events(name: str) -> None:
    for turn in load(name):
        if not turn.is_sse:
            continue
        expected = [line[6:].rstrip("\n").encode() for line in turn.response_bytes.decode().split("\n")
                    if line.startswith("data: ")]  # fmt: skip
        pieces = random_split(turn.response_bytes, random.Random(len(turn.response_bytes)), max_piece=300)
        events, _, _ = parse_all(pieces)
        assert [data for _, data in events] == expected


def test_memory_is_bounded_by_the_largest_event_not_the_stream() -> None:
    parser = SSEParser()
    event = b"data: " + b"x" * 1000 + b"\n\n"
    for _ in range(10_000):  # 10 MB of stream
        parser.feed(event[:500])
        parser.feed(event[500:])
        assert parser.pending_bytes <= len(event)


def test_an_event_larger_than_the_limit_is_skipped_not_buffered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "MAX_EVENT_BYTES", 100)
    parser = SSEParser()
    events = parser.feed(b"data: " + b"y" * 60 + b"\ndata: " + b"z" * 60 + b"\n\n")
    events += parser.feed(b"data: " + b"w" * 80)  # an unfinished line past the limit
    events += parser.feed(b"w" * 200)
    events += parser.feed(b"w\n\ndata: small\n\n")
    assert [e.data for e in events] == [b"small"]
    assert parser.skipped_events == 2


def test_a_32_mib_event_in_small_chunks_is_parsed_in_linear_time() -> None:
    # Quadratic parsing (re-copying the unfinished line on every chunk) would copy some 64 GiB here
    # and run far past the per-test timeout; linear parsing copies the event a few times.
    # No clock is read: finishing at all is the assertion, with the timeout as the generous margin.
    payload = b"x" * (32 * 1024 * 1024)
    stream = b"event: big\r\ndata: " + payload + b"\r\n\r\ndata: after\n\n"
    parser = SSEParser()
    events = []
    for start in range(0, len(stream), 4096):
        events += parser.feed(stream[start : start + 4096])
    assert [(event.event, len(event.data)) for event in events] == [("big", len(payload)), (None, 5)]
    assert sum(event.raw_length for event in events) == len(stream)
    assert parser.pending_bytes == 0


def test_mid_event_says_whether_the_bytes_so_far_end_inside_an_event() -> None:
    parser = SSEParser()
    assert parser.mid_event is False
    parser.feed(b"event: a\n")
    assert parser.mid_event is True  # a field line, no blank line yet
    parser.feed(b"data: {}\n\n")
    assert parser.mid_event is False
    parser.feed(b'data: {"cut')
    assert parser.mid_event is True  # mid-line
    parser.feed(b'"}\r\n\r\n: keep-alive\n\n')
    assert parser.mid_event is False


# Chunks that are one whole event each take a shortcut in feed(); these shapes sit on its edges.
# (No \r here: fed a byte at a time, a CRLF's \n is only known to belong to the line after the fact.)
EVENT_SHAPED_CHUNKS = [
    b'data: {"a":1}\n\n',
    b"data:no-space\n\n",
    b"data:\n\n",
    b'event: response.output_text.delta\ndata: {"delta":"x"}\n\n',
    b"event:tight\ndata:tight\n\n",
    b": a comment, no event yet\n",
    b"data: after the comment\n\n",
    b"event: named-before\n",
    b"data: gets the name of the chunk before\n\n",
    b"data: first\ndata: second\n\n",
    b"data: \xe9\x9b\xaa\n\n",
    b"data\n\n",
    b"\n\n",
    b"data: x: y\n\n",
    b"data: [DONE]\n\n",
]


def test_whole_event_chunks_parse_exactly_as_the_same_bytes_fed_one_at_a_time() -> None:
    stream = b"".join(EVENT_SHAPED_CHUNKS)
    byte_parser = SSEParser()
    expected = [
        (e.event, e.data, e.raw_length) for i in range(len(stream)) for e in byte_parser.feed(stream[i : i + 1])
    ]
    chunk_parser = SSEParser()
    got = [(e.event, e.data, e.raw_length) for chunk in EVENT_SHAPED_CHUNKS for e in chunk_parser.feed(chunk)]
    assert got == expected
    assert got[3] == ("response.output_text.delta", b'{"delta":"x"}', len(EVENT_SHAPED_CHUNKS[3]))
    assert (got[6][0], got[6][1]) == ("named-before", b"gets the name of the chunk before")
    assert chunk_parser.pending_bytes == byte_parser.pending_bytes == 0
