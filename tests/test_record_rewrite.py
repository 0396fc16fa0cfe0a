"""The guard keeps a record's shape: formatters that read ``record.args`` keep working, with the
content redacted inside each argument (uvicorn's own formatters, dict arguments, objects)."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator

import pytest
from uvicorn.logging import AccessFormatter, DefaultFormatter

from retention_middleware.logs.log_guard import GuardRegistration

CANARY = "CANARY-shape-4c3b2a19"
PROMPT = f"Explain what POST /v1/chat/completions does with {CANARY} please"


@pytest.fixture
def guarded() -> Iterator[GuardRegistration]:
    registration = GuardRegistration()
    registration.content.add_source({"model": "m", "messages": [{"role": "user", "content": PROMPT}]})
    yield registration
    registration.release()


class Formatted:
    """A logger whose one handler formats with ``formatter``; what it printed and every record it saw."""

    def __init__(self, name: str, formatter: logging.Formatter) -> None:
        self.stream = io.StringIO()
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(name)
        self._restore = (self.logger.level, self.logger.propagate)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)
        self.handler.addFilter(self._keep)
        self.logger.addHandler(self.handler)

    def _keep(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return True

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self._restore[0])
        self.logger.propagate = self._restore[1]

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def access() -> Iterator[Formatted]:
    formatter = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    formatted = Formatted("uvicorn.access", formatter)
    yield formatted
    formatted.close()


def test_uvicorns_access_formatter_formats_a_record_whose_arguments_match_content(
    guarded: GuardRegistration, access: Formatted, capsys: pytest.CaptureFixture[str]
) -> None:
    access.logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5050", "POST", "/v1/chat/completions", "1.1", 200)
    access.logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5050", "GET", f"/echo?q={CANARY}", "1.1", 404)
    assert "Logging error" not in capsys.readouterr().err
    lines = access.text().splitlines()
    assert lines == [
        '127.0.0.1:5050 - "POST [redacted] HTTP/1.1" 200 OK',
        '127.0.0.1:5050 - "GET /echo?q=[redacted] HTTP/1.1" 404 Not Found',
    ]
    assert all(isinstance(record.args, tuple) and len(record.args) == 5 for record in access.records)


def test_uvicorns_default_formatter_on_a_record_with_content_in_its_arguments(
    guarded: GuardRegistration, capsys: pytest.CaptureFixture[str]
) -> None:
    error = Formatted("uvicorn.error", DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False))
    try:
        error.logger.warning("Invalid request %s from %s: %r", PROMPT, "127.0.0.1", {"prompt": PROMPT})
    finally:
        error.close()
    assert "Logging error" not in capsys.readouterr().err
    assert CANARY not in error.text()
    assert error.text().startswith("WARNING:  Invalid request [redacted] from 127.0.0.1: {'prompt': '[redacted]'}")
    assert len(error.records[0].args or ()) == 3


def test_dict_arguments_keep_their_keys(guarded: GuardRegistration) -> None:
    out = Formatted("test.shape.dict", logging.Formatter("%(message)s"))
    try:
        out.logger.info("%(user)s asked %(text)s", {"user": "bob", "text": PROMPT})
    finally:
        out.close()
    assert out.text() == "bob asked [redacted]\n"
    assert out.records[0].args == {"user": "bob", "text": "[redacted]"}


def test_content_split_between_the_template_and_an_argument_is_redacted_and_the_shape_kept(
    guarded: GuardRegistration,
) -> None:
    out = Formatted("test.shape.split", logging.Formatter("%(message)s"))
    try:
        out.logger.info("token=CANA%s!", "RY-shape")  # neither half is a stretch of nine characters
        out.logger.info("%s %s", PROMPT)  # cannot be formatted: logging would print the argument
    finally:
        out.close()
    assert "RY-shape" not in out.text() and CANARY not in out.text()
    assert out.text().splitlines()[0] == "token=[redacted]!"
    assert [len(record.args or ()) for record in out.records] == [1, 1]


def test_records_without_content_are_left_exactly_as_they_were(guarded: GuardRegistration) -> None:
    arguments = ("127.0.0.1:5050", "GET", "/health", "1.1", 200)
    template = '%s - "%s %s HTTP/%s" %d'
    access_logger = logging.getLogger("uvicorn.access")
    record = access_logger.makeRecord("uvicorn.access", logging.INFO, "f", 1, template, arguments, None)
    assert record.args is arguments and record.msg == template


def test_a_deeply_nested_request_does_not_break_anybodys_logging() -> None:
    """A chat request nested thousands deep is in flight: every log call still works, and its
    content is still redacted."""
    nested: object = {"content": f"deep {CANARY} text"}
    for _ in range(20_000):
        nested = {"messages": [nested]}
    registration = GuardRegistration()
    registration.content.add_source(nested)
    out = Formatted("test.shape.deep", logging.Formatter("%(message)s"))
    try:
        out.logger.info("unrelated line %d", 7)
        out.logger.info("server saw %s", f"deep {CANARY} text")
        out.logger.info("body: %s", nested)  # too deep even to render: replaced, not raised
    finally:
        out.close()
        registration.release()
    lines = out.text().splitlines()
    assert lines[0] == "unrelated line 7"
    assert CANARY not in out.text() and "[redacted]" in lines[1] and "[redacted]" in lines[2]


def test_a_huge_record_is_replaced_whole_rather_than_checked(guarded: GuardRegistration) -> None:
    out = Formatted("test.shape.huge", logging.Formatter("%(message)s"))
    piece = "y" * 200_000  # each argument short enough to check, all of them together not
    try:
        out.logger.info("dump: %s", "x" * 3_000_000 + PROMPT)
        out.logger.info("parts:" + " %s" * 12, *([piece] * 11 + [PROMPT]))
    finally:
        out.close()
    assert CANARY not in out.text() and len(out.text()) < 1000


def test_an_argument_whose_rendering_waits_on_a_thread_that_logs_does_not_deadlock(guarded: GuardRegistration) -> None:
    """Arguments are rendered outside the guard's lock: their ``__str__`` may wait on other threads."""
    finished: list[bool] = []
    out = Formatted("test.shape.threads", logging.Formatter("%(message)s"))

    class WaitsForAWorker:
        def __str__(self) -> str:
            worker = threading.Thread(target=out.logger.info, args=("worker: %s", PROMPT))
            worker.start()
            worker.join(timeout=10)
            finished.append(not worker.is_alive())
            return f"rendered after the worker, {CANARY}"

    try:
        out.logger.info("main: %s", WaitsForAWorker())
    finally:
        out.close()
    assert finished == [True]
    assert sorted(out.text().splitlines()) == ["main: rendered after the worker,[redacted]", "worker: [redacted]"]
