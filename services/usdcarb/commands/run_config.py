"""The ``BacktestConfig`` options shared by ``backtest run`` and ``sweep run``.

Either ``--config FILE`` (proto3 JSON of a BacktestConfig) or flags that feed the SDK's
``BacktestConfigBuilder`` (its docstrings state every default):

    --start 2023-03-10 --end 2023-03-13 --quote USDC --venue binance --venue bybit
    --taker-fee-bps 10 --slippage-bps 2 --balance BTC=5 --balance binance:USDC=200000
    --latency-ms bybit=250 --transfer binance:bybit:USDC:1:30 --legs independent
    --one-leg retry --retry-bars 2 --orders maker --robustness
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from usdcarb.commands.common import UsageError
from usdcarb.commands.strategy import load_json_arg
from usdcarb_sdk import v1
from usdcarb_sdk.backtest_config import BacktestConfigBuilder

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Return "90s", "30m", "6h" or "2d" as a timedelta."""
    try:
        return timedelta(seconds=float(text[:-1]) * _UNITS[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise UsageError(f"expected a duration like 30m, 6h or 2d, got {text!r}") from None


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Add the config flags."""
    g = parser.add_argument_group("backtest configuration (or --config FILE)")
    g.add_argument("--config", help="a BacktestConfig as proto3 JSON (inline or @file); "
                                    "the flags below are then not used")
    g.add_argument("--start", help="ISO date or time, UTC unless given")
    g.add_argument("--end", help="ISO date or time, exclusive")
    g.add_argument("--timeframe", default="1m")
    g.add_argument("--quote", default="USDC", help="quote asset of equity and PnL")
    g.add_argument("--fill", default="next-bar", choices=["next-bar", "same-bar"])
    g.add_argument("--venue", action="append", default=[], help="a venue (repeatable)")
    g.add_argument("--taker-fee-bps", type=float, default=10.0, help="every venue (default 10)")
    g.add_argument("--maker-fee-bps", type=float, default=10.0, help="every venue (default 10)")
    g.add_argument("--slippage-bps", type=float, default=0.0, help="every venue (default 0)")
    g.add_argument("--balance", action="append", default=[],
                   help="[VENUE:]ASSET=AMOUNT starting balance (no venue: every venue)")
    g.add_argument("--latency-ms", action="append", default=[],
                   help="[VENUE=]MS order latency (no venue: every venue)")
    g.add_argument("--latency-bars", action="append", default=[], help="[VENUE=]BARS")
    g.add_argument("--participation-cap", type=float, default=0.0,
                   help="share of a bar's volume a leg may take, every venue (0: none)")
    g.add_argument("--transfer", action="append", default=[],
                   help="FROM:TO:ASSET[:FEE[:DELAY_BARS]] route (repeatable)")
    g.add_argument("--legs", choices=["all-or-nothing", "independent"], default=None)
    g.add_argument("--one-leg", choices=["hedge", "retry", "unwind"], default="hedge")
    g.add_argument("--retry-bars", type=int, default=1)
    g.add_argument("--orders", choices=["taker", "maker"], default="taker")
    g.add_argument("--maker-timeout-bars", type=int, default=0)
    g.add_argument("--robustness", action="store_true",
                   help="re-run with latency +1/+2 bars and costs x1.5/x2 (backtests)")
    g.add_argument("--allow-unusable-data", action="store_true",
                   help="run over data judged stale or aliased (recorded with the config)")


def _per_venue(items: list[str], venues: list[str], what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        venue, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"expected {what} as [VENUE=]NUMBER, got {item!r}") from None
        for v in ([venue] if sep and venue else venues):
            out[v] = number
    return out


def build_config(args: argparse.Namespace) -> v1.BacktestConfig:
    """Return the config the options describe."""
    if args.config:
        try:
            return v1.BacktestConfig.from_dict(load_json_arg(args.config, "--config"))
        except (TypeError, ValueError, KeyError) as exc:
            raise UsageError(f"expected a BacktestConfig in --config: {exc}") from None
    if not (args.start and args.end and args.venue):
        raise UsageError("expected --config, or --start, --end and at least one --venue")
    venues: list[str] = list(dict.fromkeys(args.venue))
    try:
        builder = BacktestConfigBuilder(args.start, args.end, timeframe=args.timeframe,
                                        quote_asset=args.quote, fill_policy=args.fill,
                                        allow_unusable_data=args.allow_unusable_data)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    balances: dict[str, dict[str, float]] = {v: {} for v in venues}
    for item in args.balance:
        where, sep, amount = item.partition("=")
        venue, colon, asset = where.rpartition(":")
        try:
            value = float(amount)
        except ValueError:
            raise UsageError(f"expected --balance [VENUE:]ASSET=AMOUNT, got {item!r}") from None
        if not sep or not asset:
            raise UsageError(f"expected --balance [VENUE:]ASSET=AMOUNT, got {item!r}")
        if colon and venue not in balances:
            raise UsageError(f"expected --balance for one of the venues {venues}, got {venue!r}")
        for v in ([venue] if colon else venues):
            balances[v][asset] = value
    latency_ms = _per_venue(args.latency_ms, venues, "--latency-ms")
    latency_bars = _per_venue(args.latency_bars, venues, "--latency-bars")
    for v in venues:
        builder.venue(v, taker_fee_bps=args.taker_fee_bps, maker_fee_bps=args.maker_fee_bps,
                      slippage_bps=args.slippage_bps, balances=balances[v],
                      latency_ms=int(latency_ms.get(v, 0)),
                      latency_bars=int(latency_bars.get(v, 0)),
                      participation_cap=args.participation_cap)
    for item in args.transfer:
        parts = item.split(":")
        if len(parts) < 3 or len(parts) > 5:
            raise UsageError(f"expected --transfer FROM:TO:ASSET[:FEE[:DELAY_BARS]], got {item!r}")
        try:
            fee = float(parts[3]) if len(parts) > 3 else 0.0
            delay = int(parts[4]) if len(parts) > 4 else 0
        except ValueError:
            raise UsageError(f"expected numbers in --transfer, got {item!r}") from None
        builder.transfer(parts[0], parts[1], parts[2], fee=fee, delay_bars=delay)
    if args.legs is not None or args.orders != "taker" or args.one_leg != "hedge":
        builder.execution(legs=args.legs or "all-or-nothing", one_leg=args.one_leg,
                          retry_bars=args.retry_bars, orders=args.orders,
                          maker_timeout_bars=args.maker_timeout_bars)
    if getattr(args, "robustness", False):
        builder.robustness()
    return builder.build()


def parse_axes(items: list[str]) -> list[v1.ParameterAxis]:
    """Return ``PATH=V1,V2,...`` items as parameter axes."""
    axes = []
    for item in items:
        path, sep, values = item.partition("=")
        try:
            numbers = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            numbers = []
        if not sep or not path or not numbers:
            raise UsageError(f"expected --axis PATH=V1,V2,..., got {item!r}")
        axes.append(v1.ParameterAxis(path=path, values=numbers))
    return axes


def describe(config: Any) -> str:
    """Return a one-line summary of a config."""
    r = config.range
    venues = ", ".join(v.venue for v in config.venues)
    return (f"{r.start_time:%Y-%m-%d %H:%M} .. {r.end_time:%Y-%m-%d %H:%M} "
            f"{config.timeframe or '1m'} on {venues} in {config.quote_asset}")
