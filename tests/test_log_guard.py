"""The log guard on hand-built records: every part of a record that a handler could print."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from retention_middleware.logs import log_guard
from retention_middleware.logs.log_guard import GuardRegistration, guarded_request_count

from support.asgi_tools import capture_all_logs

CANARY = "CANARY-guard-8b7a6c5d"


@pytest.fixture
def guarded() -> GuardRegistration:
    registration = GuardRegistration()
    registration.content.add_source({"model": "m", "messages": [{"role": "user", "content": f"say {CANARY} now"}]})
    yield registration
    registration.release()


def emit(logger: logging.Logger, *args: object, **kwargs: object) -> str:
    with capture_all_logs() as logs:
        logger.info(*args, **kwargs)  # type: ignore[arg-type]
    return logs.text()


def test_message_and_arguments_are_redacted(guarded: GuardRegistration) -> None:
    log = logging.getLogger("test.guard")
    out = emit(log, "Received request %s: prompt: %r", "chatcmpl-1", f"<|user|>say {CANARY} now")
    assert CANARY not in out
    assert "chatcmpl-1" in out and "[redacted]" in out


def test_a_record_at_debug_through_a_handler_added_after_registration(guarded: GuardRegistration) -> None:
    log = logging.getLogger("test.guard.late")
    with capture_all_logs() as logs:
        late = logging.getLogger("late.handler.owner")
        logs.attach(late)
        late.setLevel(logging.DEBUG)
        late.propagate = False
        late.debug("body=%s", {"messages": [{"content": f"say {CANARY} now"}]})
        log.debug(f"inline {CANARY}")
    assert CANARY not in logs.text()
    assert logs.text().count("[redacted]") == 2


def test_exception_text_stack_and_extra_are_redacted(guarded: GuardRegistration) -> None:
    log = logging.getLogger("test.guard.exc")
    with capture_all_logs() as logs:
        try:
            raise ValueError(f"cannot tokenize {CANARY}")
        except ValueError:
            log.exception("failed", extra={"prompt": CANARY}, stack_info=True)
    assert CANARY not in logs.text()
    assert "ValueError" in logs.text()
    record = logging.getLogRecordFactory()("n", logging.INFO, __file__, 1, "m", (), None, sinfo=CANARY)
    assert record.stack_info == "[redacted]"


def test_records_are_untouched_when_nothing_is_in_flight() -> None:
    assert guarded_request_count() == 0
    log = logging.getLogger("test.guard.idle")
    assert CANARY in emit(log, "nothing guarded: %s", CANARY)


def test_generated_text_seen_so_far_is_redacted(guarded: GuardRegistration) -> None:
    for delta in ["The answer ", "is OUTPUT-CANARY-", "1234 indeed"]:
        guarded.content.add_generated(0, delta)
    log = logging.getLogger("test.guard.out")
    out = emit(log, "Generated response: output: %r", "The answer is OUTPUT-CANARY-1234 indeed")
    out += emit(log, "delta: %r", "is OUTPUT-CANARY-")
    assert "OUTPUT-CANARY" not in out


def test_guard_fails_closed_past_its_generated_text_limit(
    guarded: GuardRegistration, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_guard, "GENERATED_TEXT_LIMIT", 10)
    guarded.content.add_generated(0, "x" * 11)
    out = emit(logging.getLogger("test.guard.big"), "anything at all %s", "even unrelated")
    assert "even unrelated" not in out and "[redacted]" in out


def test_a_factory_installed_later_without_chaining_is_wrapped_again() -> None:
    registration = GuardRegistration()
    registration.content.add_source(f"raw {CANARY} text")
    original = logging.getLogRecordFactory()
    try:
        logging.setLogRecordFactory(logging.LogRecord)  # a library replacing it carelessly
        second = GuardRegistration()  # the next request re-installs the guard
        out = emit(logging.getLogger("test.guard.reinstall"), "%s", f"raw {CANARY} text")
        assert CANARY not in out
        second.release()
    finally:
        logging.setLogRecordFactory(original)
        registration.release()


async def test_release_after_this_step_keeps_guarding_until_the_step_ends() -> None:
    registration = GuardRegistration()
    registration.content.add_source(f"raw {CANARY} text")
    registration.release(after_this_step=True)
    assert CANARY not in emit(logging.getLogger("test.guard.step"), "server: %s", f"raw {CANARY} text")
    await asyncio.sleep(0)
    assert guarded_request_count() == 0


def test_records_from_other_threads_are_redacted(guarded: GuardRegistration) -> None:
    import threading

    log = logging.getLogger("test.guard.thread")
    with capture_all_logs() as logs:
        thread = threading.Thread(target=log.warning, args=("engine: %s", f"say {CANARY} now"))
        thread.start()
        thread.join()
    assert CANARY not in logs.text()


def test_exc_info_tuple_with_content_in_the_exception_is_redacted(guarded: GuardRegistration) -> None:
    try:
        raise KeyError(CANARY)
    except KeyError:
        info = sys.exc_info()
    with capture_all_logs() as logs:
        logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=info)
    assert CANARY not in logs.text() and "KeyError" in logs.text()


def test_generated_text_spanning_many_deltas_is_matched_across_block_boundaries(guarded: GuardRegistration) -> None:
    words = [f" w{n:05d}" for n in range(2000)]  # 2,000 deltas: several joined blocks
    for word in words:
        guarded.content.add_generated(0, word)
    stretch = "".join(words[250:262])  # crosses the join after the 256th delta
    out = emit(logging.getLogger("test.guard.blocks"), "output so far: %s", f"<{stretch}>")
    assert "w00255" not in out and "w00256" not in out and "[redacted]" in out


def test_an_exception_without_content_keeps_its_exc_info(guarded: GuardRegistration) -> None:
    try:
        raise ValueError("unrelated failure")
    except ValueError:
        record = logging.getLogger("t").makeRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert record.exc_info is not None
