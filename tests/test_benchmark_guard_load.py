"""``python -m benchmarks.guard_load`` keeps measuring what it says: one record against requests in flight.

Nothing here looks at time; the harness itself fails if the guard let a prompt or an answer through
while it was timing (a benchmark of a guard that does nothing would show a flat line too).
"""

from __future__ import annotations

from benchmarks import guard_load


def test_a_short_run_reports_every_record_kind_for_every_count() -> None:
    results = guard_load.run(rounds=2, counts=(0, 20), passes=1)
    assert set(results["records"]) == {"unrelated", "prompt", "output"}
    for by_count in results["records"].values():
        assert set(by_count) == {"0", "20"} and by_count["0"]["ratio"] == 1.0
    table = guard_load.render(results)
    assert "| record | 0 in flight | 20 in flight |" in table
