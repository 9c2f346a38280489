"""The ccxt pipeline with the validation domain's rules in-process (issue 17): bars judged
in ingestion, one ValidateRange per job on the service (after the job), which still
records the gaps."""

from __future__ import annotations

import numpy as np
import pytest
from tests.ingestion.conftest import MakeIngestion, job_request
from tests.ingestion.test_ingest_exchanges import assert_equal_to_source, stored
from tests.testkit import eventually

from usdcarb.replay.data import Catalog
from usdcarb.v1 import common_pb2 as cpb

pytestmark = pytest.mark.integration


async def test_inprocess_rules_quarantine_and_the_service_records_the_range(
        make_ingestion: MakeIngestion, catalog: Catalog) -> None:
    ing = await make_ingestion(validation=True, validation_inprocess=True)
    start, end = "2023-03-10T00:00:00", "2023-03-12T00:00:00"
    job = await ing.stub.CreateIngestJob(job_request("coinbase", "USDT/USD", start, end))
    last = await ing.wait(job.name)
    assert last.outcome.result == cpb.Outcome.RESULT_OK, last
    candles = await stored(ing.pool, "coinbase", "USDT/USD", start, end)
    assert_equal_to_source(candles, catalog, "coinbase", "USDT/USD", start, end)
    assert last.job.stats.bars_quarantined == 0
    # Nothing went through ValidateCandles; ValidateRange, after the job, records the gaps.
    want = int((np.diff(candles.open_time_ms) > 60_000).sum())
    assert want > 0

    async def recorded() -> bool:
        return bool(await ing.quality.fetchval("SELECT count(*) FROM data_gaps") == want)

    await eventually(recorded, within_s=30, interval=0.1)
    assert await ing.quality.fetchval("SELECT count(*) FROM quarantined_bars") == 0

    # A consistent bar far off the market: only the domain's series rules catch it.
    ing.replay.set_faults(corrupt=1, corrupt_kind="spike", exchange="binance")
    job = await ing.stub.CreateIngestJob(job_request("binance", "BTC/USDC", start, end))
    last = await ing.wait(job.name)
    assert last.outcome.result == cpb.Outcome.RESULT_OK, last
    assert last.job.stats.bars_quarantined == 1
    rejects = await ing.pool.fetch("SELECT rules, reason FROM ingest_rejects")
    assert [r["rules"] for r in rejects] == [["series.spike"]]
    assert rejects[0]["reason"].startswith("expected ")
