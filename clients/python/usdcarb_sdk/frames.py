"""Turn results into pandas DataFrames: candles, equity curves, trades, any messages.

Columnar messages come in two layouts (``ColumnLayout``): PACKED repeated fields, or
LE_BYTES little-endian arrays, read without copying through ``np.frombuffer``. Times
become a UTC ``DatetimeIndex``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import betterproto2
import numpy as np
import numpy.typing as npt
import pandas as pd

from usdcarb_sdk._gen.usdcarb import v1

__all__ = ["candles_to_frame", "equity_to_frame", "to_frame", "trades_to_frame"]

logger = logging.getLogger(__name__)

CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")
EQUITY_COLUMNS = ("equity", "drawdown", "exposure")


def _time_index(ms: npt.NDArray[np.int64], name: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ms, unit="ms", utc=True), name=name)


def _column(values: Sequence[float] | bytes | npt.NDArray[Any], dtype: str, count: int,
            name: str) -> npt.NDArray[Any]:
    """Return one column as an array of ``count`` values, from a list or LE bytes."""
    array = (np.frombuffer(values, dtype) if isinstance(values, bytes)
             else np.asarray(values, dtype=np.dtype(dtype)))
    if len(array) != count:
        raise ValueError(f"expected {count} values in column {name!r}, got {len(array)}")
    return array


def _enum_column(codes: npt.NDArray[Any], enum: type[betterproto2.Enum]) -> pd.Categorical:
    """Return enum numbers as a categorical of member names (unknown numbers become NaN)."""
    members = sorted(enum, key=lambda member: member.value)
    lookup = {member.value: i for i, member in enumerate(members)}
    positions = np.array([lookup.get(int(code), -1) for code in codes], dtype=np.int64)
    return pd.Categorical.from_codes(positions, categories=[m.name for m in members])


def candles_to_frame(batch: v1.CandleBatch) -> pd.DataFrame:
    """Return a batch of candles as a DataFrame indexed by bar open time (UTC).

    Columns are open, high, low, close and volume (float64), plus ``provenance`` and
    ``source`` (categoricals) when the batch carries them. The series key is kept in
    ``frame.attrs["series"]``.
    """
    columns = batch.columns
    le = columns is not None and len(columns.open_time_ms) > 0
    if le:
        assert columns is not None
        count = len(columns.open_time_ms) // 8
        times = _column(columns.open_time_ms, "<i8", count, "open_time_ms")
        data: dict[str, Any] = {name: _column(getattr(columns, name), "<f8", count, name)
                                for name in CANDLE_COLUMNS}
        provenance = np.frombuffer(columns.provenance, "u1")
        sources = np.frombuffer(columns.source_index, "<i4")
    else:
        count = len(batch.open_time_ms)
        times = _column(batch.open_time_ms, "<i8", count, "open_time_ms")
        data = {name: _column(getattr(batch, name), "<f8", count, name)
                for name in CANDLE_COLUMNS}
        provenance = np.asarray(batch.provenance, dtype=np.uint8)
        sources = np.asarray(batch.source_index, dtype=np.int32)
    if batch.count and batch.count != count:
        raise ValueError(f"expected {batch.count} bars as the batch's count says, got {count}")
    if len(provenance):
        data["provenance"] = _enum_column(_column(provenance, "u1", count, "provenance"),
                                          v1.Provenance)
    if len(sources):
        indices = _column(sources, "<i4", count, "source_index")
        data["source"] = pd.Categorical.from_codes(indices, categories=list(batch.sources))
    frame = pd.DataFrame(data, index=_time_index(times, "open_time"))
    if batch.series is not None:
        frame.attrs["series"] = batch.series.to_dict(casing=betterproto2.Casing.SNAKE)
    return frame


def equity_to_frame(curve: v1.EquityCurve) -> pd.DataFrame:
    """Return an equity curve as a DataFrame (equity, drawdown, exposure, and baseline
    when the curve carries the hold baseline) indexed by time."""
    le = len(curve.time_ms_le) > 0
    if le:
        count = len(curve.time_ms_le) // 8
        times = _column(curve.time_ms_le, "<i8", count, "time_ms")
        data = {name: _column(getattr(curve, f"{name}_le"), "<f8", count, name)
                for name in EQUITY_COLUMNS}
    else:
        count = len(curve.time_ms)
        times = _column(curve.time_ms, "<i8", count, "time_ms")
        data = {name: _column(getattr(curve, name), "<f8", count, name)
                for name in EQUITY_COLUMNS}
    if curve.count and curve.count != count:
        raise ValueError(f"expected {curve.count} points as the curve's count says, got {count}")
    # The hold baseline (same balances, never traded) at the same bars, when the server
    # sends it (engine 2.x).
    baseline = curve.baseline_le if le else curve.baseline
    if len(baseline):
        data["baseline"] = _column(baseline, "<f8", count, "baseline")
    return pd.DataFrame(data, index=_time_index(times, "time"))


def _plain(value: Any) -> Any:
    """Return ``value`` with enum members replaced by their names, at any depth."""
    if isinstance(value, betterproto2.Enum):
        return value.name
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def to_frame(messages: Iterable[betterproto2.Message]) -> pd.DataFrame:
    """Return one row per message, nested messages flattened to dotted columns.

    Enums become their names, Timestamps aware datetimes, Durations timedeltas;
    default values are included so every row has every column.
    """
    records = [_plain(m.to_dict(output_format=betterproto2.OutputFormat.PYTHON,
                                casing=betterproto2.Casing.SNAKE, include_default_values=True))
               for m in messages]
    return pd.json_normalize(records, sep=".")


def trades_to_frame(trades: Iterable[v1.Trade]) -> pd.DataFrame:
    """Return backtest fills as a DataFrame indexed by fill time (UTC)."""
    frame = to_frame(trades)
    if frame.empty:
        names = [field.name for field in dataclasses.fields(v1.Trade)]
        return pd.DataFrame(columns=[n for n in names if n != "time"],
                            index=pd.DatetimeIndex([], tz="UTC", name="time"))
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame["side"] = frame["side"].astype("category")
    return frame.set_index("time")
