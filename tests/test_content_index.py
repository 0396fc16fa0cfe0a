"""The guard under load: one record's work does not grow with the requests in flight, and the
shared index gives back what each request put in it.

Work is counted, not timed: the number of Python and C function calls one ``logger.info`` makes,
through ``sys.setprofile``.
"""

from __future__ import annotations

import gc
import logging
import random
import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from retention_middleware.logs.log_guard import GuardRegistration, guarded_request_count, index_is_empty

from support.asgi_tools import capture_all_logs

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def made_up_text(seed: int, words: int) -> str:
    draw = random.Random(seed)
    return " ".join("".join(draw.choices(LETTERS, k=draw.randint(2, 9))) for _ in range(words))


@contextmanager
def in_flight(count: int) -> Iterator[list[GuardRegistration]]:
    registrations = []
    for number in range(count):
        registration = GuardRegistration()
        prompt = f"T-{number:05d} {made_up_text(number, 80)}"
        registration.content.add_source({"messages": [{"role": "user", "content": prompt}]})
        for word in made_up_text(10_000 + number, 60).split():
            registration.content.add_generated(0, f" {word}")
        registrations.append(registration)
    try:
        yield registrations
    finally:
        for registration in registrations:
            registration.release()


def calls_made(function: Any, *args: Any) -> int:
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        function(*args)
    finally:
        sys.setprofile(None)
    return count


def work_for_records(count: int) -> list[int]:
    """Calls made by one unrelated record and one record quoting an in-flight prompt."""
    log = logging.getLogger("test.guard.load")
    target = f"T-{count // 2:05d} {made_up_text(count // 2, 80)}"
    with in_flight(count), capture_all_logs() as logs:
        log.info("warm-up: the first record after registrations indexes them")
        unrelated = calls_made(log.info, "engine: running %d, waiting %d, kv cache %.1f%%", 12, 3, 41.5)
        prompt = calls_made(log.info, "Received request %s: prompt: %r", "cmpl-1", target)
    assert target[:40] not in logs.text() and "[redacted]" in logs.text()
    return [unrelated, prompt]


def test_one_records_work_does_not_grow_with_the_requests_in_flight() -> None:
    few, many = work_for_records(10), work_for_records(1000)
    for with_few, with_many in zip(few, many, strict=True):
        assert with_many <= with_few * 1.2 + 50, (few, many)


def test_completed_requests_leave_nothing_in_the_shared_index() -> None:
    with in_flight(50):
        with capture_all_logs():
            logging.getLogger("test.guard.load").info("index everything now")
        assert not index_is_empty()
    assert guarded_request_count() == 0
    assert index_is_empty()


def test_the_index_memory_is_bounded_and_given_back() -> None:
    log = logging.getLogger("test.guard.load")
    with in_flight(2), capture_all_logs():  # warm up: first-use imports and caches are not the index
        log.info("index everything now")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with in_flight(200) as registrations, capture_all_logs():
            log.info("index everything now")
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
            characters = 200 * (len(made_up_text(0, 80)) + len(made_up_text(10_000, 60)))
            del registrations
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # About 25 bytes a character (the text itself, its sampled grams, where each occurs).
    assert held < characters * 60, (held, characters)
    # Given back: what stays is the interpreter's own caches, a small share of what the index held.
    assert after < held // 10, (after, held)


def test_a_long_stream_logged_through_is_indexed_once_and_stays_matchable() -> None:
    """Records between deltas (vLLM logs as it streams) do not re-index the stream, and text from
    its start is still recognised at its end."""
    log = logging.getLogger("test.guard.load")
    words = made_up_text(77, 40_000).split()
    registration = GuardRegistration()
    calls = []
    try:
        with capture_all_logs() as logs:
            for number, word in enumerate(words):
                registration.content.add_generated(0, f" {word}")
                if number % 4000 == 3999:
                    calls.append(calls_made(log.info, "step %d", number))
            log.info("early output: %s", " ".join(words[100:110]))
            log.info("late output: %s", " ".join(words[-10:]))
    finally:
        registration.release()
    assert " ".join(words[100:110]) not in logs.text() and " ".join(words[-10:]) not in logs.text()
    assert logs.text().count("[redacted]") == 2
    # Each record indexes only what arrived since the one before: the same work every time.
    assert max(calls) <= min(calls) * 1.5 + 100, calls
