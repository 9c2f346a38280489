"""Market data for backtest service tests: SYNTHETIC two-venue USDC/USDT 1m series.

Venue "venuea" and "venueb" are not real exchanges: both are derived from the real
Binance.US USDC/USDT 1m closes of March 2023 (shared/data, the SVB depeg week) with
independent noise and random gaps, so the spread between them has realistic levels
and dynamics while every bar is clearly synthetic (source "synthetic:binanceus").
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from testkit import SHARED_DATA, require_shared_data
from usdcarb.platform.testing import bearer

DATA = SHARED_DATA / "iaqf2026_dhruvk1432" / "data_raw" / "binance_usdcusdt.parquet"
START = datetime(2023, 3, 10, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
SYMBOL = "USDC/USDT"
VENUES = ("venuea", "venueb")
SOURCE = "synthetic:binanceus"


@cache
def real_closes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binance.US USDC/USDT 1m open times (ms), closes and volumes from START on."""
    df = pd.read_parquet(require_shared_data(DATA), columns=["open_time", "close", "volume"])
    df = df[df["open_time"] >= START_MS]
    return (df["open_time"].to_numpy(np.int64), df["close"].to_numpy(np.float64),
            df["volume"].to_numpy(np.float64))


def synthetic_pair(n: int, *, seed: int = 7, gap_rate: float = 0.02,
                   start_ms: int = START_MS) -> dict[str, dict[str, np.ndarray]]:
    """Two venues' bars (ts ms, close, volume) over ``n`` minutes from ``start_ms``.

    Beyond the real slice (about 16,000 bars) the closes repeat it, shifted in time.
    """
    _, c_real, v_real = real_closes()
    reps = -(-n // len(c_real))
    base = np.tile(c_real, reps)[:n]
    vol = np.tile(v_real, reps)[:n] + 1000.0
    rng = np.random.default_rng(seed)
    ts = start_ms + np.arange(n, dtype=np.int64) * 60_000
    out = {}
    for k, venue in enumerate(VENUES):
        bursts = rng.standard_normal(n) * (0.0004 if k else 0.0002)
        bursts += (rng.random(n) < 0.01) * rng.choice([-1, 1], n) * 0.0025
        close = np.round(base * (1 + bursts), 5)
        keep = rng.random(n) >= gap_rate
        keep[0] = True
        out[venue] = {"ts": ts[keep], "close": close[keep],
                      "volume": np.round(vol[keep] * (0.5 + rng.random(keep.sum())), 2)}
    return out


async def load_bars(conn: Any, table: str, venue: str, symbol: str,
                    bars: dict[str, np.ndarray], timeframe: str = "1m") -> int:
    """COPY bars into a market_data table (schema-qualified name)."""
    schema, _, name = table.rpartition(".")
    c = bars["close"]
    times = [datetime.fromtimestamp(int(ms) / 1000, UTC) for ms in bars["ts"]]
    records = [(venue, symbol, timeframe, t, float(x), float(x), float(x), float(x), float(v),
                1, SOURCE) for t, x, v in zip(times, c, bars["volume"], strict=True)]
    await conn.copy_records_to_table(
        name, schema_name=schema or None, records=records,
        columns=["exchange", "symbol", "timeframe", "ts", "open", "high", "low", "close",
                 "volume", "provenance", "source"])
    return len(records)


def caller(sub: str = "alice") -> tuple[tuple[str, str], ...]:
    """Metadata with a verified analyst token for ``sub``."""
    return bearer(sub, ("analyst",))


def spread_params(**overrides: Any) -> dict[str, Any]:
    return {"crossExchangeSpread": {
        "symbol": SYMBOL, "venueA": VENUES[0], "venueB": VENUES[1], "entryBps": 15,
        "exitBps": 3, "quantity": 10_000, **overrides}}


def venue_configs(**overrides: Any) -> list[dict[str, Any]]:
    """Proto3 JSON VenueConfigs for both venues: fees, slippage, balances."""
    base = {"takerFeeBps": 1.0, "makerFeeBps": 0.5, "slippage": {"fixedBps": 0.5},
            "initialBalances": [{"asset": "USDC", "amount": 1_000_000},
                                {"asset": "USDT", "amount": 1_000_000}], **overrides}
    return [{"venue": v, **base} for v in VENUES]


def config_json(start_ms: int, end_ms: int, **overrides: Any) -> dict[str, Any]:
    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")

    return {"range": {"startTime": iso(start_ms), "endTime": iso(end_ms)}, "timeframe": "1m",
            "venues": venue_configs(), "fillPolicy": "FILL_POLICY_NEXT_BAR",
            "quoteAsset": "USDT", **overrides}
