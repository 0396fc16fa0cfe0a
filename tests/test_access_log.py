from __future__ import annotations

import random
from datetime import datetime, timezone

from retention_middleware.logs.access_log import AccessRecord, _timestamps


def test_timestamps_match_isoformat_to_the_millisecond() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        moment = rng.uniform(1.7e9, 1.9e9)
        expected = datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds")
        assert _timestamps.format(moment) == expected


def test_request_ids_are_unique_and_carry_no_request_data() -> None:
    records = [AccessRecord("GET", "/x", "anonymous") for _ in range(1000)]
    assert len({record.request_id for record in records}) == 1000


def test_a_disconnect_before_the_end_is_reported_unless_another_error_explains_it() -> None:
    record = AccessRecord("POST", "/v1/chat/completions", "anonymous")
    record.disconnected = True
    assert record.to_dict(record.started)["error"] == "client_disconnected"
    record.response_complete = True
    assert record.to_dict(record.started)["error"] is None
    record.response_complete = False
    record.error = "app_error"
    assert record.to_dict(record.started)["error"] == "app_error"
