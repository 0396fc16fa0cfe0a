"""Timing summaries: median and p99 of samples, and how a variant compares with its baseline."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100): always a value that was actually observed."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p99: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        return cls(len(samples), percentile(samples, 50), percentile(samples, 99))


@dataclass(frozen=True)
class Comparison:
    """A variant against its baseline, measured interleaved in the same run (same unit for all)."""

    unit: str
    baseline: Summary
    measured: Summary
    added_p50: float
    """Difference of the medians: the figure DESIGN.md's targets are written against."""
    paired_p50: float
    """Median of the per-round differences; close to ``added_p50`` unless the machine drifted."""
    ratio_p50: float

    @classmethod
    def of(cls, baseline: Sequence[float], measured: Sequence[float], unit: str) -> Comparison:
        base, meas = Summary.of(baseline), Summary.of(measured)
        pairs = [m - b for b, m in zip(baseline, measured, strict=False)]
        paired = statistics.median(pairs) if pairs else math.nan
        ratio = meas.p50 / base.p50 if base.p50 else math.nan
        return cls(unit, base, meas, meas.p50 - base.p50, paired, ratio)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
