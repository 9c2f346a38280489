"""The daily data-quality digest: built from real tables, delivered like any event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notification.conftest import Env
from testkit import eventually
from usdcarb.notification import emails
from usdcarb.notification.digest import (
    DigestScheduler,
    QualityReader,
    SeriesQuality,
    build_digest,
    timeframe_ms,
)
from usdcarb.notification.model import StoredEvent
from usdcarb.platform import events
from usdcarb.v1 import notification_pb2 as pb

DAY = datetime(2023, 3, 10, tzinfo=UTC)


def quality(symbol: str, bars: int, **kw: Any) -> SeriesQuality:
    values = {"exchange": "binance", "symbol": symbol, "timeframe": "1m", "bars": bars,
              "expected_bars": 1440, "gaps": 0, "missing_bars": 0, "quarantined_bars": 0}
    return SeriesQuality(**(values | kw))


@pytest.mark.unit
def test_the_digest_ranks_series_worst_first_and_warns_on_trouble() -> None:
    event = build_digest(DAY, [quality("USDC/USDT", 1440),
                               quality("USDT/USD", 1400, gaps=1, missing_bars=40)])
    assert event.type == "EVENT_TYPE_DATA_QUALITY_DIGEST"
    assert event.subject == "reports/data-quality/2023-03-10"
    assert event.severity == "SEVERITY_WARNING"
    assert [s["symbol"] for s in event.data["series"]] == ["USDT/USD", "USDC/USDT"]
    assert event.data["series"][0]["coverage"] == pytest.approx(1400 / 1440, abs=1e-6)
    assert "1 with gaps" in event.summary
    clean = build_digest(DAY, [quality("USDC/USDT", 1440)])
    assert clean.severity == "SEVERITY_INFO"
    mail = emails.render(StoredEvent(id="1-0", event=event))
    assert "Daily data-quality digest" in mail.subject
    assert "USDT/USD" in mail.text and "expected_bars" in mail.text and "<h3>Series" in mail.html
    assert timeframe_ms("4h") == 14_400_000 and timeframe_ms("weird") == 0


@pytest.mark.integration
async def test_the_digest_reads_the_day_and_reaches_subscribed_channels_once(
        env: Env, service_pool: Any) -> None:
    market = await service_pool("ingestion")
    validation = await service_pool("validation")
    mschema = await market.fetchval("SELECT current_schema()")
    vschema = await validation.fetchval("SELECT current_schema()")
    bars = [("binance", "USDC/USDT", "1m", DAY + timedelta(minutes=i), 1, 1, 1, 1, 1)
            for i in range(1440) if not 100 <= i < 130]
    bars.append(("binance", "USDC/USDT", "1m", DAY + timedelta(days=1), 1, 1, 1, 1, 1))  # next day
    await market.executemany(
        "INSERT INTO market_data (exchange, symbol, timeframe, ts, open, high, low, close, "
        "volume) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", bars)
    await validation.execute(
        "INSERT INTO data_gaps (exchange, symbol, timeframe, start_time, end_time, missing_bars) "
        "VALUES ('binance', 'USDC/USDT', '1m', $1, $2, 30)",
        DAY + timedelta(minutes=100), DAY + timedelta(minutes=130))
    await validation.execute(
        "INSERT INTO quarantined_bars (exchange, symbol, timeframe, open_time_ms, rules, reason) "
        "VALUES ('kraken', 'USDC/USD', '1m', $1, '{HIGH_LOW}', 'high below low')",
        int((DAY + timedelta(hours=3)).timestamp() * 1000))
    reader = QualityReader(env.pool, market_table=f"{mschema}.market_data",
                           validation_schema=vschema)
    day = {(s.exchange, s.symbol): s for s in await reader.day(DAY)}
    assert day[("binance", "USDC/USDT")] == SeriesQuality(
        exchange="binance", symbol="USDC/USDT", timeframe="1m", bars=1410, expected_bars=1440,
        gaps=1, missing_bars=30, quarantined_bars=0)
    assert day[("kraken", "USDC/USD")].quarantined_bars == 1

    receiver = await env.receiver()
    await env.webhook(receiver, event_types=[pb.EVENT_TYPE_DATA_QUALITY_DIGEST])
    await env.redis.delete("test:digest:2023-03-10")

    async def publish(event: events.DomainEvent) -> str:
        return await events.publish(env.redis, event, stream=env.settings.events_stream)
    replicas = [DigestScheduler(env.redis, reader, publish, key_prefix="test:digest")
                for _ in range(2)]
    published = [await r.publish_day(DAY) for r in replicas]
    assert published[0] is not None and published[1] is None, "once per deployment"
    [got] = await eventually(lambda: receiver.verified)
    assert got.payload is not None and got.payload["id"] == published[0]
    assert got.payload["type"] == "EVENT_TYPE_DATA_QUALITY_DIGEST"
    assert got.payload["data"]["series_count"] == 2
