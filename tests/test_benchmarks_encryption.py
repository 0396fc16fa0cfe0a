"""The encryption benchmark runs and measures what it says (the numbers themselves are not asserted)."""

from __future__ import annotations

from benchmarks import encryption


async def test_the_encryption_benchmark_reports_every_row() -> None:
    report = await encryption.run(rounds=4, warmup=1, turns=3)
    names = set(report["results"])
    assert names == {
        "stored_response/master-key",
        "rehydrated_3_turns/master-key",
        "stored_response/caller-key",
        "rehydrated_3_turns/caller-key",
    }
    assert "added_p50_per_turn" in report["results"]["rehydrated_3_turns/caller-key"]
    table = encryption.render(report)
    assert table.count("\n| ") == 5 and "added per turn" in table  # header and four rows
