"""BufferedLineHandler: access lines written in batches, in order, and every one of them by the end.

The handler sits on the proxy's access log; what a user would notice is a line missing, reordered,
garbled by another thread's line, or held forever. Each test reads what reached a real stream.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator

import orjson
import pytest

from retention_middleware.logs import access_log
from retention_middleware.logs.access_log import AccessRecord
from retention_middleware.logs.buffered_lines import BufferedLineHandler
from retention_middleware.logs.log_guard import ACCESS_LOGGER_NAME


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.written = threading.Event()

    def write(self, text: str) -> int:
        self.writes += 1
        self.written.set()
        return super().write(text)


def test_lines_wait_for_the_batch_then_all_go_in_one_write_in_order() -> None:
    stream = CountingStream()
    handler = BufferedLineHandler(stream, interval=60)
    for index in range(100):
        handler.write_line(f'{{"n":{index}}}')
    assert stream.getvalue() == ""  # held: neither the interval nor the size bound has passed
    handler.flush()
    assert stream.writes == 1
    assert [orjson.loads(line)["n"] for line in stream.getvalue().splitlines()] == list(range(100))
    handler.close()


def test_the_timer_writes_a_lone_line_without_anything_else_happening() -> None:
    stream = CountingStream()
    handler = BufferedLineHandler(stream, interval=0.05)
    handler.write_line("one line")
    assert stream.written.wait(10), "a held line was never written"
    assert stream.getvalue() == "one line\n"
    handler.close()


def test_a_full_buffer_is_written_at_once_and_zero_interval_writes_every_line() -> None:
    stream = CountingStream()
    handler = BufferedLineHandler(stream, interval=60, max_bytes=1000)
    for _ in range(20):
        handler.write_line("x" * 99)  # 100 bytes with its newline: the tenth fills the buffer
    assert stream.writes == 2 and len(stream.getvalue()) == 2000
    handler.close()
    unbuffered = CountingStream()
    at_once = BufferedLineHandler(unbuffered, interval=0)
    at_once.write_line("a")
    at_once.write_line("b")
    assert unbuffered.getvalue() == "a\nb\n" and unbuffered.writes == 2
    at_once.close()


def test_close_writes_what_is_held() -> None:
    stream = CountingStream()
    handler = BufferedLineHandler(stream, interval=60)
    handler.write_line("last words")
    handler.close()  # what logging.shutdown() does at interpreter exit
    assert stream.getvalue() == "last words\n"


def test_lines_from_many_threads_stay_whole_and_none_is_lost() -> None:
    stream = CountingStream()
    handler = BufferedLineHandler(stream, interval=0.01, max_bytes=4096)

    def write(thread: int) -> None:
        for index in range(500):
            handler.write_line(orjson.dumps({"thread": thread, "n": index}).decode())

    threads = [threading.Thread(target=write, args=(thread,)) for thread in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()
    records = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) == 2000
    for thread in range(4):  # each thread's lines in the order it wrote them
        assert [r["n"] for r in records if r["thread"] == thread] == list(range(500))


def test_the_pid_option_puts_the_process_first_in_each_json_line() -> None:
    stream = CountingStream()
    handler = BufferedLineHandler(stream, interval=0, pid=True)
    handler.write_line('{"status":200}')
    handler.emit(logging.makeLogRecord({"msg": '{"status":404}'}))  # the LogRecord path says the same
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert list(first) == ["pid", "status"] and first["status"] == 200
    assert second["pid"] == first["pid"] and second["status"] == 404
    handler.close()


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(ACCESS_LOGGER_NAME)
    saved = (logger.handlers[:], logger.level, logger.propagate, logger.filters[:])
    yield logger
    logger.handlers[:], logger.propagate, logger.filters[:] = saved[0], saved[2], saved[3]
    logger.setLevel(saved[1])


@pytest.mark.parametrize("with_filter", [False, True], ids=["direct", "through a filter"])
def test_an_access_record_reads_the_same_whether_it_skips_the_log_record_or_not(
    access_logger: logging.Logger, with_filter: bool
) -> None:
    stream = CountingStream()
    access_logger.handlers[:] = [BufferedLineHandler(stream, interval=0)]
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False
    seen: list[logging.LogRecord] = []
    if with_filter:  # someone filtering must see a LogRecord, so the short path is not taken
        access_logger.addFilter(lambda record: seen.append(record) or True)
    record = AccessRecord("POST", "/v1/chat/completions", "tenant-a")
    record.status = 200
    access_log.emit(record)
    (line,) = stream.getvalue().splitlines()
    assert orjson.loads(line)["path"] == "/v1/chat/completions" and orjson.loads(line)["status"] == 200
    assert len(seen) == (1 if with_filter else 0)


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError("the log reader went away")


def test_a_stream_that_fails_drops_its_lines_and_says_so_once(capsys: pytest.CaptureFixture[str]) -> None:
    handler = BufferedLineHandler(BrokenStream(), interval=0)
    for _ in range(3):
        handler.write_line("a line")  # neither raises into the request nor floods stderr
    handler.close()
    assert capsys.readouterr().err.count("access log: lines could not be written") == 1
