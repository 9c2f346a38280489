"""BacktestConfig (proto) ↔ the engine's EngineConfig, validated, with a canonical form.

Every violation is collected and reported at once as INVALID_ARGUMENT with one field
violation each ("config.venues[1].taker_fee_bps: expected a number >= 0, got -1.0").
The canonical form (venues and balances sorted, defaults applied, times in epoch ms)
is what the fingerprint hashes: two configs that run the same simulation have the
same canonical form whatever the order their venues were listed in.

Semantics the proto states and the engine does not: ``min_balances`` absent means 0,
so every asset a venue holds or trades gets a lower bound of 0 unless the config says
otherwise (the engine's default for an absent asset is "no limit").
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from usdcarb.backtest.engine import EngineConfig, Execution, Robustness, Transfer, VenueCosts
from usdcarb.platform.errors import InvalidArgument, expected
from usdcarb.v1 import backtest_pb2 as pb

TIMEFRAMES: dict[str, int] = {
    "1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000,
    "1d": 86_400_000,
}
MS_PER_YEAR = 365 * 86_400_000
# Documented bounds (proto/usdcarb/v1/backtest.proto): outside them INVALID_ARGUMENT.
MAX_BPS = 1_000.0              # fees and slippage: 10% of notional or price
MAX_LATENCY_BARS = 10_000
MAX_LATENCY_MS = 86_400_000
MAX_COST_MULTIPLIER = 100.0
MAX_DELAY_BARS = 100_000
MAX_AMOUNT = 1e15
MAX_PERIODS_PER_YEAR = 527_040.0   # 1m bars in a leap year
VENUE = re.compile(r"^[a-z][a-z0-9]{1,31}$")
ASSET = re.compile(r"^[A-Z0-9]{2,12}$")
FILLS = {pb.FILL_POLICY_UNSPECIFIED: "next", pb.FILL_POLICY_NEXT_BAR: "next",
         pb.FILL_POLICY_SAME_BAR: "same"}


@dataclass(frozen=True)
class RunSpec:
    """A validated config: the period, the grid and the engine's conditions."""

    start_ms: int
    end_ms: int
    timeframe: str
    timeframe_ms: int
    engine: EngineConfig
    canonical: dict[str, Any]

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_ms / 1000, UTC)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.end_ms / 1000, UTC)

    @property
    def bars(self) -> int:
        return grid_size(self.start_ms, self.end_ms, self.timeframe_ms)

    def bars_for(self, duration_ms: int) -> int:
        """Return how many bars of the grid ``duration_ms`` covers (rounded down)."""
        return duration_ms // self.timeframe_ms


def grid_start(start_ms: int, timeframe_ms: int) -> int:
    """Return the first bar open time at or after ``start_ms`` (epoch-aligned grid)."""
    return -(-start_ms // timeframe_ms) * timeframe_ms


def grid_size(start_ms: int, end_ms: int, timeframe_ms: int) -> int:
    """Return the number of bars opening in [start_ms, end_ms) on the aligned grid."""
    first = grid_start(start_ms, timeframe_ms)
    return max(0, -(-(end_ms - first) // timeframe_ms))


def _base_quote(symbol: str) -> tuple[str, str]:
    base, _, quote = symbol.partition("/")
    return base, quote


class _Violations:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, what: str, got: object) -> None:
        self.items.append((field, expected(what, got)))

    def number(self, field: str, value: float, *, minimum: float = 0.0,
               maximum: float = MAX_AMOUNT) -> None:
        if not math.isfinite(value) or not minimum <= value <= maximum:
            self.add(field, f"a number from {minimum:g} to {maximum:g}", value)

    def whole(self, field: str, value: int, maximum: int) -> None:
        if not 0 <= value <= maximum:
            self.add(field, f"a whole number from 0 to {maximum:,}", value)


def _amounts(
    items: Sequence[pb.AssetAmount], field: str, v: _Violations, *, signed: bool
) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, item in enumerate(items):
        f = f"{field}[{i}]"
        if not ASSET.match(item.asset):
            v.add(f"{f}.asset", "an asset code like 'USDC'", item.asset)
        elif item.asset in out:
            v.add(f"{f}.asset", "each asset once", item.asset)
        low = -MAX_AMOUNT if signed else 0.0
        if not math.isfinite(item.amount) or not low <= item.amount <= MAX_AMOUNT:
            v.add(f"{f}.amount", f"a number from {low:g} to {MAX_AMOUNT:g}", item.amount)
        out[item.asset] = float(item.amount)
    return out


def parse_config(
    cfg: pb.BacktestConfig, legs: Sequence[tuple[str, str]], *, field: str = "config",
    max_bars: int = 20_000_000,
) -> RunSpec:
    """Validate ``cfg`` for a strategy trading ``legs`` ((venue, symbol) pairs)."""
    v = _Violations()
    timeframe = cfg.timeframe or "1m"
    tf_ms = TIMEFRAMES.get(timeframe, 0)
    if not tf_ms:
        v.add(f"{field}.timeframe", f"one of {list(TIMEFRAMES)}", cfg.timeframe)
    start_ms = end_ms = 0
    if not (cfg.HasField("range") and cfg.range.HasField("start_time")
            and cfg.range.HasField("end_time")):
        v.add(f"{field}.range", "a start_time and an end_time", "")
    else:
        start_ms = cfg.range.start_time.ToMilliseconds()
        end_ms = cfg.range.end_time.ToMilliseconds()
        if end_ms <= start_ms:
            v.add(f"{field}.range", "end_time after start_time",
                  f"{cfg.range.start_time.ToJsonString()} .. {cfg.range.end_time.ToJsonString()}")
        elif tf_ms and grid_size(start_ms, end_ms, tf_ms) == 0:
            v.add(f"{field}.range", f"at least one {timeframe} bar", "an empty grid")
        elif tf_ms and grid_size(start_ms, end_ms, tf_ms) > max_bars:
            v.add(f"{field}.range", f"at most {max_bars} bars",
                  grid_size(start_ms, end_ms, tf_ms))
    traded: dict[str, set[str]] = {}
    for venue, symbol in legs:
        traded.setdefault(venue, set()).update(_base_quote(symbol))
    venues: list[VenueCosts] = []
    canonical_venues: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, vc in enumerate(cfg.venues):
        f = f"{field}.venues[{i}]"
        if not VENUE.match(vc.venue):
            v.add(f"{f}.venue", "an exchange id like 'binance'", vc.venue)
        elif vc.venue in seen:
            v.add(f"{f}.venue", "each venue once", vc.venue)
        seen.add(vc.venue)
        v.number(f"{f}.maker_fee_bps", vc.maker_fee_bps, maximum=MAX_BPS)
        v.number(f"{f}.taker_fee_bps", vc.taker_fee_bps, maximum=MAX_BPS)
        v.number(f"{f}.slippage.fixed_bps", vc.slippage.fixed_bps, maximum=MAX_BPS)
        v.number(f"{f}.slippage.volume_impact_bps", vc.slippage.volume_impact_bps,
                 maximum=MAX_BPS)
        v.whole(f"{f}.latency_bars", vc.latency_bars, MAX_LATENCY_BARS)
        v.whole(f"{f}.latency_ms", vc.latency_ms, MAX_LATENCY_MS)
        v.number(f"{f}.participation_cap", vc.participation_cap, maximum=1.0)
        initial = _amounts(vc.initial_balances, f"{f}.initial_balances", v, signed=False)
        minimum = _amounts(vc.min_balances, f"{f}.min_balances", v, signed=True)
        for asset in sorted(traded.get(vc.venue, set()) | set(initial)):
            minimum.setdefault(asset, 0.0)
        for asset, low in minimum.items():
            if initial.get(asset, 0.0) < low:
                v.add(f"{f}.initial_balances", f"{asset} at least its minimum {low:g}",
                      initial.get(asset, 0.0))
        venues.append(VenueCosts(
            venue=vc.venue, maker_fee_bps=vc.maker_fee_bps, taker_fee_bps=vc.taker_fee_bps,
            slippage_bps=vc.slippage.fixed_bps,
            volume_impact_bps=vc.slippage.volume_impact_bps, latency_bars=vc.latency_bars,
            initial_balances=dict(sorted(initial.items())),
            min_balances=dict(sorted(minimum.items())),
            latency_ms=vc.latency_ms, participation_cap=vc.participation_cap,
        ))
        canonical_venue = {
            "venue": vc.venue, "makerFeeBps": vc.maker_fee_bps,
            "takerFeeBps": vc.taker_fee_bps, "slippageBps": vc.slippage.fixed_bps,
            "volumeImpactBps": vc.slippage.volume_impact_bps, "latencyBars": vc.latency_bars,
            "initialBalances": dict(sorted(initial.items())),
            "minBalances": dict(sorted(minimum.items())),
        }
        # Added with engine 1.2, hashed only when set: older configs keep their hash.
        if vc.latency_ms:
            canonical_venue["latencyMs"] = vc.latency_ms
        if vc.participation_cap:
            canonical_venue["participationCap"] = vc.participation_cap
        canonical_venues.append(canonical_venue)
    missing = sorted(set(traded) - seen)
    if missing:
        v.add(f"{field}.venues", f"a VenueConfig for every venue the strategy trades "
              f"({sorted(traded)})", f"none for {missing}")
    transfers: list[Transfer] = []
    canonical_transfers: list[dict[str, Any]] = []
    for i, t in enumerate(cfg.transfers):
        f = f"{field}.transfers[{i}]"
        for name, value in (("from_venue", t.from_venue), ("to_venue", t.to_venue)):
            if value not in seen:
                v.add(f"{f}.{name}", f"a venue listed in {field}.venues", value)
        if t.from_venue == t.to_venue:
            v.add(f"{f}.to_venue", "a venue other than from_venue", t.to_venue)
        if not ASSET.match(t.asset):
            v.add(f"{f}.asset", "an asset code like 'USDC'", t.asset)
        v.number(f"{f}.fee", t.fee)
        v.whole(f"{f}.delay_bars", t.delay_bars, MAX_DELAY_BARS)
        transfers.append(Transfer(from_venue=t.from_venue, to_venue=t.to_venue, asset=t.asset,
                                  fee=t.fee, delay_bars=t.delay_bars))
        canonical_transfers.append({"fromVenue": t.from_venue, "toVenue": t.to_venue,
                                    "asset": t.asset, "fee": t.fee, "delayBars": t.delay_bars})
    if cfg.fill_policy not in FILLS:
        v.add(f"{field}.fill_policy", "FILL_POLICY_NEXT_BAR or FILL_POLICY_SAME_BAR",
              cfg.fill_policy)
    quote = cfg.quote_asset or "USDT"
    if not ASSET.match(quote):
        v.add(f"{field}.quote_asset", "an asset code like 'USDT'", cfg.quote_asset)
    ppy = cfg.periods_per_year
    if not math.isfinite(ppy) or not (ppy == 0 or 1 <= ppy <= MAX_PERIODS_PER_YEAR):
        v.add(f"{field}.periods_per_year",
              f"0 (from the timeframe) or a number from 1 to {MAX_PERIODS_PER_YEAR:,.0f}", ppy)
    execution = _execution(cfg.execution, f"{field}.execution", v, triangle=len(legs) == 3)
    if execution.leg_mode != "independent":
        for i, vc in enumerate(cfg.venues):
            if vc.participation_cap:
                v.add(f"{field}.venues[{i}].participation_cap",
                      "0 unless execution.leg_mode is LEG_MODE_INDEPENDENT (a cap fills a leg "
                      "partially, which all-or-nothing legs cannot)", vc.participation_cap)
    robustness = _robustness(cfg.robustness, f"{field}.robustness", v)
    if v.items:
        raise InvalidArgument(v.items)
    periods = ppy or MS_PER_YEAR / tf_ms
    fill = FILLS[cfg.fill_policy]
    engine = EngineConfig(
        venues=tuple(sorted(venues, key=lambda x: x.venue)),
        transfers=tuple(transfers), fill=fill,  # type: ignore[arg-type]
        quote_asset=quote, periods_per_year=periods, execution=execution, bar_ms=tf_ms,
        robustness=robustness,
    )
    canonical: dict[str, Any] = {
        "startMs": start_ms, "endMs": end_ms, "timeframe": timeframe,
        "venues": sorted(canonical_venues, key=lambda x: x["venue"]),
        "transfers": canonical_transfers, "fill": fill, "quoteAsset": quote,
        "periodsPerYear": periods,
    }
    if execution != Execution():
        canonical["execution"] = {
            "legMode": execution.leg_mode, "oneLegPolicy": execution.one_leg,
            "retryBars": execution.retry_bars, "orderType": execution.order_type,
            "makerTimeoutBars": execution.maker_timeout_bars}
    if robustness is not None:
        canonical["robustness"] = {"extraLatencyBars": list(robustness.extra_latency_bars),
                                   "costMultipliers": list(robustness.cost_multipliers)}
    return RunSpec(start_ms=start_ms, end_ms=end_ms, timeframe=timeframe, timeframe_ms=tf_ms,
                   engine=engine, canonical=canonical)


LEG_MODES = {pb.LEG_MODE_UNSPECIFIED: "all", pb.LEG_MODE_ALL_OR_NOTHING: "all",
             pb.LEG_MODE_INDEPENDENT: "independent"}
ONE_LEG = {pb.ONE_LEG_POLICY_UNSPECIFIED: "hedge", pb.ONE_LEG_POLICY_HEDGE: "hedge",
           pb.ONE_LEG_POLICY_RETRY: "retry", pb.ONE_LEG_POLICY_UNWIND: "unwind"}
ORDER_TYPES = {pb.ORDER_TYPE_UNSPECIFIED: "taker", pb.ORDER_TYPE_TAKER: "taker",
               pb.ORDER_TYPE_MAKER: "maker"}


def _execution(ex: pb.ExecutionConfig, field: str, v: _Violations, *,
               triangle: bool) -> Execution:
    """The engine's execution model of ``ex`` (violations added to ``v``)."""
    ok = True
    for name, table, value in (("leg_mode", LEG_MODES, ex.leg_mode),
                               ("one_leg_policy", ONE_LEG, ex.one_leg_policy),
                               ("order_type", ORDER_TYPES, ex.order_type)):
        if value not in table:
            v.add(f"{field}.{name}", "a value of its enum", value)
            ok = False
    if ex.retry_bars != 0:
        if not 1 <= ex.retry_bars <= MAX_LATENCY_BARS:
            v.add(f"{field}.retry_bars", f"a whole number from 1 to {MAX_LATENCY_BARS:,}",
                  ex.retry_bars)
    v.whole(f"{field}.maker_timeout_bars", ex.maker_timeout_bars, MAX_LATENCY_BARS)
    if not ok:
        return Execution()
    out = Execution(leg_mode=LEG_MODES[ex.leg_mode],  # type: ignore[arg-type]
                    one_leg=ONE_LEG[ex.one_leg_policy],  # type: ignore[arg-type]
                    retry_bars=max(1, ex.retry_bars),
                    order_type=ORDER_TYPES[ex.order_type],  # type: ignore[arg-type]
                    maker_timeout_bars=max(0, ex.maker_timeout_bars))
    if triangle and (out.leg_mode != "all" or out.order_type != "taker"):
        v.add(field, "LEG_MODE_ALL_OR_NOTHING and ORDER_TYPE_TAKER for a triangular loop "
              "(its legs trade one venue in sequence)",
              f"{pb.LegMode.Name(ex.leg_mode)}, {pb.OrderType.Name(ex.order_type)}")
    return out


def _robustness(spec: pb.RobustnessSpec, field: str, v: _Violations) -> Robustness | None:
    """The robustness panel ``spec`` asks for (None when not enabled)."""
    if not spec.enabled:
        if spec.extra_latency_bars or spec.cost_multipliers:
            v.add(f"{field}.enabled", "true when scenarios are given", False)
        return None
    for i, bars in enumerate(spec.extra_latency_bars):
        if not 1 <= bars <= MAX_LATENCY_BARS:
            v.add(f"{field}.extra_latency_bars[{i}]",
                  f"a whole number from 1 to {MAX_LATENCY_BARS:,}", bars)
    for i, m in enumerate(spec.cost_multipliers):
        if not (math.isfinite(m) and 0.0 < m <= MAX_COST_MULTIPLIER):
            v.add(f"{field}.cost_multipliers[{i}]",
                  f"a number above 0 and at most {MAX_COST_MULTIPLIER:g}", m)
    return Robustness(
        extra_latency_bars=tuple(spec.extra_latency_bars) or (1, 2),
        cost_multipliers=tuple(float(m) for m in spec.cost_multipliers) or (1.5, 2.0))
