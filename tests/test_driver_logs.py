"""pymongo's DEBUG command log never carries stored documents."""

from __future__ import annotations

import json
import logging

from pymongo.logger import LogMessage

from retention_middleware.logs.log_guard import GuardRegistration
from retention_middleware.store.driver_logs import install_command_document_filter

from support.asgi_tools import capture_all_logs

CANARY = "CANARY-driver-77aa88bb"


def log_insert() -> None:
    logging.getLogger("pymongo.command").debug(
        LogMessage(message="Command started", commandName="insert",
                   command={"insert": "responses", "documents": [{"input_items": CANARY}]})
    )  # fmt: skip


def test_command_and_reply_documents_are_dropped_and_the_rest_kept() -> None:
    install_command_document_filter()
    with capture_all_logs() as logs:
        log_insert()
        logging.getLogger("pymongo.command").debug(
            LogMessage(message="Command succeeded", commandName="find", reply={"firstBatch": [CANARY]},
                       durationMS=1.5)
        )  # fmt: skip
    assert CANARY not in logs.text()
    lines = [json.loads(line.split(" ", 2)[2]) for line in logs.text().splitlines()]
    assert [line["commandName"] for line in lines] == ["insert", "find"]
    assert lines[1]["durationMS"] == 1.5 and lines[1]["reply"] == '"[redacted]"'


def test_a_record_the_log_guard_already_rendered_is_handled_too() -> None:
    install_command_document_filter()
    registration = GuardRegistration()
    registration.content.add_source(f"input {CANARY} here")  # makes the guard rewrite the record
    try:
        with capture_all_logs() as logs:
            log_insert()
    finally:
        registration.release()
    assert CANARY not in logs.text() and "insert" in logs.text()


def test_installing_twice_adds_one_filter() -> None:
    install_command_document_filter()
    install_command_document_filter()
    assert len(logging.getLogger("pymongo.command").filters) == 1
