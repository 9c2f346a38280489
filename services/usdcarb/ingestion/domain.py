"""Pure rules of ingestion: exchanges' limits, timeframe math, paging, resume, progress,
and the per-bar sanity rules every page passes before it can reach the database.

numpy and the standard library only; no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

TIMEFRAME_MS: dict[str, int] = {
    "1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000,
    "1d": 86_400_000,
}

F8 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int64]


class Paging(enum.Enum):
    """How an exchange's OHLCV endpoint pages through history."""

    FORWARD = "forward"  # since → the oldest `limit` bars from since (binance, bybit)
    WINDOW = "window"  # since → bars of [since, since + limit·tf) (coinbase, okx)
    RECENT = "recent"  # only the latest N bars exist (kraken: 720)


@dataclass(frozen=True)
class ExchangeSpec:
    """What ingestion needs to know about one exchange's OHLCV endpoint."""

    id: str
    display_name: str
    timeframes: tuple[str, ...]
    max_bars_per_request: int
    rate_limit_ms: int  # ccxt's own `rateLimit` for the exchange
    paging: Paging

    @property
    def full_history(self) -> bool:
        return self.paging is not Paging.RECENT


# rate limits are ccxt 4.5.90's `rateLimit` (ms between requests) per exchange.
EXCHANGES: dict[str, ExchangeSpec] = {s.id: s for s in (
    ExchangeSpec("binance", "Binance", ("1m", "5m", "15m", "1h", "4h", "1d"), 1000, 50,
                 Paging.FORWARD),
    ExchangeSpec("coinbase", "Coinbase Advanced Trade", ("1m", "5m", "15m", "1h", "1d"), 300,
                 34, Paging.WINDOW),
    ExchangeSpec("kraken", "Kraken", ("1m", "5m", "15m", "1h", "4h", "1d"), 720, 1000,
                 Paging.RECENT),
    ExchangeSpec("okx", "OKX", ("1m", "5m", "15m", "1h", "4h", "1d"), 300, 110, Paging.WINDOW),
    ExchangeSpec("bybit", "Bybit", ("1m", "5m", "15m", "1h", "4h", "1d"), 1000, 20,
                 Paging.FORWARD),
)}


def timeframe_ms(timeframe: str) -> int:
    """Return the bar length of ``timeframe`` in ms (KeyError if unknown)."""
    return TIMEFRAME_MS[timeframe]


def align_down(ms: int, tf_ms: int) -> int:
    return (ms // tf_ms) * tf_ms


def align_up(ms: int, tf_ms: int) -> int:
    return -((-ms) // tf_ms) * tf_ms


@dataclass(frozen=True)
class Bars:
    """OHLCV columns of one page, in the order received."""

    ts_ms: I8
    open: F8
    high: F8
    low: F8
    close: F8
    volume: F8

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[object]]) -> Bars:
        """Build columns from ccxt OHLCV rows ``[ts_ms, o, h, l, c, v]``; None becomes NaN.

        Raise ValueError for a row that is not six values with an integer time.
        """
        n = len(rows)
        if not n:
            e = np.empty(0, np.float64)
            return cls(np.empty(0, np.int64), e, e.copy(), e.copy(), e.copy(), e.copy())
        for row in rows:
            if len(row) != 6 or not isinstance(row[0], int) or isinstance(row[0], bool):
                raise ValueError(f"expected [int ms, o, h, l, c, v], got {row!r:.80}")
        # One C-level conversion (None -> NaN); epoch ms < 2**53 are exact in float64,
        # but times are taken from the integers themselves to be safe.
        vals = np.array(rows, dtype=np.float64)
        ts = np.fromiter((row[0] for row in rows), dtype=np.int64, count=n)
        return cls(ts, np.ascontiguousarray(vals[:, 1]), np.ascontiguousarray(vals[:, 2]),
                   np.ascontiguousarray(vals[:, 3]), np.ascontiguousarray(vals[:, 4]),
                   np.ascontiguousarray(vals[:, 5]))

    def take(self, mask_or_index: npt.NDArray[np.bool_] | I8) -> Bars:
        m = mask_or_index
        return Bars(self.ts_ms[m], self.open[m], self.high[m], self.low[m], self.close[m],
                    self.volume[m])

    @classmethod
    def empty(cls) -> Bars:
        return cls.from_rows([])

    @classmethod
    def concat(cls, parts: Sequence[Bars]) -> Bars:
        """Join pages in the order received (no sorting)."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
            "ts_ms", "open", "high", "low", "close", "volume")))


# -- paging -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PageRequest:
    """One OHLCV request: ccxt's ``since`` and ``limit``."""

    since_ms: int
    limit: int


def first_request(spec: ExchangeSpec, tf_ms: int, resume_ms: int) -> PageRequest:
    return PageRequest(align_up(resume_ms, tf_ms), spec.max_bars_per_request)


def next_since(spec: ExchangeSpec, tf_ms: int, request: PageRequest,
               last_received_ms: int | None) -> int | None:
    """Return where the next page starts, or None when the exchange has no more bars.

    A page that ends early (truncated, sparse) is continued from its last bar, never
    skipped past; an empty window moves on by one window; an empty forward page is the end.
    """
    if last_received_ms is not None and last_received_ms >= request.since_ms:
        return last_received_ms + tf_ms
    if spec.paging is Paging.WINDOW:
        return request.since_ms + request.limit * tf_ms
    return None


def resume_point(start_ms: int, cursor_ms: int | None, tf_ms: int) -> int:
    """Return the first bar time still to fetch: after the cursor, else the range start."""
    if cursor_ms is None or cursor_ms < start_ms:
        return align_up(start_ms, tf_ms)
    return cursor_ms + tf_ms


@dataclass(frozen=True)
class ProgressInfo:
    fraction: float
    done: int
    total: int
    unit: str
    message: str


def progress(start_ms: int, end_ms: int, position_ms: int, tf_ms: int,
             stored: int) -> ProgressInfo:
    """Progress through the range as bar slots covered (the grid), by the cursor."""
    total = max(0, (align_up(end_ms, tf_ms) - align_up(start_ms, tf_ms)) // tf_ms)
    done = min(total, max(0, (position_ms - align_up(start_ms, tf_ms)) // tf_ms))
    fraction = 1.0 if total == 0 else done / total
    return ProgressInfo(fraction, done, total, "bars",
                        f"{done}/{total} bar slots covered, {stored} bars stored")


def count_gaps(ts_ms: I8, tf_ms: int, previous_ms: int | None) -> tuple[int, int]:
    """Return (gaps, missing bars) between consecutive accepted bars (ascending, unique),
    counting from the previous stored bar when there is one."""
    if ts_ms.size == 0:
        return 0, 0
    seq = ts_ms if previous_ms is None else np.concatenate(([previous_ms], ts_ms))
    steps = np.diff(seq) // tf_ms - 1
    missing = steps[steps > 0]
    return int(missing.size), int(missing.sum())


# -- per-bar sanity ---------------------------------------------------------------------

@dataclass(frozen=True)
class Rejection:
    index: int
    rules: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Verdict:
    """Which bars of a page may be stored, and why the others may not."""

    accepted: npt.NDArray[np.bool_]
    rejections: tuple[Rejection, ...]

    @property
    def accepted_count(self) -> int:
        return int(self.accepted.sum())


def sanity_check(bars: Bars, tf_ms: int, now_ms: int) -> Verdict:
    """Apply the per-bar rules that guard the table: finite, non-negative, OHLC
    consistent, aligned to the timeframe, closed by ``now_ms``, and unique in the page
    (the first copy of a time is kept). Messages read "expected X, got Y"."""
    n = len(bars)
    # Vectorised: Python work only for the flagged bars (a batch is up to 50k bars).
    accepted = np.ones(n, bool)
    flagged: dict[int, tuple[list[str], list[str]]] = {}
    o, h, lo, c, v, t = bars.open, bars.high, bars.low, bars.close, bars.volume, bars.ts_ms
    prices = np.stack([o, h, lo, c]) if n else np.empty((4, 0))

    def flag(mask: npt.NDArray[np.bool_], rule: str, what: str) -> None:
        idx = np.flatnonzero(mask)
        accepted[idx] = False
        for i in idx.tolist():
            rules, reasons = flagged.setdefault(i, ([], []))
            rules.append(rule)
            reasons.append(f"expected {what}, got o={float(o[i])!r} h={float(h[i])!r} "
                           f"l={float(lo[i])!r} c={float(c[i])!r} v={float(v[i])!r} "
                           f"t={int(t[i])}")

    finite = np.isfinite(prices).all(axis=0) & np.isfinite(v)
    flag(~finite, "bar.not_finite", "finite prices and volume")
    with np.errstate(invalid="ignore"):
        flag(finite & ((prices < 0).any(axis=0) | (v < 0)), "bar.negative",
             "non-negative prices and volume")
        ok_hl = (h >= lo) & (h >= np.maximum(o, c)) & (lo <= np.minimum(o, c))
    flag(finite & ~ok_hl, "ohlc.inconsistent", "low <= open, close <= high")
    flag(t % tf_ms != 0, "bar.misaligned", f"open time a multiple of {tf_ms} ms")
    flag(t + tf_ms > now_ms, "bar.future", f"a bar closed by {now_ms} ms")
    if n:
        _, first = np.unique(t, return_index=True)
        dup = np.ones(n, bool)
        dup[first] = False
        flag(dup, "series.duplicate", "one bar per open time")
    rejections = tuple(Rejection(i, tuple(rules), reasons[0])
                       for i, (rules, reasons) in sorted(flagged.items()))
    return Verdict(accepted, rejections)


def in_range(bars: Bars, lower_ms: int, upper_ms: int) -> npt.NDArray[np.bool_]:
    """Mask of bars with ``lower_ms <= ts < upper_ms``."""
    return np.asarray((bars.ts_ms >= lower_ms) & (bars.ts_ms < upper_ms), dtype=bool)
