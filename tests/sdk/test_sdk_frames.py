"""DataFrame converters on constructed messages, in both column layouts."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from usdcarb_sdk import v1
from usdcarb_sdk.frames import candles_to_frame, equity_to_frame, to_frame, trades_to_frame

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000
TIMES = [T0, T0 + 60_000, T0 + 120_000]
OPEN, HIGH, LOW, CLOSE, VOLUME = ([1.0, 1.1, 1.2], [1.5, 1.6, 1.7], [0.9, 1.0, 1.1],
                                  [1.2, 1.3, 1.4], [10.0, 20.0, 30.0])
PROVENANCE = [v1.Provenance.ORIGINAL, v1.Provenance.FILLED_FROM_VENUE, v1.Provenance.ORIGINAL]
SERIES = v1.SeriesKey(exchange="binance", symbol="USDC/USDT", timeframe="1m")


def packed(*, provenance: bool) -> v1.CandleBatch:
    return v1.CandleBatch(
        series=SERIES, open_time_ms=TIMES, open=OPEN, high=HIGH, low=LOW, close=CLOSE,
        volume=VOLUME, count=3,
        provenance=PROVENANCE if provenance else [],
        source_index=[0, 1, 0] if provenance else [],
        sources=["binance", "kraken"] if provenance else [])


def le_bytes(*, provenance: bool) -> v1.CandleBatch:
    def f8(values: list[float]) -> bytes:
        return np.asarray(values, "<f8").tobytes()

    columns = v1.CandleColumns(
        open_time_ms=np.asarray(TIMES, "<i8").tobytes(), open=f8(OPEN), high=f8(HIGH),
        low=f8(LOW), close=f8(CLOSE), volume=f8(VOLUME),
        provenance=bytes(int(p) for p in PROVENANCE) if provenance else b"",
        source_index=np.asarray([0, 1, 0], "<i4").tobytes() if provenance else b"")
    return v1.CandleBatch(series=SERIES, columns=columns, count=3,
                          sources=["binance", "kraken"] if provenance else [])


@pytest.mark.parametrize("make", [packed, le_bytes], ids=["packed", "le_bytes"])
def test_candles_frame_has_utc_index_and_float_columns(make: object) -> None:
    frame = make(provenance=False)  # type: ignore[operator]
    df = candles_to_frame(frame)
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC"
    assert df.index[1] == pd.Timestamp(T0 + 60_000, unit="ms", tz="UTC")
    assert df["close"].tolist() == CLOSE and df.dtypes.eq(np.float64).all()
    assert df.attrs["series"] == {"exchange": "binance", "symbol": "USDC/USDT", "timeframe": "1m"}


@pytest.mark.parametrize("make", [packed, le_bytes], ids=["packed", "le_bytes"])
def test_candles_frame_carries_provenance_and_source(make: object) -> None:
    df = candles_to_frame(make(provenance=True))  # type: ignore[operator]
    assert df["provenance"].tolist() == ["ORIGINAL", "FILLED_FROM_VENUE", "ORIGINAL"]
    assert df["source"].tolist() == ["binance", "kraken", "binance"]


def test_both_layouts_give_the_same_frame() -> None:
    pd.testing.assert_frame_equal(candles_to_frame(packed(provenance=True)),
                                  candles_to_frame(le_bytes(provenance=True)))


def test_candles_frame_rejects_a_short_column() -> None:
    batch = packed(provenance=False)
    batch.volume = [1.0]
    with pytest.raises(ValueError, match="expected 3 values in column 'volume', got 1"):
        candles_to_frame(batch)


def test_empty_batch_gives_an_empty_frame() -> None:
    df = candles_to_frame(v1.CandleBatch())
    assert df.empty and list(df.columns) == ["open", "high", "low", "close", "volume"]


@pytest.mark.parametrize("layout", ["packed", "le_bytes"])
def test_equity_frame(layout: str) -> None:
    equity, drawdown, exposure = [100.0, 101.0, 99.0], [0.0, 0.0, 0.0198], [0.0, 1.0, 0.5]
    if layout == "packed":
        curve = v1.EquityCurve(time_ms=TIMES, equity=equity, drawdown=drawdown,
                               exposure=exposure, count=3)
    else:
        curve = v1.EquityCurve(
            time_ms_le=np.asarray(TIMES, "<i8").tobytes(),
            equity_le=np.asarray(equity, "<f8").tobytes(),
            drawdown_le=np.asarray(drawdown, "<f8").tobytes(),
            exposure_le=np.asarray(exposure, "<f8").tobytes(), count=3)
    df = equity_to_frame(curve)
    assert list(df.columns) == ["equity", "drawdown", "exposure"]
    assert df.index.name == "time" and str(df.index.tz) == "UTC"
    assert df["drawdown"].iloc[-1] == pytest.approx(0.0198)


def test_trades_frame_indexes_fills_by_time() -> None:
    at = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    trades = [
        v1.Trade(time=at, venue="binance", symbol="USDC/USDT", side=v1.Side.BUY,
                 quantity=10.0, price=0.999, round_trip=1),
        v1.Trade(time=at + dt.timedelta(minutes=1), venue="kraken", symbol="USDC/USDT",
                 side=v1.Side.SELL, quantity=10.0, price=1.001, round_trip=1),
    ]
    df = trades_to_frame(trades)
    assert df.index.name == "time" and str(df.index.tz) == "UTC"
    assert df["side"].tolist() == ["BUY", "SELL"]
    assert df["price"].tolist() == [0.999, 1.001]
    assert df["fee"].tolist() == [0.0, 0.0]  # defaults included


def test_trades_frame_of_no_trades_is_empty_with_columns() -> None:
    df = trades_to_frame([])
    assert df.empty and "price" in df.columns and isinstance(df.index, pd.DatetimeIndex)


def test_to_frame_flattens_nested_messages_and_names_enums() -> None:
    strategies = [v1.Strategy(name="strategies/a", kind=v1.StrategyKind.PEG_REVERSION,
                              labels={"team": "x"})]
    df = to_frame(strategies)
    assert df.loc[0, "name"] == "strategies/a"
    assert df.loc[0, "kind"] == "PEG_REVERSION"
    assert df.loc[0, "labels.team"] == "x"
