"""Faults from the replay server (429 bursts, 5xx, truncated, duplicated, shuffled and
corrupt pages) never fail a job, never corrupt stored data and never lose a bar silently."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tests.ingestion.conftest import MakeIngestion, job_request
from tests.ingestion.test_ingest_exchanges import assert_equal_to_source, stored

from usdcarb.replay.data import Catalog
from usdcarb.v1 import common_pb2 as cpb

pytestmark = pytest.mark.integration

START, END = "2023-03-10T00:00:00", "2023-03-12T00:00:00"


async def run(ing: Any, exchange: str, symbol: str) -> Any:
    job = await ing.stub.CreateIngestJob(job_request(exchange, symbol, START, END))
    return await ing.wait(job.name)


@pytest.mark.parametrize("exchange", ["binance", "coinbase", "okx", "bybit"])
async def test_429_bursts_and_5xx_are_absorbed_by_backoff(
        make_ingestion: MakeIngestion, catalog: Catalog, exchange: str) -> None:
    ing = await make_ingestion()
    symbol = {"coinbase": "BTC/USD", "bybit": "BTC/USDC"}.get(exchange, "USDC/USDT")
    ing.replay.set_faults(rate_limit=4, server_errors=3, latency_ms=2)
    done = await run(ing, exchange, symbol)
    assert done.outcome.result == cpb.Outcome.RESULT_OK, done
    assert done.job.stats.retries == 7
    statuses = ing.replay.stats.statuses[exchange]
    assert statuses[429] == 4 and statuses[503] == 3
    assert_equal_to_source(await stored(ing.pool, exchange, symbol, START, END), catalog,
                           exchange, symbol, START, END)


async def test_retries_exhausted_fail_the_job_with_the_reason(
        make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion(retry_attempts=3)
    ing.replay.set_faults(server_errors=10)
    done = await run(ing, "binance", "USDC/USDT")
    assert done.outcome.result == cpb.Outcome.RESULT_FAILED
    assert done.outcome.error.code == 14  # UNAVAILABLE: transient, worth a new job later
    assert "ExchangeNotAvailable after 3 attempts" in done.outcome.error.message


@pytest.mark.parametrize("fault", ["truncate", "shuffle", "garbage"])
async def test_misshapen_pages_still_store_exactly_the_source(
        make_ingestion: MakeIngestion, catalog: Catalog, fault: str) -> None:
    ing = await make_ingestion()
    if fault == "garbage":
        ing.replay.set_faults(corrupt=3, corrupt_kind="garbage")
    else:
        ing.replay.set_faults(**{fault: 5})
    for exchange, symbol in (("binance", "USDC/USDT"), ("coinbase", "USDT/USD")):
        done = await run(ing, exchange, symbol)
        assert done.outcome.result == cpb.Outcome.RESULT_OK, done
        assert_equal_to_source(await stored(ing.pool, exchange, symbol, START, END), catalog,
                               exchange, symbol, START, END)
        ing.replay.set_faults(**({"corrupt": 3, "corrupt_kind": "garbage"}
                                 if fault == "garbage" else {fault: 5}))


async def test_duplicated_bars_are_quarantined_and_stored_once(
        make_ingestion: MakeIngestion, catalog: Catalog) -> None:
    ing = await make_ingestion()
    ing.replay.set_faults(duplicate=4)
    done = await run(ing, "bybit", "BTC/USDC")
    assert done.outcome.result == cpb.Outcome.RESULT_OK
    assert_equal_to_source(await stored(ing.pool, "bybit", "BTC/USDC", START, END), catalog,
                           "bybit", "BTC/USDC", START, END)
    rejects = await ing.pool.fetch("SELECT rules, reason FROM ingest_rejects")
    # 3 copies per faulted page; copies beyond the job's range are not its business
    assert done.job.stats.bars_quarantined == len(rejects) >= 6
    assert all(r["rules"] == ["series.duplicate"] for r in rejects)


@pytest.mark.parametrize("validation", [False, True], ids=["own-rules", "validation-service"])
@pytest.mark.parametrize(("kind", "rule"), [
    ("nan", "bar.not_finite"), ("negative", "bar.negative"),
    ("high_below_low", "ohlc.inconsistent"), ("misaligned", "bar.misaligned"),
    ("future", "bar.future"),
])
async def test_a_corrupt_bar_is_quarantined_with_its_reason_and_nothing_else_is_lost(
        make_ingestion: MakeIngestion, catalog: Catalog, kind: str, rule: str,
        validation: bool) -> None:
    ing = await make_ingestion(validation=validation)
    ing.replay.set_faults(corrupt=1, corrupt_kind=kind)
    done = await run(ing, "binance", "BTC/USDC")
    assert done.outcome.result == cpb.Outcome.RESULT_OK
    rejects = await ing.pool.fetch("SELECT * FROM ingest_rejects")
    assert len(rejects) == 1 and rejects[0]["rules"] == [rule]
    assert rejects[0]["reason"].startswith("expected ")
    candles = await stored(ing.pool, "binance", "BTC/USDC", START, END)
    series = catalog.get("binance", "BTC/USDC", "1m")
    assert series is not None
    lo, hi = series.window(int(np.datetime64(START, "ms").astype(np.int64)),
                           int(np.datetime64(END, "ms").astype(np.int64)))
    src = dict(zip(series.ts_ms[lo:hi].tolist(), series.close[lo:hi].tolist(), strict=True))
    got = dict(zip(candles.open_time_ms.tolist(), candles.close.tolist(), strict=True))
    missing = set(src) - set(got)
    # Every stored bar is a source bar, unchanged; only the corrupted one is absent.
    assert all(src[t] == c for t, c in got.items())
    assert len(missing) == 1
    assert done.job.stats.bars_quarantined == 1
    if validation:  # the validation service quarantined it too, with its own reason
        q = await ing.quality.fetch("SELECT * FROM quarantined_bars")
        assert len(q) == 1
