"""Peg-aware cross check of a stablecoin pair against its implied cross.

A venue's USDC/USDT should agree with USDC/USD ÷ USDT/USD (on the same venue or
others). The check is on the log divergence d = log(direct / implied), judged against
its own local level like the deviation rule: a real depeg moves the direct pair and the
implied cross together (d stays near its level, however far both fall), and a lasting
dislocation between venues is a step in d, not a departure; a one-off print far from
the implied cross (Binance.US sold 212 USDC at 0.8997 on 2023-03-03 01:47 while Kraken
implied 0.9997) is flagged. Off peg the bound widens (``cross_off_peg`` x the implied
cross's distance from 1), and a print moving toward the implied cross is never flagged:
on 2023-03-11 Binance.US lagged at 0.99 while Kraken implied 0.93, and its prints at
0.90-0.92 were the market catching up. WARNING: the bar is not quarantined.

Pure: numpy and the standard library.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from usdcarb.validation.domain.cross_venue import aligned_closes, departures
from usdcarb.validation.domain.model import (
    F64,
    I64,
    IMPLIED_CROSS,
    Bars,
    Finding,
    Thresholds,
    finding,
)

STABLES = frozenset({"USDC", "USDT", "DAI", "BUSD", "TUSD", "USDP", "PYUSD", "FDUSD"})


def pair_legs(symbol: str, fiat: str = "USD") -> tuple[str, str] | None:
    """For a stablecoin pair "A/B", the symbols of its legs ("A/USD", "B/USD")."""
    if "/" not in symbol:
        return None
    base, quote = symbol.split("/", 1)
    if base not in STABLES or quote not in STABLES:
        return None
    return f"{base}/{fiat}", f"{quote}/{fiat}"


def implied_close(times: I64, legs: Sequence[tuple[Bars, Bars]]) -> F64:
    """Median over leg pairs (numerator, denominator) of num close / den close at ``times``."""
    if not legs:
        return np.full(len(times), np.nan)
    if len(legs) == 1:
        num1, den1 = (aligned_closes(times, {"": b})[0] for b in legs[0])
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(num1 / den1, np.float64)
    num = aligned_closes(times, {str(i): n for i, (n, _) in enumerate(legs)})
    den = aligned_closes(times, {str(i): d for i, (_, d) in enumerate(legs)})
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmedian(num / den, axis=0), np.float64)


def implied_cross(bars: Bars, positions: I64, legs: Sequence[tuple[Bars, Bars]],
                  th: Thresholds) -> list[Finding]:
    """Flag closes of a stablecoin pair that depart from the implied cross."""
    out: list[Finding] = []
    if not len(bars) or not legs:
        return out
    implied = implied_close(bars.open_time_ms, legs)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.log(bars.close / implied)
    # Only prints count: a zero-volume bar repeats the last price and says nothing new.
    rows = np.flatnonzero(np.isfinite(d) & (bars.volume > 0))
    base, excess, limit = departures(
        d[rows], neighbours=th.deviation_neighbours, window=th.cross_window, z=th.cross_z,
        min_dev=th.cross_min, min_scale=th.cross_min_scale, long_window=th.cross_long_window,
        block_scale=True)
    # Peg-aware: off peg, books are stressed and venues disagree more, so the bound
    # widens with the implied cross's distance from 1; and a print that moves toward the
    # implied cross (a lagging venue catching up with a depeg) is never bad data.
    limit = limit + th.cross_off_peg * np.abs(np.log(implied[rows]))
    away = np.abs(d[rows]) > np.abs(base)
    hit = (excess > limit) & away & (positions[rows] >= 0)
    for k in np.flatnonzero(hit):
        j = int(rows[k])
        out.append(finding(IMPLIED_CROSS, int(positions[j]), int(bars.open_time_ms[j]),
                           f"expected a close within {limit[k]:.2%} of the local divergence "
                           f"({float(base[k]):+.2%}) from the implied cross "
                           f"{float(implied[j]):.6g}, got {float(bars.close[j])!r} "
                           f"({float(d[j]):+.2%})", excess[k], limit[k]))
    return out
