"""A typed builder for ``BacktestConfig``: venues, balances, costs, latency, transfers.

    config = (BacktestConfigBuilder("2023-03-10", "2023-03-13", quote_asset="USDC")
              .venue("binance", taker_fee_bps=10, slippage_bps=2,
                     balances={"BTC": 5, "USDC": 200_000})
              .venue("bybit", taker_fee_bps=10, balances={"BTC": 5, "USDC": 200_000})
              .transfer("binance", "bybit", "USDC", fee=1, delay_bars=30, both_ways=True)
              .build())

Every keyword has a default, stated in the docstring of the method that takes it; the
server applies its own defaults to what a config leaves unset (docs/api.md). The result
is a ``v1.BacktestConfig`` message, ready for ``client.backtests.run_backtest``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from usdcarb_sdk._gen.usdcarb import v1

__all__ = ["BacktestConfigBuilder", "VenueSpec", "parse_time"]

_FILL_POLICIES = {"next-bar": v1.FillPolicy.NEXT_BAR, "same-bar": v1.FillPolicy.SAME_BAR}
_LEG_MODES = {"all-or-nothing": v1.LegMode.ALL_OR_NOTHING,
              "independent": v1.LegMode.INDEPENDENT}
_ONE_LEG = {"hedge": v1.OneLegPolicy.HEDGE, "retry": v1.OneLegPolicy.RETRY,
            "unwind": v1.OneLegPolicy.UNWIND}
_ORDER_TYPES = {"taker": v1.OrderType.TAKER, "maker": v1.OrderType.MAKER}


def _choice(table: Mapping[str, Any], value: str, what: str) -> Any:
    if value not in table:
        raise ValueError(f"expected {what} in {sorted(table)}, got {value!r}")
    return table[value]


def parse_time(value: str | date | datetime) -> datetime:
    """Return ``value`` (ISO text, a date or a datetime) as an aware UTC datetime.

    Naive times and dates are UTC; a date means its midnight.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        value = datetime.fromisoformat(text)
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class VenueSpec:
    """Trading conditions on one venue (the defaults are a typical retail tier).

    * ``taker_fee_bps`` 10, ``maker_fee_bps`` 10: fees in basis points of notional;
    * ``slippage_bps`` 0: fixed slippage, adverse to every fill;
      ``volume_impact_bps`` 0: extra bps per 1% of the bar's volume a fill takes;
    * ``latency_bars`` 0: bars added to the fill policy's delay for this venue;
      ``latency_ms`` 0: order latency in milliseconds, mapped onto bars (ceil(ms / bar))
      and added to ``latency_bars``;
    * ``participation_cap`` 0: the largest share of a bar's volume one leg may take,
      (0, 1]; 0 means no cap (independent legs only, see ``BacktestConfigBuilder.execution``);
    * ``balances``: starting balance per asset (none: the venue starts empty);
    * ``min_balances``: lower bound per asset (absent: 0; negative allows borrowing).
    """

    name: str
    taker_fee_bps: float = 10.0
    maker_fee_bps: float = 10.0
    slippage_bps: float = 0.0
    volume_impact_bps: float = 0.0
    latency_bars: int = 0
    latency_ms: int = 0
    participation_cap: float = 0.0
    balances: Mapping[str, float] = field(default_factory=dict)
    min_balances: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def message(self) -> v1.VenueConfig:
        """Return this venue as a ``v1.VenueConfig``."""
        venue = v1.VenueConfig(
            venue=self.name, taker_fee_bps=float(self.taker_fee_bps),
            maker_fee_bps=float(self.maker_fee_bps),
            slippage=v1.SlippageModel(fixed_bps=float(self.slippage_bps),
                                      volume_impact_bps=float(self.volume_impact_bps)),
            latency_bars=int(self.latency_bars), latency_ms=int(self.latency_ms),
            participation_cap=float(self.participation_cap),
            initial_balances=[v1.AssetAmount(asset=a, amount=float(x))
                              for a, x in self.balances.items()],
            min_balances=[v1.AssetAmount(asset=a, amount=float(x))
                          for a, x in self.min_balances.items()])
        for name, value in self.extra.items():
            _set_field(venue, name, value)
        return venue


def _set_field(message: Any, name: str, value: Any) -> None:
    """Set a field the SDK knows by its proto name; unknown names are errors."""
    if name not in type(message)._betterproto.meta_by_field_name:
        raise TypeError(f"expected a field of {type(message).__name__}, got {name!r}")
    setattr(message, name, value)


class BacktestConfigBuilder:
    """Build a ``v1.BacktestConfig`` step by step; ``build()`` returns the message.

    ``start`` and ``end`` bound the simulated period (ISO text, dates or datetimes; naive
    means UTC; ``end`` is exclusive). Defaults: ``timeframe`` "1m"; ``quote_asset``
    "USDC" (equity and PnL are reported in it); ``fill_policy`` "next-bar" (a signal on
    bar t fills on bar t+1; "same-bar" is optimistic and labelled so in results);
    ``periods_per_year`` 0 (from the timeframe); ``allow_unusable_data`` False (a run over
    data validation judged stale or aliased is refused).
    """

    def __init__(self, start: str | date | datetime, end: str | date | datetime, *,
                 timeframe: str = "1m", quote_asset: str = "USDC",
                 fill_policy: str = "next-bar", periods_per_year: float = 0.0,
                 allow_unusable_data: bool = False) -> None:
        if fill_policy not in _FILL_POLICIES:
            raise ValueError(f"expected fill_policy in {sorted(_FILL_POLICIES)}, "
                             f"got {fill_policy!r}")
        self._start, self._end = parse_time(start), parse_time(end)
        if self._end <= self._start:
            raise ValueError(f"expected end after start, got {self._start} .. {self._end}")
        self._timeframe = timeframe
        self._quote = quote_asset
        self._fill = _FILL_POLICIES[fill_policy]
        self._periods = float(periods_per_year)
        self._allow = allow_unusable_data
        self._venues: dict[str, VenueSpec] = {}
        self._transfers: list[v1.TransferRoute] = []
        self._extra: dict[str, Any] = {}

    def venue(self, name: str, **conditions: Any) -> BacktestConfigBuilder:
        """Add (or replace) a venue; ``conditions`` are ``VenueSpec``'s keywords."""
        self._venues[name] = VenueSpec(name=name, **conditions)
        return self

    def add_venue(self, spec: VenueSpec) -> BacktestConfigBuilder:
        """Add (or replace) a venue given as a ``VenueSpec``."""
        self._venues[spec.name] = spec
        return self

    def transfer(self, from_venue: str, to_venue: str, asset: str, *, fee: float = 0.0,
                 delay_bars: int = 0, both_ways: bool = False) -> BacktestConfigBuilder:
        """Add a transfer route (``fee`` in units of the asset, default 0; ``delay_bars``
        before the funds arrive, default 0); ``both_ways`` adds the reverse route too."""
        pairs = [(from_venue, to_venue)] + ([(to_venue, from_venue)] if both_ways else [])
        for a, b in pairs:
            self._transfers.append(v1.TransferRoute(from_venue=a, to_venue=b, asset=asset,
                                                    fee=float(fee), delay_bars=int(delay_bars)))
        return self

    def execution(self, *, legs: str = "all-or-nothing", one_leg: str = "hedge",
                  retry_bars: int = 1, orders: str = "taker",
                  maker_timeout_bars: int = 0) -> BacktestConfigBuilder:
        """Choose how orders fill (defaults: the engine's labelled default).

        * ``legs`` "all-or-nothing" (every leg of an order fills together on one bar, or
          none does) or "independent" (each venue's leg fills on its own bar after that
          venue's latency, capped by its participation cap, possibly partially);
        * ``one_leg`` when one leg filled and another did not: "hedge" (close the exposure
          at the next bar), "retry" (try the missing leg for ``retry_bars`` bars, default
          1) or "unwind" (reverse the filled leg); its cost is the legging loss;
        * ``orders`` "taker" or "maker" (a limit at the signal price that fills on a later
          bar only if it trades through, pays the maker fee, may not fill; waits
          ``maker_timeout_bars`` bars after the due bar, default 0).
        """
        self._extra["execution"] = v1.ExecutionConfig(
            leg_mode=_choice(_LEG_MODES, legs, "legs"),
            one_leg_policy=_choice(_ONE_LEG, one_leg, "one_leg"), retry_bars=int(retry_bars),
            order_type=_choice(_ORDER_TYPES, orders, "orders"),
            maker_timeout_bars=int(maker_timeout_bars))
        return self

    def robustness(self, *, extra_latency_bars: Sequence[int] = (),
                   cost_multipliers: Sequence[float] = ()) -> BacktestConfigBuilder:
        """Ask for the robustness panel: the same run again with more latency and higher
        costs, reported beside the result (defaults: latency +1 and +2 bars, costs x1.5
        and x2)."""
        self._extra["robustness"] = v1.RobustnessSpec(
            enabled=True, extra_latency_bars=[int(x) for x in extra_latency_bars],
            cost_multipliers=[float(x) for x in cost_multipliers])
        return self

    def set(self, **fields: Any) -> BacktestConfigBuilder:
        """Set further ``BacktestConfig`` fields by their proto names (snake_case)."""
        self._extra.update(fields)
        return self

    @property
    def venues(self) -> list[str]:
        """The venue names added so far."""
        return list(self._venues)

    def build(self) -> v1.BacktestConfig:
        """Return the config message."""
        if not self._venues:
            raise ValueError("expected at least one venue, got none")
        config = v1.BacktestConfig(
            range=v1.TimeRange(start_time=self._start, end_time=self._end),
            timeframe=self._timeframe, quote_asset=self._quote, fill_policy=self._fill,
            periods_per_year=self._periods, allow_unusable_data=self._allow,
            venues=[spec.message() for spec in self._venues.values()],
            transfers=list(self._transfers))
        for name, value in self._extra.items():
            _set_field(config, name, value)
        return config
