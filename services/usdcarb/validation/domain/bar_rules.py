"""Rules on one bar alone: finite, non-negative, OHLC consistent, aligned, not future."""

from __future__ import annotations

import numpy as np

from usdcarb.validation.domain.model import (
    FUTURE,
    HIGH_BELOW_BODY,
    HIGH_BELOW_LOW,
    INCOMPLETE,
    LOW_ABOVE_BODY,
    MISALIGNED,
    NEGATIVE,
    NON_FINITE,
    ZERO_PRICE,
    Bars,
    Finding,
    Thresholds,
    finding,
    fmt_ms,
)

FIELDS = ("open", "high", "low", "close", "volume")
PRICES = ("open", "high", "low", "close")


def check_bars(bars: Bars, tf_ms: int, now_ms: int, th: Thresholds) -> list[Finding]:
    """Return the findings of every per-bar rule; an index may appear under several rules."""
    out: list[Finding] = []
    ts = bars.open_time_ms
    cols = {f: getattr(bars, f) for f in FIELDS}
    finite = np.ones(len(bars), bool)
    for name in FIELDS:
        finite &= np.isfinite(cols[name])
    for i in np.flatnonzero(~finite):
        name = next(f for f in FIELDS if not np.isfinite(cols[f][i]))
        out.append(finding(NON_FINITE, int(i), ts[i],
                           f"expected a finite {name}, got {float(cols[name][i])!r}",
                           cols[name][i], 0.0))
    with np.errstate(invalid="ignore"):
        for name in FIELDS:
            for i in np.flatnonzero(finite & (cols[name] < 0)):
                out.append(finding(NEGATIVE, int(i), ts[i],
                                   f"expected {name} >= 0, got {float(cols[name][i])!r}",
                                   cols[name][i], 0.0))
        for name in PRICES:
            for i in np.flatnonzero(finite & (cols[name] == 0)):
                out.append(finding(ZERO_PRICE, int(i), ts[i],
                                   f"expected a positive {name}, got 0.0", 0.0, 0.0))
        o, h, lo, c = bars.open, bars.high, bars.low, bars.close
        for i in np.flatnonzero(finite & (h < lo)):
            out.append(finding(HIGH_BELOW_LOW, int(i), ts[i],
                               f"expected high >= low {float(lo[i])!r}, got high {float(h[i])!r}",
                               h[i], lo[i]))
        body_hi, body_lo = np.maximum(o, c), np.minimum(o, c)
        for i in np.flatnonzero(finite & (h < body_hi)):
            out.append(finding(HIGH_BELOW_BODY, int(i), ts[i],
                               f"expected high >= max(open, close) {float(body_hi[i])!r}, "
                               f"got high {float(h[i])!r}", h[i], body_hi[i]))
        for i in np.flatnonzero(finite & (lo > body_lo)):
            out.append(finding(LOW_ABOVE_BODY, int(i), ts[i],
                               f"expected low <= min(open, close) {float(body_lo[i])!r}, "
                               f"got low {float(lo[i])!r}", lo[i], body_lo[i]))
    off = ts % tf_ms
    for i in np.flatnonzero(off != 0):
        out.append(finding(MISALIGNED, int(i), ts[i],
                           f"expected an open time on the {tf_ms} ms grid, got {int(ts[i])} "
                           f"({int(off[i])} ms past {fmt_ms(int(ts[i] - off[i]))})",
                           off[i], 0.0))
    limit = now_ms + th.future_tolerance_ms
    future = ts > limit
    for i in np.flatnonzero(future):
        out.append(finding(FUTURE, int(i), ts[i],
                           f"expected an open time <= now {fmt_ms(now_ms)}, "
                           f"got {fmt_ms(int(ts[i]))}", ts[i], limit))
    for i in np.flatnonzero(~future & (ts + tf_ms > now_ms)):
        out.append(finding(INCOMPLETE, int(i), ts[i],
                           f"expected a closed bar (closing by {fmt_ms(now_ms)}), got one "
                           f"closing at {fmt_ms(int(ts[i] + tf_ms))}", ts[i] + tf_ms, now_ms))
    return out
