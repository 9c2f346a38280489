"""Bulk archive imports over HTTP from the replay server's mirror of Binance's public data
and Kraken's OHLCVT zips: equal to the source bars, bad files reported one by one with
nothing of them stored, re-imports change nothing, a SIGKILLed import resumes exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
import pytest
from tests.ingestion.conftest import DATA, MakeIngestion, ts
from tests.ingestion.test_ingest_crash import ingestion_process
from tests.testkit import eventually

from usdcarb.devstack import PostgresServer, scratch_dir
from usdcarb.ingestion import archive
from usdcarb.ingestion.archive_store import ArchiveStore
from usdcarb.ingestion.domain import Bars
from usdcarb.platform.db import create_pool
from usdcarb.replay.archives import REDATE_MS, ArchiveMirror
from usdcarb.replay.data import Catalog, load_kraken_ohlcvt
from usdcarb.replay.server import ReplayServer
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import ingestion_pb2 as pb

pytestmark = pytest.mark.integration
DAY = 86_400_000
KRAKEN_1M = DATA / "iaqf2026_cl8550/data/kraken/raw/BTCUSDC_1m_20230301_20230321.csv"


def ms(value: str) -> int:
    return int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
async def mirror(catalog: Catalog) -> AsyncIterator[ReplayServer]:
    async with ReplayServer(catalog, archives=ArchiveMirror(catalog, DATA)) as server:
        yield server


def request(layout: int, location: str, exchange: str, symbol: str, start: str | None,
            end: str | None, *, timeframe: str = "1m", request_id: str = "") -> Any:
    rng = None
    if start and end:
        rng = cpb.TimeRange(start_time=ts(start + "+00:00"), end_time=ts(end + "+00:00"))
    return pb.CreateArchiveImportRequest(archive_import=pb.ArchiveImport(
        source=pb.ArchiveSource(layout=layout, location=location),
        series=cpb.SeriesKey(exchange=exchange, symbol=symbol, timeframe=timeframe),
        range=rng), request_id=request_id)


async def run_import(stub: Any, req: Any, within_s: float = 60) -> Any:
    created = await stub.CreateArchiveImport(req)
    last = None
    async with asyncio.timeout(within_s):
        async for event in stub.WatchArchiveImport(
                pb.WatchArchiveImportRequest(name=created.name)):
            last = event
    assert last is not None and last.HasField("outcome"), last
    return last


async def stored_bars(pool: Any, exchange: str, symbol: str, lo: int, hi: int,
                      timeframe: str = "1m") -> Bars:
    rows = await pool.fetch(
        "SELECT (extract(epoch FROM ts) * 1000)::int8 AS t, open, high, low, close, volume "
        "FROM market_data WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 "
        "AND ts >= to_timestamp($4 / 1000.0) AND ts < to_timestamp($5 / 1000.0) ORDER BY ts",
        exchange, symbol, timeframe, lo, hi)
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 6
    return Bars(np.array(cols[0], np.int64), *(np.array(c, np.float64) for c in cols[1:]))


def assert_bars_equal(got: Bars, ts_ms: Any, o: Any, h: Any, lo: Any, c: Any, v: Any) -> None:
    assert len(got) == len(ts_ms) and len(got) > 0
    np.testing.assert_array_equal(got.ts_ms, ts_ms)
    for name, want in (("open", o), ("high", h), ("low", lo), ("close", c), ("volume", v)):
        np.testing.assert_array_equal(getattr(got, name), want, err_msg=name)


async def test_binance_spot_usdm_and_microsecond_files_equal_the_source(
        make_ingestion: MakeIngestion, mirror: ReplayServer, catalog: Catalog) -> None:
    ing = await make_ingestion()
    base = f"{mirror.url}/data.binance.vision"
    src = catalog.get("binance", "BTC/USDC", "1m")
    assert src is not None
    lo, hi = ms("2023-03-10T00:00:00"), ms("2023-03-12T00:00:00")
    i, j = src.window(lo, hi)
    cases = [
        (pb.ARCHIVE_LAYOUT_BINANCE_SPOT, "binance", "BTC/USDC", "2023-03-10", "2023-03-12", 0,
         "ms times"),
        (pb.ARCHIVE_LAYOUT_BINANCE_USDM, "binanceusdm", "BTC/USDC:USDC", "2023-03-10",
         "2023-03-12", 0, "ms times, header"),
        (pb.ARCHIVE_LAYOUT_BINANCE_SPOT, "binance", "BTC/USDC", "2025-03-10", "2025-03-12",
         REDATE_MS, "us times"),
    ]
    for layout, exchange, symbol, start, end, shift, detected in cases:
        done = await run_import(ing.stub, request(layout, base, exchange, symbol,
                                                  f"{start}T00:00:00", f"{end}T00:00:00"))
        imp = done.archive_import
        assert done.outcome.result == cpb.Outcome.RESULT_OK, imp
        assert [f.key for f in imp.files] == [
            f"daily/BTCUSDC-1m-{start[:8]}{d}.zip" for d in (start[8:], f"{int(start[8:]) + 1}")]
        assert all(f.stored and f.message == detected for f in imp.files), imp.files
        assert imp.stats.bars_stored == j - i == 2880 and imp.stats.bars_quarantined == 0
        got = await stored_bars(ing.pool, exchange, symbol, lo + shift, hi + shift)
        assert_bars_equal(got, src.ts_ms[i:j] + shift, src.open[i:j], src.high[i:j],
                          src.low[i:j], src.close[i:j], src.volume[i:j])
        # Each stored file's sha256 is the one its .CHECKSUM publishes.
        for f in imp.files:
            async with ing_session() as http, http.get(f.location + ".CHECKSUM") as resp:
                assert (await resp.text()).split()[0] == f.sha256


def ing_session() -> Any:
    import aiohttp

    return aiohttp.ClientSession()


async def test_kraken_ohlcvt_zip_equals_the_recorded_file_and_reimport_changes_nothing(
        make_ingestion: MakeIngestion, mirror: ReplayServer) -> None:
    ing = await make_ingestion(validation=True)
    url = f"{mirror.url}/kraken.com/ohlcvt/Kraken_OHLCVT_Q1_2023.zip"
    want = load_kraken_ohlcvt(KRAKEN_1M, "BTC/USDC", "1m", "x")
    req = request(pb.ARCHIVE_LAYOUT_KRAKEN_OHLCVT, url, "kraken", "BTC/USDC", None, None)
    done = await run_import(ing.stub, req)
    imp = done.archive_import
    assert done.outcome.result == cpb.Outcome.RESULT_OK, imp
    assert [(f.key, f.stored) for f in imp.files] == [
        ("Kraken_OHLCVT_Q1_2023.zip:XBTUSDC_1.csv", True)]
    assert imp.stats.bars_stored == len(want) == 56_717
    got = await stored_bars(ing.pool, "kraken", "BTC/USDC", 0, 2**50)
    assert_bars_equal(got, want.ts_ms, want.open, want.high, want.low, want.close, want.volume)
    trades = await ing.pool.fetch("SELECT trades FROM market_data WHERE exchange = 'kraken' "
                                  "ORDER BY ts")  # the file's 7th column, stored
    np.testing.assert_array_equal([r["trades"] for r in trades],
                                  want.extra["trades"].astype(np.int64))
    # The imported range is then validated as ValidateRange does: Kraken's real gaps (only
    # minutes with trades appear) are recorded with the validation service's data.
    gaps = int((np.diff(want.ts_ms) > 60_000).sum())
    assert gaps > 0

    async def recorded() -> bool:
        return bool(await ing.quality.fetchval(
            "SELECT count(*) FROM data_gaps WHERE exchange = 'kraken'") == gaps)

    await eventually(recorded, within_s=30, interval=0.1)
    before = await ing.pool.fetchval(
        "SELECT md5(string_agg(ts::text || open || close || volume || ingest_time::text, ',' "
        "ORDER BY ts)) FROM market_data WHERE exchange = 'kraken'")
    again = await run_import(ing.stub, req)
    assert again.outcome.result == cpb.Outcome.RESULT_OK
    assert again.archive_import.stats.bars_stored == 0
    assert again.archive_import.stats.bars_duplicate == len(want)
    after = await ing.pool.fetchval(
        "SELECT md5(string_agg(ts::text || open || close || volume || ingest_time::text, ',' "
        "ORDER BY ts)) FROM market_data WHERE exchange = 'kraken'")
    assert after == before


async def test_bad_files_are_reported_one_by_one_and_nothing_of_them_is_stored(
        make_ingestion: MakeIngestion, mirror: ReplayServer) -> None:
    ing = await make_ingestion()
    mirror.set_faults(archive={"BTCUSDT-1m-2023-03-17.zip": "checksum",
                               "BTCUSDT-1m-2023-03-18.zip": "truncate",
                               "BTCUSDT-1m-2023-03-19.zip": "corrupt"})
    # 2023-03-22 is not recorded: the mirror has not "published" it (HTTP 404).
    done = await run_import(ing.stub, request(
        pb.ARCHIVE_LAYOUT_BINANCE_SPOT, f"{mirror.url}/data.binance.vision", "binance",
        "BTC/USDT", "2023-03-17T00:00:00", "2023-03-23T00:00:00"))
    imp = done.archive_import
    assert done.outcome.result == cpb.Outcome.RESULT_FAILED
    assert done.outcome.error.code == grpc.StatusCode.DATA_LOSS.value[0]
    by_day = {f.key[-14:-4]: f for f in imp.files}
    assert {d: (f.stored, f.reason) for d, f in by_day.items()} == {
        "2023-03-17": (False, "CHECKSUM_MISMATCH"), "2023-03-18": (False, "ARCHIVE_TRUNCATED"),
        "2023-03-19": (False, "ARCHIVE_CORRUPT"), "2023-03-20": (True, ""),
        "2023-03-21": (True, ""), "2023-03-22": (False, "ARCHIVE_FILE_MISSING")}
    assert "expected sha256" in by_day["2023-03-17"].message
    assert "404" in by_day["2023-03-22"].message
    assert "4 of 6 files not imported" in done.outcome.error.message
    days = await ing.pool.fetch(
        "SELECT date_trunc('day', ts) AS d, count(*) AS n FROM market_data "
        "WHERE symbol = 'BTC/USDT' GROUP BY 1 ORDER BY 1")
    assert [(r["d"].date().isoformat(), r["n"]) for r in days] == [
        ("2023-03-20", 1440), ("2023-03-21", 1440)]
    assert imp.stats.files_failed == 4 and imp.stats.files_stored == 2


async def test_an_import_overlapping_stored_bars_merges_only_the_overlap(
        make_ingestion: MakeIngestion, mirror: ReplayServer, catalog: Catalog) -> None:
    ing = await make_ingestion()
    src = catalog.get("binance", "USDC/USDT", "1m")
    assert src is not None
    lo = ms("2023-03-11T00:00:00")
    i, _ = src.window(lo, lo + DAY)
    # One original bar (kept as is) and one gap-filled bar (replaced by the archive's).
    await ing.pool.execute(
        "INSERT INTO market_data (exchange, symbol, timeframe, ts, open, high, low, close, "
        "volume, provenance, source) VALUES ('binance', 'USDC/USDT', '1m', to_timestamp($1), "
        "2, 2, 2, 2, 0, 1, 'binance'), ('binance', 'USDC/USDT', '1m', to_timestamp($2), "
        "3, 3, 3, 3, 0, 2, 'okx')", (lo + 60_000) / 1000, (lo + 120_000) / 1000)
    done = await run_import(ing.stub, request(
        pb.ARCHIVE_LAYOUT_BINANCE_SPOT, f"{mirror.url}/data.binance.vision", "binance",
        "USDC/USDT", "2023-03-11T00:00:00", "2023-03-12T00:00:00"))
    assert done.outcome.result == cpb.Outcome.RESULT_OK
    assert done.archive_import.stats.bars_stored == 1439
    assert done.archive_import.stats.bars_duplicate == 1
    got = await stored_bars(ing.pool, "binance", "USDC/USDT", lo, lo + DAY)
    assert len(got) == 1440 and got.close[1] == 2.0 and got.close[2] == src.close[i + 2]
    prov = await ing.pool.fetchval("SELECT count(*) FROM market_data WHERE provenance <> 1")
    assert prov == 0


async def test_bad_requests_are_refused_with_the_field_named(
        make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion()
    cases = [
        (request(pb.ARCHIVE_LAYOUT_BINANCE_SPOT, "", "kraken", "BTC/USDC", "2023-03-01T00:00:00",
                 "2023-03-02T00:00:00"), "archive_import.series.exchange"),
        (request(pb.ARCHIVE_LAYOUT_BINANCE_SPOT, "", "binance", "BTC/USDC", None, None),
         "archive_import.range"),
        (request(pb.ARCHIVE_LAYOUT_BINANCE_USDM, "", "binanceusdm", "BTC/USDT",
                 "2023-03-01T00:00:00", "2023-03-02T00:00:00"), "archive_import.series.symbol"),
        (request(pb.ARCHIVE_LAYOUT_BINANCE_SPOT, "file:///etc", "binance", "BTC/USDC",
                 "2023-03-01T00:00:00", "2023-03-02T00:00:00"),
         "archive_import.source.location"),
        (request(pb.ARCHIVE_LAYOUT_UNSPECIFIED, "", "binance", "BTC/USDC",
                 "2023-03-01T00:00:00", "2023-03-02T00:00:00"), "archive_import.source.layout"),
    ]
    for req, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ing.stub.CreateArchiveImport(req)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in (err.value.details() or ""), (field, err.value.details())


def test_file_plans_monthly_for_whole_months_and_daily_for_the_rest() -> None:
    src = archive.Source(archive.Layout.BINANCE_SPOT, "https://data.binance.vision",
                         "binance", "BTC/USDC", "BTCUSDC", "1m", ms("2024-01-30T00:00:00"),
                         ms("2024-03-02T00:00:00"))
    keys = [f.key for f in archive.plan(src)]
    assert keys == ["daily/BTCUSDC-1m-2024-01-30.zip", "daily/BTCUSDC-1m-2024-01-31.zip",
                    "monthly/BTCUSDC-1m-2024-02.zip", "daily/BTCUSDC-1m-2024-03-01.zip"]
    first = archive.plan(src)[2]
    assert first.location == ("https://data.binance.vision/data/spot/monthly/klines/BTCUSDC/"
                              "1m/BTCUSDC-1m-2024-02.zip")
    assert first.checksum_location == first.location + ".CHECKSUM"


def test_checksum_lines_are_checked_against_the_bytes_and_the_name() -> None:
    digest = hashlib.sha256(b"zip bytes").hexdigest()
    line = f"{digest}  a.zip\n".encode()
    archive.verify_checksum(digest, 9, line, "a.zip")
    other = hashlib.sha256(b"zip bytes!").hexdigest()
    for got, bad, name, reason in ((digest, line, "b.zip", "CHECKSUM_MISMATCH"),
                                   (other, line, "a.zip", "CHECKSUM_MISMATCH"),
                                   (digest, b"<html>", "a.zip", "CHECKSUM_MISSING")):
        with pytest.raises(archive.FileProblem) as err:
            archive.verify_checksum(got, 9, bad, name)
        assert err.value.reason == reason


async def test_sigkill_mid_import_then_restart_stores_every_file_exactly_once(
        postgres: PostgresServer, mirror: ReplayServer, catalog: Catalog) -> None:
    database = f"archive_kill_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database)
    postgres.psql("CREATE EXTENSION IF NOT EXISTS timescaledb", database=database)
    dsn = postgres.dsn(database)
    mirror.set_faults(latency_ms=150)  # 21 daily files, each zip + checksum: a few seconds
    log = scratch_dir("usdcarb-archive-kill-") / "ingestion.log"

    async def migrated() -> Any:
        assert first.returncode is None, log.read_text()[-2000:]
        pool = await create_pool(dsn, 1, 4, search_path="ingestion, public", attempts=1)
        if not await pool.fetchval("SELECT to_regclass('ingestion.archive_files') IS NOT NULL"):
            await pool.close()
            return None
        return pool

    async with ingestion_process(dsn, mirror, log) as first:
        pool = await eventually(migrated, within_s=90, interval=0.2)
        rec = await ArchiveStore(pool).create(
            layout="binance_spot", location=f"{mirror.url}/data.binance.vision",
            exchange="binance", symbol="BTC/USDC", market_id="BTCUSDC", timeframe="1m",
            start=datetime(2023, 3, 1, tzinfo=UTC), end=datetime(2023, 3, 22, tzinfo=UTC),
            granularity="auto", creator="test", request_id="")

        async def some_stored() -> bool:
            n = await pool.fetchval("SELECT count(*) FROM archive_files WHERE import_id = $1",
                                    rec.id)
            return bool(n and n >= 4)

        await eventually(some_stored, within_s=60, interval=0.05)
        first.send_signal(signal.SIGKILL)
        await first.wait()
    killed = await pool.fetchrow("SELECT state FROM archive_imports WHERE id = $1", rec.id)
    settled = await pool.fetchval("SELECT count(*) FROM archive_files WHERE import_id = $1",
                                  rec.id)
    assert killed["state"] == "JOB_STATE_RUNNING" and 4 <= settled < 21
    mirror.set_faults(latency_ms=0)
    async with ingestion_process(dsn, mirror, log):
        async def finished() -> bool:
            row = await pool.fetchrow("SELECT state FROM archive_imports WHERE id = $1", rec.id)
            return bool(row and row["state"] == "JOB_STATE_SUCCEEDED")

        await eventually(finished, within_s=120, interval=0.2)
    src = catalog.get("binance", "BTC/USDC", "1m")
    assert src is not None
    got = await stored_bars(pool, "binance", "BTC/USDC", 0, 2**50)
    assert_bars_equal(got, src.ts_ms, src.open, src.high, src.low, src.close, src.volume)
    files = await pool.fetch("SELECT key, state, bars_stored FROM archive_files "
                             "WHERE import_id = $1", rec.id)
    assert len(files) == 21 and all(f["state"] == "STORED" for f in files)
    assert sum(f["bars_stored"] for f in files) == len(src)
    stats = await pool.fetchval("SELECT stats FROM archive_imports WHERE id = $1", rec.id)
    assert stats["bars_stored"] == len(src) and stats["files_stored"] == 21
    await pool.close()
    shutil.rmtree(log.parent, ignore_errors=True)



async def test_cancel_keeps_the_files_already_stored_and_stores_no_more(
        make_ingestion: MakeIngestion, mirror: ReplayServer) -> None:
    ing = await make_ingestion()
    mirror.set_faults(latency_ms=200)
    made = await ing.stub.CreateArchiveImport(request(
        pb.ARCHIVE_LAYOUT_BINANCE_SPOT, f"{mirror.url}/data.binance.vision", "binance",
        "BTC/USDC", "2023-03-01T00:00:00", "2023-03-22T00:00:00"))

    async def started() -> bool:
        got = await ing.stub.GetArchiveImport(pb.GetArchiveImportRequest(name=made.name))
        return got.stats.files_stored >= 1

    await eventually(started, within_s=60, interval=0.05)
    cancelled = await ing.stub.CancelArchiveImport(
        pb.CancelArchiveImportRequest(name=made.name))
    assert cancelled.state == cpb.JOB_STATE_CANCELLED
    last = None
    async for event in ing.stub.WatchArchiveImport(
            pb.WatchArchiveImportRequest(name=made.name)):
        last = event
    assert last is not None and last.outcome.result == cpb.Outcome.RESULT_CANCELLED
    await asyncio.sleep(1.0)  # a worker still downloading must not store anything now
    final = await ing.stub.GetArchiveImport(pb.GetArchiveImportRequest(name=made.name))
    stored = await ing.pool.fetchval("SELECT count(*) FROM market_data")
    assert final.state == cpb.JOB_STATE_CANCELLED and 1 <= len(final.files) < 21
    assert stored == sum(f.bars_stored for f in final.files) == 1440 * len(final.files)
    listed = await ing.stub.ListArchiveImports(pb.ListArchiveImportsRequest(
        state=cpb.JOB_STATE_CANCELLED))
    assert [i.name for i in listed.archive_imports] == [made.name]
