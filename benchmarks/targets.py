"""DESIGN.md section 8's targets, checked against a run's results (reported, never asserted)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    figure: str
    target: str
    measured: str
    met: bool


def _in_process(results: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    for setting, label in (("access_log_off", "log off"), ("access_log_on", "log on")):
        figures = results[setting]
        for name, limit in (("passthrough", 15.0), ("responses_stored_memory", 60.0)):
            added = figures[name]["added_p50"]
            verdicts.append(
                Verdict(f"in-process {name} added p50 ({label})", f"<= {limit:g} us", f"{added:.1f} us", added <= limit)
            )
    return verdicts


def _streams(results: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    for name in ("passthrough", "chat", "responses_stored"):
        accounting = results[name]["accounting"]
        held, equal = accounting["max_messages_held"], accounting["in_equals_out"]
        measured = f"in {accounting['app_messages_in']} / out {accounting['client_messages_out']}, held {held}"
        verdicts.append(
            Verdict(f"stream {name}: chunks in == out, none held", "equal, 0 held", measured, equal and held == 0)
        )
    return verdicts


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    verdicts = [*_in_process(results["in_process"]), *_streams(results["streams"])]
    ratio = results["throughput"]["passthrough"]["ratio_wrapped"]
    verdicts.append(Verdict("throughput passthrough wrapped / bare", ">= 0.95", f"{ratio:.3f}", ratio >= 0.95))
    for case in results["memory"]["cases"]:
        growth = ", ".join(f"{size} MB: {kib} KiB" for size, kib in case["peak_growth_kib"].items())
        verdicts.append(
            Verdict(
                f"memory flat: {case['case']} ({case['event_bytes']} B events)",
                "flat in stream length",
                growth,
                case["flat"],
            )
        )
    added = results["proxy"]["chat_metered"]["added_p50"]
    verdicts.append(Verdict("proxy added p50 (chat completion)", "<= 0.5 ms", f"{added:.3f} ms", added <= 0.5))
    return [asdict(verdict) for verdict in verdicts]
