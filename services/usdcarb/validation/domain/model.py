"""Values of the validation domain: bars as columns, findings, rules and thresholds.

Pure: numpy and the standard library. Times are Unix epoch milliseconds (int64).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]

MINUTE_MS = 60_000
TIMEFRAMES: dict[str, int] = {
    "1m": MINUTE_MS, "3m": 3 * MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS, "1h": 60 * MINUTE_MS, "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS, "6h": 360 * MINUTE_MS, "8h": 480 * MINUTE_MS,
    "12h": 720 * MINUTE_MS, "1d": 1440 * MINUTE_MS,
}


class Severity(enum.StrEnum):
    """How serious a finding is (names match usdcarb.v1.Severity); ERROR quarantines."""

    INFO = "SEVERITY_INFO"
    WARNING = "SEVERITY_WARNING"
    ERROR = "SEVERITY_ERROR"

    @property
    def rank(self) -> int:
        return {"SEVERITY_INFO": 1, "SEVERITY_WARNING": 2, "SEVERITY_ERROR": 3}[self.value]


class Scope(enum.StrEnum):
    """Group of a rule (names match usdcarb.v1.RuleScope)."""

    BAR = "RULE_SCOPE_BAR"
    SERIES = "RULE_SCOPE_SERIES"
    CROSS_VENUE = "RULE_SCOPE_CROSS_VENUE"


class Provenance(enum.IntEnum):
    """Where a stored bar came from (numbers of usdcarb.v1.Provenance)."""

    ORIGINAL = 1
    FILLED_FROM_VENUE = 2
    FILLED_FROM_TIMEFRAME = 3
    FORWARD_FILLED = 4


@dataclass(frozen=True)
class Rule:
    """A rule's id, scope and severity."""

    id: str
    scope: Scope
    severity: Severity


def _rule(rule_id: str, scope: Scope, severity: Severity) -> Rule:
    return Rule(rule_id, scope, severity)


B, S, X = Scope.BAR, Scope.SERIES, Scope.CROSS_VENUE
NON_FINITE = _rule("bar.non_finite", B, Severity.ERROR)
NEGATIVE = _rule("bar.negative", B, Severity.ERROR)
ZERO_PRICE = _rule("bar.zero_price", B, Severity.ERROR)
HIGH_BELOW_LOW = _rule("bar.high_below_low", B, Severity.ERROR)
HIGH_BELOW_BODY = _rule("bar.high_below_body", B, Severity.ERROR)
LOW_ABOVE_BODY = _rule("bar.low_above_body", B, Severity.ERROR)
MISALIGNED = _rule("bar.misaligned", B, Severity.ERROR)
FUTURE = _rule("bar.future", B, Severity.ERROR)
INCOMPLETE = _rule("bar.incomplete", B, Severity.WARNING)
DUPLICATE = _rule("series.duplicate", S, Severity.ERROR)
DUPLICATE_CONFLICT = _rule("series.duplicate_conflict", S, Severity.ERROR)
STORED_CONFLICT = _rule("series.stored_conflict", S, Severity.ERROR)
OUT_OF_ORDER = _rule("series.out_of_order", S, Severity.INFO)
STALE = _rule("series.stale", S, Severity.INFO)
STALE_LONG = _rule("series.stale_long", S, Severity.WARNING)
SPIKE = _rule("series.spike", S, Severity.ERROR)
SPIKE_UNCONFIRMED = _rule("series.spike_unconfirmed", S, Severity.WARNING)
DEVIATION = _rule("cross.deviation", X, Severity.WARNING)
IMPLIED_CROSS = _rule("cross.implied_cross", X, Severity.WARNING)
CLOCK_SKEW = _rule("cross.clock_skew", X, Severity.WARNING)

RULES: dict[str, Rule] = {r.id: r for r in (
    NON_FINITE, NEGATIVE, ZERO_PRICE, HIGH_BELOW_LOW, HIGH_BELOW_BODY, LOW_ABOVE_BODY,
    MISALIGNED, FUTURE, INCOMPLETE, DUPLICATE, DUPLICATE_CONFLICT, STORED_CONFLICT,
    OUT_OF_ORDER, STALE, STALE_LONG, SPIKE, SPIKE_UNCONFIRMED, DEVIATION, CLOCK_SKEW,
    IMPLIED_CROSS,
)}


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one bar (``index`` -1 for series-level findings)."""

    index: int
    bar_time_ms: int
    rule: str
    scope: Scope
    severity: Severity
    message: str
    value: float
    threshold: float


# Times a google.protobuf.Timestamp (and timestamptz) can hold: years 1 to 9999.
MIN_TIME_MS, MAX_TIME_MS = -62_135_596_800_000, 253_402_300_799_999


def finding(rule: Rule, index: int, bar_time_ms: int, message: str, value: float,
            threshold: float, severity: Severity | None = None) -> Finding:
    """Build a finding of ``rule`` (its own severity unless overridden).

    The bar time is clamped to years 1..9999 so a garbage timestamp can still be
    recorded (the message and the quarantined bar keep the value received).
    """
    t = min(max(int(bar_time_ms), MIN_TIME_MS), MAX_TIME_MS)
    return Finding(index, t, rule.id, rule.scope, severity or rule.severity,
                   message, float(value), float(threshold))


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Every tunable of the rules, with the defaults the real depeg-week data passes."""

    future_tolerance_ms: int = 0
    conflict_rel_tol: float = 1e-9
    stale_min_run: int = 10  # zero-volume flat bars in a row before INFO
    stale_long_run: int = 240  # ... and before WARNING
    spike_z: float = 12.0  # robust z of a log return
    spike_window: int = 61  # bars in the centred windows of the robust scale
    spike_long_window: int = 1441
    spike_min_scale: float = 5e-4  # floor of the robust scale (5 bp)
    spike_revert: float = 0.5  # next return undoes at least half the jump
    spike_min_move: float = 0.01  # ... and the jump is at least 1 %
    deviation_min: float = 0.03  # deviation from the other venues beyond its local level
    deviation_z: float = 12.0
    deviation_window: int = 121
    deviation_neighbours: int = 3
    deviation_min_scale: float = 1e-3
    skew_max_lag: int = 5
    skew_min_bars: int = 500
    skew_min_corr: float = 0.3
    skew_min_gain: float = 0.1
    # Series verdicts (domain/verdicts.py).
    verdict_stale_min_ms: int = 6 * 3_600_000  # flat, zero-volume span longer than this
    alias_rel_tol: float = 1e-6  # OHLCV equal within this relative tolerance
    alias_min_ratio: float = 0.95  # share of traded bars identical to the twin's
    alias_min_bars: int = 30  # traded bars compared per block before judging it
    alias_block_ms: int = 86_400_000  # aliasing judged per block (a day)
    suspect_merge_bars: int = 5  # own-rule findings this close form one suspect span
    # Peg-aware implied cross (domain/implied_cross.py).
    cross_min: float = 0.01  # divergence from the local divergence level beyond 1 %
    cross_z: float = 12.0
    cross_window: int = 121
    cross_long_window: int = 0  # optional second, longer scale window (0: none)
    cross_off_peg: float = 0.5  # bound widens by this x |log implied cross|
    cross_min_scale: float = 1e-3


@dataclass(frozen=True)
class Bars:
    """Columns of bars of one series; row i opens at open_time_ms[i]."""

    open_time_ms: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64
    provenance: U8 = field(default_factory=lambda: np.zeros(0, np.uint8))

    def __post_init__(self) -> None:
        n = len(self.open_time_ms)
        if self.provenance.shape[0] != n:
            object.__setattr__(self, "provenance", np.full(n, Provenance.ORIGINAL, np.uint8))

    def __len__(self) -> int:
        return int(self.open_time_ms.shape[0])

    @classmethod
    def of(cls, open_time_ms: Sequence[int] | I64, open: Sequence[float] | F64,
           high: Sequence[float] | F64, low: Sequence[float] | F64,
           close: Sequence[float] | F64, volume: Sequence[float] | F64,
           provenance: Sequence[int] | U8 | None = None) -> Bars:
        """Build from sequences (copies into contiguous int64/float64 arrays)."""
        return cls(
            np.asarray(open_time_ms, np.int64), np.asarray(open, np.float64),
            np.asarray(high, np.float64), np.asarray(low, np.float64),
            np.asarray(close, np.float64), np.asarray(volume, np.float64),
            np.asarray(provenance if provenance is not None else [], np.uint8),
        )

    @classmethod
    def empty(cls) -> Bars:
        return cls.of([], [], [], [], [], [])

    def take(self, idx: npt.NDArray[np.intp] | Mask) -> Bars:
        """Return the rows at ``idx`` (indices or a mask)."""
        return Bars(self.open_time_ms[idx], self.open[idx], self.high[idx], self.low[idx],
                    self.close[idx], self.volume[idx], self.provenance[idx])

    def row(self, i: int) -> tuple[float, float, float, float, float]:
        return (float(self.open[i]), float(self.high[i]), float(self.low[i]),
                float(self.close[i]), float(self.volume[i]))


def concat(parts: Sequence[Bars]) -> Bars:
    """Concatenate bars, then sort by open time (stable)."""
    if not parts:
        return Bars.empty()
    merged = Bars(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
        "open_time_ms", "open", "high", "low", "close", "volume", "provenance")))
    order = np.argsort(merged.open_time_ms, kind="stable")
    return merged.take(order)


def timeframe_ms(timeframe: str) -> int:
    """Return the bar length of a timeframe code, or raise KeyError."""
    return TIMEFRAMES[timeframe]


def fmt_ms(ms: int) -> str:
    """Format epoch ms as an ISO UTC time for messages."""
    return str(np.datetime64(int(ms), "ms")) + "Z"
