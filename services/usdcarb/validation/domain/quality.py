"""Quality summary of one series over a range."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from usdcarb.validation.domain.gaps import GapState
from usdcarb.validation.domain.model import Bars, Provenance


@dataclass(frozen=True)
class GapCount:
    """A gap's state and its counts, as the summary needs them."""

    state: GapState
    missing: int
    filled: int


@dataclass(frozen=True, kw_only=True)
class QualitySummary:
    """Counts describing a series over [start_ms, end_ms)."""

    start_ms: int
    end_ms: int
    expected_bars: int
    original_bars: int
    filled_bars: int
    quarantined_bars: int
    open_gaps: int
    missing_bars: int
    coverage: float
    zero_volume_bars: int
    filled_gaps: int = 0
    unfilled_gaps: int = 0
    issues_by_severity: dict[str, int] = field(default_factory=dict)
    issues_by_rule: dict[str, int] = field(default_factory=dict)


def expected_bars(start_ms: int, end_ms: int, tf_ms: int) -> int:
    """Grid times in [start_ms, end_ms)."""
    first = -(-start_ms // tf_ms) * tf_ms
    return max(0, -(-(end_ms - first) // tf_ms))


def summarize(bars: Bars, *, tf_ms: int, start_ms: int, end_ms: int, quarantined: int,
              gaps: Sequence[GapCount], issues_by_severity: Mapping[str, int],
              issues_by_rule: Mapping[str, int]) -> QualitySummary:
    """Summarise stored ``bars`` of a series in [start_ms, end_ms) with its records.

    A gap is open until every bar of it is filled; its missing bars are those not
    filled yet.
    """
    expected = expected_bars(start_ms, end_ms, tf_ms)
    original = int(np.count_nonzero(bars.provenance == Provenance.ORIGINAL))
    filled = len(bars) - original
    open_gaps = [g for g in gaps if g.state != GapState.FILLED]
    return QualitySummary(
        start_ms=start_ms, end_ms=end_ms, expected_bars=expected, original_bars=original,
        filled_bars=filled, quarantined_bars=quarantined, open_gaps=len(open_gaps),
        missing_bars=sum(max(0, g.missing - g.filled) for g in open_gaps),
        coverage=(original + filled) / expected if expected else 0.0,
        zero_volume_bars=int(np.count_nonzero(bars.volume == 0)),
        filled_gaps=sum(1 for g in gaps if g.state == GapState.FILLED),
        unfilled_gaps=sum(1 for g in gaps if g.state in (GapState.UNFILLABLE,
                                                           GapState.PARTIALLY_FILLED)),
        issues_by_severity=dict(issues_by_severity), issues_by_rule=dict(issues_by_rule),
    )
