"""Value types of the backtest engine: market data in, configuration, results out.

Pure: numpy and the standard library. Everything is frozen; arrays are columnar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

ENGINE_VERSION = "1.2.0"   # 1.2: execution models, hold baseline, attribution

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Series:
    """One market on one venue, on the frame's grid (NaN where the venue has no bar)."""

    venue: str
    symbol: str
    close: F64
    volume: F64

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1]


@dataclass(frozen=True)
class MarketFrame:
    """Aligned series of several venues and markets on one ascending UTC grid."""

    time_ms: I64
    series: tuple[Series, ...]

    def __post_init__(self) -> None:
        n = len(self.time_ms)
        for s in self.series:
            if len(s.close) != n or len(s.volume) != n:
                raise ValueError(
                    f"expected {n} bars in {s.venue} {s.symbol}, got {len(s.close)} closes "
                    f"and {len(s.volume)} volumes")
        if n > 1 and not bool(np.all(np.diff(self.time_ms) > 0)):
            raise ValueError("expected an ascending time grid, got a repeated or earlier time")

    def __len__(self) -> int:
        return len(self.time_ms)

    def get(self, venue: str, symbol: str) -> Series:
        """Return the series of ``symbol`` on ``venue``; KeyError if absent."""
        for s in self.series:
            if s.venue == venue and s.symbol == symbol:
                return s
        raise KeyError((venue, symbol))

    def slice(self, start: int, end: int) -> MarketFrame:
        """Return bars ``[start, end)`` (views, no copy)."""
        return MarketFrame(self.time_ms[start:end], tuple(
            Series(s.venue, s.symbol, s.close[start:end], s.volume[start:end])
            for s in self.series))


@dataclass(frozen=True, kw_only=True)
class VenueCosts:
    """Trading conditions on one venue (all strategy legs are taker fills)."""

    venue: str
    maker_fee_bps: float = 0.0
    taker_fee_bps: float = 0.0
    slippage_bps: float = 0.0            # fixed, adverse on every fill
    volume_impact_bps: float = 0.0       # extra bps per 1% of the bar's volume taken, ≤ 100%
    latency_bars: int = 0
    initial_balances: Mapping[str, float] = field(default_factory=dict)
    min_balances: Mapping[str, float] = field(default_factory=dict)  # absent: no limit
    latency_ms: int = 0                  # ceil(latency_ms / bar_ms) bars more
    participation_cap: float = 0.0       # independent legs: share of a bar's volume, 0 = none


@dataclass(frozen=True, kw_only=True)
class Transfer:
    """A route that moves ``asset`` between venues for a flat fee, arriving after a delay."""

    from_venue: str
    to_venue: str
    asset: str
    fee: float = 0.0
    delay_bars: int = 0


@dataclass(frozen=True, kw_only=True)
class Execution:
    """The execution model (legs.py): how legs fill and what an order is.

    The default, all legs together or none (``leg_mode="all"``) as taker orders, is
    engine 1.x's behaviour and runs the fast kernel (loop.py).
    """

    leg_mode: Literal["all", "independent"] = "all"
    one_leg: Literal["hedge", "retry", "unwind"] = "hedge"
    retry_bars: int = 1
    order_type: Literal["taker", "maker"] = "taker"
    maker_timeout_bars: int = 0


@dataclass(frozen=True, kw_only=True)
class Robustness:
    """Scenarios of a robustness panel: each extra latency, then each cost multiplier."""

    extra_latency_bars: tuple[int, ...] = (1, 2)
    cost_multipliers: tuple[float, ...] = (1.5, 2.0)


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Everything besides the strategy's parameters that decides a result."""

    venues: tuple[VenueCosts, ...]
    transfers: tuple[Transfer, ...] = ()
    fill: Literal["next", "same"] = "next"
    quote_asset: str = "USDT"
    periods_per_year: float = 525_600.0  # 1m bars
    execution: Execution = Execution()
    bar_ms: int = 60_000                 # bar length, for latency_ms
    robustness: Robustness | None = None


@dataclass(frozen=True)
class Progress:
    """Where a running backtest is, with partial figures."""

    bars_done: int
    bars_total: int
    equity: float
    metrics: dict[str, float]


class Cancelled(Exception):
    """The caller's progress callback asked to stop.

    ``partial`` holds what was finished before it stopped: a sweep's points (grid order)
    or a walk-forward's folds. It survives pickling (the engine runs in a child process).
    """

    def __init__(self, message: str = "", partial: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.partial = tuple(partial)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.partial))


@dataclass(frozen=True)
class TradeLog:
    """Leg fills in time order, one row per fill, as columns."""

    bar: I64
    venue: npt.NDArray[np.object_]
    symbol: npt.NDArray[np.object_]
    side: npt.NDArray[np.int8]
    quantity: F64
    price: F64
    fee: F64
    slippage: F64
    round_trip: I64
    signal_bar: I64
    signal_edge_bps: F64
    # each fill's series (an index into ``series_names``: (venue, symbol) of the run's
    # series), from which venue and symbol were made; empty when not known
    series: I64 | None = None
    series_names: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.bar)


@dataclass(frozen=True)
class BacktestOutput:
    """A finished backtest: curves, fills and figures."""

    equity: F64
    drawdown: F64
    exposure: F64
    trades: TradeLog
    metrics: dict[str, Any]
    optimistic_fills: bool
    engine_version: str
    # Added beyond the contract: figures that have no BacktestMetrics field
    # (transfers started and their fees in the quote asset, initial equity, bars).
    extras: dict[str, float] = field(default_factory=dict)
    # The hold baseline's equity per bar (baseline.py; None when it is constant at the
    # initial equity: see ``baseline_curve``) and its figures.
    baseline: F64 | None = None
    baseline_metrics: dict[str, Any] = field(default_factory=dict)
    # The execution model in words (BacktestResult.execution_model).
    execution_model: str = ""
    # The robustness panel: (label, extra latency bars, cost multiplier, metrics).
    robustness: tuple[tuple[str, int, float, dict[str, Any]], ...] = ()

    def baseline_curve(self) -> F64:
        """The hold baseline's equity per bar."""
        if self.baseline is not None:
            return self.baseline
        return np.full(len(self.equity), self.extras.get("initial_equity", 0.0))


@dataclass(frozen=True)
class SweepPoint:
    """One combination of a sweep: axis path -> value, and its metrics."""

    params: dict[str, float]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: in-sample choice, out-of-sample result (bar ranges [start, end))."""

    index: int
    in_sample: tuple[int, int]
    out_of_sample: tuple[int, int]
    chosen_params: dict[str, float]
    in_sample_metrics: dict[str, Any]
    out_of_sample_metrics: dict[str, Any]
