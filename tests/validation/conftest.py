"""Fixtures of the validation tests: the ingestion hypertable and the validation schema
on real PostgreSQL + TimescaleDB, an in-process server, and loaders of the real data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np
import pandas as pd
import pytest

from testkit import SHARED_DATA, require_shared_data
from usdcarb.platform.events import DomainEvent
from usdcarb.platform.testing import start_in_process
from usdcarb.v1 import validation_pb2_grpc
from usdcarb.validation.main import SERVICE, build

DATA = SHARED_DATA
DEPEG = DATA / "iaqf2026_dhruvk1432" / "data_raw"
BYBIT = DATA / "iaqf2026_nl2992" / "data" / "cross_exchange" / "bybit_btcusdc_1min.parquet"


def real_frame(name: str) -> pd.DataFrame:
    """One real series as open_time_ms, open, high, low, close, volume (read from ../shared)."""
    path = BYBIT if name == "bybit_btcusdc" else DEPEG / f"{name}.parquet"
    require_shared_data(path)
    df = pd.read_parquet(path)
    out = df[["open", "high", "low", "close", "volume"]].astype(float)
    out.insert(0, "open_time_ms", df.index.as_unit("ms").asi8)
    return out.reset_index(drop=True)


class FakeEvents:
    """EventSink that keeps what was published."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    async def publish(self, event: DomainEvent) -> None:
        self.events.append(event)


@dataclass
class Env:
    market: asyncpg.Pool
    table: str
    quality: asyncpg.Pool
    events: FakeEvents
    stub: Any = None
    schema: str = ""
    loaded: list[str] = field(default_factory=list)
    address: str = ""

    async def load(self, exchange: str, symbol: str, frame: pd.DataFrame, *,
                   timeframe: str = "1m", provenance: int = 1, source: str = "") -> None:
        """Store bars into the hypertable as ingestion would (COPY)."""
        ts = pd.to_datetime(frame["open_time_ms"].to_numpy(np.int64), unit="ms", utc=True)
        records = list(zip(
            [exchange] * len(frame), [symbol] * len(frame), [timeframe] * len(frame),
            ts.to_pydatetime(), *(frame[c].to_numpy(float).tolist() for c in (
                "open", "high", "low", "close", "volume")),
            [provenance] * len(frame), [source] * len(frame), strict=True))
        await self.market.copy_records_to_table(
            "market_data", schema_name=self.schema, records=records,
            columns=["exchange", "symbol", "timeframe", "ts", "open", "high", "low", "close",
                     "volume", "provenance", "source"])




@pytest.fixture
async def env(service_pool: Callable[[str], Awaitable[asyncpg.Pool]]) -> AsyncIterator[Env]:
    market = await service_pool("ingestion")
    quality = await service_pool("validation")
    schema = await market.fetchval("SELECT current_schema()")
    events = FakeEvents()
    e = Env(market, f"{schema}.market_data", quality, events, schema=schema)
    register = build(quality, events, table=e.table)
    async with await start_in_process([SERVICE], register) as server:
        e.address = server.address
        async with server.channel() as channel:
            e.stub = validation_pb2_grpc.ValidationServiceStub(channel)
            yield e
