"""The ccxt pipeline's default validation (issue 17): the validation service's own
application runs in the ingestion process, and records exactly what ValidateCandles
(record=true) on the service records for the same job — stored bars, findings,
quarantine, gaps, series verdicts — with no ValidateCandles call at all."""

from __future__ import annotations

from typing import Any

import pytest
from tests.ingestion.conftest import MakeIngestion, job_request
from tests.ingestion.test_ingest_exchanges import assert_equal_to_source, stored

from usdcarb.ingestion.validation import InProcessValidator, RemoteValidator
from usdcarb.replay.data import Catalog
from usdcarb.v1 import common_pb2 as cpb

pytestmark = pytest.mark.integration

START, END = "2023-03-10T00:00:00", "2023-03-12T00:00:00"
RECORDS = {
    "quarantined_bars": "SELECT exchange, symbol, open_time_ms, rules, reason "
                        "FROM quarantined_bars ORDER BY 1, 2, 3",
    "data_validation_issues": "SELECT exchange, symbol, bar_time, rule, severity, message "
                              "FROM data_validation_issues ORDER BY 1, 2, 3, 4",
    "data_gaps": "SELECT exchange, symbol, start_time, end_time, missing_bars, state "
                 "FROM data_gaps ORDER BY 1, 2, 3",
    "series_verdicts": "SELECT exchange, symbol, verdict, start_time, end_time, bars, reason "
                       "FROM series_verdicts ORDER BY 1, 2, 4, 3",
}


async def _run(make_ingestion: MakeIngestion, catalog: Catalog, *, inprocess: bool
               ) -> dict[str, Any]:
    """Two jobs: a series with real gaps, and one whose first page carries a spike."""
    kw = {} if inprocess else {"validation_inprocess": False}  # default: in-process
    ing = await make_ingestion(validation=True, **kw)
    assert ing.worker is not None
    assert isinstance(ing.worker._validator,  # which path ran
                      InProcessValidator if inprocess else RemoteValidator)
    job = await ing.stub.CreateIngestJob(job_request("coinbase", "USDT/USD", START, END))
    last = await ing.wait(job.name)
    assert last.outcome.result == cpb.Outcome.RESULT_OK, last
    candles = await stored(ing.pool, "coinbase", "USDT/USD", START, END)
    assert_equal_to_source(candles, catalog, "coinbase", "USDT/USD", START, END)

    ing.replay.set_faults(corrupt=1, corrupt_kind="spike", exchange="binance")
    job = await ing.stub.CreateIngestJob(job_request("binance", "BTC/USDC", START, END))
    last = await ing.wait(job.name)
    assert last.outcome.result == cpb.Outcome.RESULT_OK, last
    assert last.job.stats.bars_quarantined == 1
    rejects = await ing.pool.fetch("SELECT rules, reason FROM ingest_rejects")
    assert [r["rules"] for r in rejects] == [["series.spike"]]
    assert rejects[0]["reason"].startswith("expected ")
    got: dict[str, Any] = {name: [tuple(r) for r in await ing.quality.fetch(sql)]
                           for name, sql in RECORDS.items()}
    got["market_data"] = [tuple(r) for r in await ing.pool.fetch(
        "SELECT exchange, symbol, ts, open, high, low, close, volume, provenance "
        "FROM market_data ORDER BY 1, 2, 3")]
    return got


async def test_inprocess_validation_records_what_the_service_records(
        make_ingestion: MakeIngestion, catalog: Catalog) -> None:
    default = await _run(make_ingestion, catalog, inprocess=True)
    # Recorded by the validation code itself, as the service would: the spike quarantined
    # with its rule, the coinbase series' gaps, the spiked series' verdict spans.
    assert [(q[0], q[3]) for q in default["quarantined_bars"]] == [("binance",
                                                                     ["series.spike"])]
    assert len(default["data_gaps"]) > 0
    assert ("binance", "BTC/USDC") in {v[:2] for v in default["series_verdicts"]}
    over_rpc = await _run(make_ingestion, catalog, inprocess=False)
    for name, rows in default.items():
        assert rows == over_rpc[name], name
