"""Builders of validation requests for the tests."""

from __future__ import annotations

import pandas as pd
from google.protobuf import timestamp_pb2

from usdcarb.v1 import common_pb2 as cpb


def stamp(text: str) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(int(pd.Timestamp(text, tz="UTC").value // 1_000_000))
    return ts


def time_range(start: str, end: str) -> cpb.TimeRange:
    return cpb.TimeRange(start_time=stamp(start), end_time=stamp(end))


def batch_of(key: cpb.SeriesKey, frame: pd.DataFrame) -> cpb.CandleBatch:
    """A PACKED CandleBatch of a frame with open_time_ms, open, high, low, close, volume."""
    return cpb.CandleBatch(
        series=key, open_time_ms=frame.open_time_ms.tolist(), open=frame.open.tolist(),
        high=frame.high.tolist(), low=frame.low.tolist(), close=frame.close.tolist(),
        volume=frame.volume.tolist(), count=len(frame))
