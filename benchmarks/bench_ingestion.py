"""Ingestion throughput, end to end, and candle reads into numpy.

0. Import bulk archives (ImportArchive jobs on the ingestion process): the replay server's
   mirror of Binance's public data (3 spot markets x 21 daily zips in ms, the same as
   USDⓈ-M files with a header, and re-dated 2025 files in µs) and Kraken's OHLCVT zip
   (5 members), ~380,000 bars: download over HTTP, sha256 checksum, unzip, parse,
   validate whole files in-process, binary COPY into the empty hypertable. Ceiling:
   ``psql \\copy`` of the same rows into an identical empty hypertable.
1. Backfill every recorded 1-minute series the replay server serves with full history
   (Binance.US, Coinbase, Bybit, and the labelled OKX stand-in; March 2023, ~296,000
   bars) with the ingestion service (in this process): ccxt -> replay server (its own
   process) -> the validation service's application in-process (the default: rules,
   findings, quarantine, gaps, verdicts recorded in the validation schema; or, with
   ``--validation-rpc``, ValidateCandles(record=true) on ``python -m
   usdcarb.validation.main``) -> COPY + merge into the hypertable. Ceilings: the same
   client and paging fetching and parsing only, and ``psql \\copy`` of the same rows.
2. Read a 1,000,000-bar range into numpy: the plain binary-COPY reader
   (usdcarb.marketdata.reader), the ingestion read path (columnar block cache: cold,
   then warm), and GetCandles (LE_BYTES) over gRPC from the ingestion process.

Exchange pacing is off (rate_limit_scale=0): the replay server is on loopback, and the
point is the pipeline's own cost. Everything shares this machine's cores, so each round
runs every path next to its ceiling (interleaved), and each is also measured in CPU
seconds (this process, the replay server, the validation process, every PostgreSQL
process, psql): bars per CPU-second do not move with the other load on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from usdcarb.devstack import PostgresServer, RedisServer, scratch_dir
from usdcarb.ingestion.archive_store import ArchiveStore
from usdcarb.ingestion.archive_worker import validate_imported
from usdcarb.ingestion.domain import (
    Bars,
    PageRequest,
    first_request,
    next_since,
    timeframe_ms,
)
from usdcarb.ingestion.exchanges import ExchangeClient, Pacer, spec_of
from usdcarb.ingestion.main import SERVICE as INGESTION
from usdcarb.ingestion.main import IngestionSettings, build
from usdcarb.ingestion.store import IngestStore
from usdcarb.ingestion.validation import InProcessValidator, RemoteValidator
from usdcarb.marketdata.cache import CandleCache
from usdcarb.marketdata.reader import read_candles
from usdcarb.marketdata.writer import encode_copy_binary, invalidate_blocks
from usdcarb.platform.db import create_pool
from usdcarb.platform.migrations import apply_migrations
from usdcarb.platform.testing import DEV_JWKS, DevServiceToken, bearer, start_in_process
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import ingestion_pb2 as pb
from usdcarb.v1 import ingestion_pb2_grpc
from usdcarb.validation.domain.series_rules import rolling_median
from usdcarb.validation.main import MIGRATIONS as VALIDATION_MIGRATIONS
from usdcarb.validation.main import make_app

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "services" / "usdcarb" / "ingestion" / "migrations"
DATA = ROOT.parent / "shared" / "data" / "exchanges"
START, END = datetime(2023, 3, 1, tzinfo=UTC), datetime(2023, 3, 22, tzinfo=UTC)
SERIES = [("binance", "BTC/USDC"), ("binance", "BTC/USDT"), ("binance", "USDC/USDT"),
          ("coinbase", "BTC/USD"), ("coinbase", "BTC/USDT"), ("coinbase", "USDT/USD"),
          ("okx", "BTC/USDC"), ("okx", "USDC/USDT"), ("okx", "BTC/USDT"),
          ("bybit", "BTC/USDC")]
M = 60_000
COLUMNS = ("exchange, symbol, timeframe, ts, open, high, low, close, volume, provenance, "
           "source, trades")


BINANCE_ARCHIVE = [("BTC/USDC", "BTCUSDC"), ("BTC/USDT", "BTCUSDT"), ("USDC/USDT", "USDCUSDT")]
KRAKEN_ARCHIVE = [("BTC/USDC", "XBTUSDC", "1m"), ("BTC/USDC", "XBTUSDC", "5m"),
                  ("BTC/USDC", "XBTUSDC", "1h"), ("BTC/USDT", "XBTUSDT", "5m"),
                  ("BTC/USDT", "XBTUSDT", "1h")]
REDATED = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 22, tzinfo=UTC))


def env_for(prefix: str, **values: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(ROOT / p) for p in ("services", "gen/python"))}
    env.update({f"{prefix}{k.upper()}": v for k, v in values.items()})
    return env


def spawn(argv: list[str], env: dict[str, str], log: Path | None = None
          ) -> subprocess.Popen[bytes]:
    sink = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=sink)


def wait_port(path: Path, proc: subprocess.Popen[bytes], within_s: float = 60) -> int:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        if proc.poll() is not None:
            log = path.with_suffix(".log")
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}\n{tail}")
        time.sleep(0.05)
    raise TimeoutError(f"no port file {path}")


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int, *, children: bool = False) -> float:
    """CPU seconds of a live process (with ``children``: also its reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    return out


class CpuMeter:
    """CPU seconds used by the processes of a measurement: this one (with its threads),
    psql runs (reaped children), the replay/validation processes, and PostgreSQL (the
    postmaster, its live backends and those that ended)."""

    def __init__(self, pg: PostgresServer, pids: list[int], *, detail: bool = False) -> None:
        self._pg = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
        self._pids = pids
        self.detail = detail

    def split(self) -> dict[str, float]:
        psql = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"this process": time.process_time(), "psql": psql.ru_utime + psql.ru_stime,
                "postgres": _proc_cpu(self._pg, children=True) + sum(
                    _proc_cpu(c) for c in _children(self._pg)),
                **{f"pid {p}": _proc_cpu(p) for p in self._pids}}

    def now(self) -> float:
        return sum(self.split().values())

    def backends(self) -> set[int]:
        return set(_children(self._pg))

    def reaped(self, before: set[int], within_s: float = 3.0) -> None:
        """Wait until the backends started since ``before`` ended: a backend's CPU time
        reaches the postmaster's children total only once it has been reaped."""
        deadline = time.monotonic() + within_s
        while self.backends() - before and time.monotonic() < deadline:
            time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def ingest_end_to_end(pool: Any, concurrency: int) -> int:
    store = IngestStore(pool)
    jobs = [await store.create_job(exchange=e, symbol=s, timeframe="1m",
                                   mode="INGEST_MODE_BACKFILL", start=START, end=END,
                                   creator="bench", request_id="") for e, s in SERIES]
    while True:  # one query a look (not one per job): the watching is not the pipeline's
        states = [r["state"] for r in await pool.fetch(
            "SELECT state FROM ingest_jobs WHERE id = ANY($1::text[])", [j.id for j in jobs])]
        if all(s in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED") for s in states):
            break
        await asyncio.sleep(0.05)
    if any(s != "JOB_STATE_SUCCEEDED" for s in states):
        raise RuntimeError(f"expected every job to succeed, got {states}")
    stored = await pool.fetchval("SELECT count(*) FROM market_data")
    return int(stored)


async def archive_end_to_end(pool: Any, replay_url: str,
                             wake: Any = None) -> tuple[int, int]:
    """Import every archive source at once; return (bars stored, files). ``wake``: the
    archive worker's, called once the imports are created, as ImportArchive does (else
    the worker finds them at its next poll)."""
    store = ArchiveStore(pool)
    binance = f"{replay_url}/data.binance.vision"
    kraken = f"{replay_url}/kraken.com/ohlcvt/Kraken_OHLCVT_Q1_2023.zip"
    specs: list[dict[str, Any]] = []
    for symbol, mid in BINANCE_ARCHIVE:
        quote = symbol.split("/")[1]
        specs += [dict(layout="binance_spot", location=binance, exchange="binance",
                       symbol=symbol, market_id=mid, timeframe="1m", start=START, end=END),
                  dict(layout="binance_usdm", location=binance, exchange="binanceusdm",
                       symbol=f"{symbol}:{quote}", market_id=mid, timeframe="1m",
                       start=START, end=END),
                  dict(layout="binance_spot", location=binance, exchange="binance",
                       symbol=symbol, market_id=mid, timeframe="1m", start=REDATED[0],
                       end=REDATED[1])]
    for symbol, mid, tf in KRAKEN_ARCHIVE:
        specs.append(dict(layout="kraken_ohlcvt", location=kraken, exchange="kraken",
                          symbol=symbol, market_id=mid, timeframe=tf, start=None, end=None))
    recs = [await store.create(**spec, granularity="auto", creator="bench", request_id="")
            for spec in specs]
    if wake is not None:
        wake()
    # Polled on one held connection: a pool round trip per poll (and its reset query)
    # would add the bench's own CPU to the import's.
    async with pool.acquire() as conn:
        while True:
            states = [r["state"] for r in await conn.fetch(
                "SELECT state FROM archive_imports WHERE id = ANY($1::text[])",
                [r.id for r in recs])]
            if all(s in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED") for s in states):
                break
            await asyncio.sleep(0.02)
    if any(s != "JOB_STATE_SUCCEEDED" for s in states):
        raise RuntimeError(f"expected every import to succeed, got {states}")
    files = await pool.fetchval("SELECT count(*) FROM archive_files WHERE state = 'STORED' "
                                "AND import_id = ANY($1::text[])", [r.id for r in recs])
    stored = await pool.fetchval("SELECT count(*) FROM market_data")
    return int(stored), int(files)


async def validate_imports(pool: Any, validator: InProcessValidator) -> None:
    """ValidateRange over what every import stored, as the archive worker runs it once an
    import ends (archive_worker.validate_imported)."""
    store = ArchiveStore(pool)
    ids = [r["id"] for r in await pool.fetch(
        "SELECT id FROM archive_imports WHERE state = 'JOB_STATE_SUCCEEDED'")]
    recs = [await store.get(i, with_files=False) for i in ids]
    for rec in recs:  # the worker runs one per series at a time
        await validate_imported(store, validator, rec)


async def fetch_only(replay_url: str, concurrency: int) -> int:
    """The same series fetched and parsed (ccxt pages -> columns) with the ingestion
    service's own client and paging, stored nowhere: the cost of getting the bars."""
    gate = asyncio.Semaphore(concurrency)
    tf = timeframe_ms("1m")
    start_ms, end_ms = int(START.timestamp() * 1000), int(END.timestamp() * 1000)

    async def one(exchange: str, symbol: str) -> int:
        async with gate:
            spec = spec_of(exchange)
            client = ExchangeClient(spec, replay_url=replay_url, pacer=Pacer(0))
            got = 0
            try:
                request: PageRequest | None = first_request(spec, tf, start_ms)
                while request is not None and request.since_ms < end_ms:
                    rows, _ = await client.fetch_page(symbol, "1m", request.since_ms,
                                                      request.limit)
                    bars = Bars.from_rows(rows)
                    got += int(np.count_nonzero((bars.ts_ms >= start_ms)
                                                & (bars.ts_ms < end_ms)))
                    since = next_since(spec, tf, request,
                                       int(bars.ts_ms.max()) if len(bars) else None)
                    request = (None if since is None
                               else PageRequest(since, spec.max_bars_per_request))
            finally:
                await client.close()
            return got

    counts = await asyncio.gather(*(one(e, s) for e, s in SERIES))
    return sum(counts)


def psql_copy_ceiling(pg: PostgresServer, workdir: Path, meter: CpuMeter
                      ) -> tuple[int, float, float]:
    """``psql \\copy`` of every row of ingestion.market_data into the empty twin table;
    return (rows, seconds, CPU seconds of psql and PostgreSQL)."""
    before = meter.backends()
    pg.psql("TRUNCATE ceiling.market_data", database="usdcarb")
    csv = workdir / "rows.csv"
    pg.psql(f"\\copy (SELECT {COLUMNS} FROM ingestion.market_data) TO '{csv}' CSV\n",
            database="usdcarb")
    rows = sum(1 for _ in csv.open())
    pg.psql("CHECKPOINT", database="usdcarb")  # earlier writes are flushed outside it
    meter.reaped(before)  # the export's backends are not the copy's
    c0, t0 = meter.now(), time.perf_counter()
    pg.psql(f"\\copy ceiling.market_data ({COLUMNS}) FROM '{csv}' CSV\n", database="usdcarb")
    seconds = time.perf_counter() - t0
    meter.reaped(before)
    cpu = meter.now() - c0
    if meter.detail:
        print(f"  [psql \\copy: {seconds:.2f} s wall; CPU s {cpu:.2f}]", flush=True)
    return rows, seconds, cpu


async def validation_costs(pool: Any, vpool: Any, validation_address: str,
                           batch: int = 10_000) -> list[tuple[str, int, float]]:
    """Validate the same stored bars (three Binance.US series, in batches) both ways: the
    validation service (ValidateCandles, record=true) and the same application in this
    process (InProcessValidator, the worker's default); (name, bars, seconds)."""
    parts = []
    async with pool.acquire() as conn:
        for symbol in ("BTC/USDC", "BTC/USDT", "USDC/USDT"):
            c = await read_candles(conn, exchange="binance", symbol=symbol, timeframe="1m",
                                   start=START, end=END, table="market_data")
            for i in range(0, len(c), batch):
                parts.append((symbol, Bars(c.open_time_ms[i:i + batch], c.open[i:i + batch],
                                           c.high[i:i + batch], c.low[i:i + batch],
                                           c.close[i:i + batch], c.volume[i:i + batch])))
    n = sum(len(b) for _, b in parts)
    out = []
    validators: list[tuple[str, Any]] = [
        ("ValidationApp in-process (record=true)",
         InProcessValidator(make_app(vpool, NoEvents(), table="ingestion.market_data")))]
    if validation_address:
        channel = grpc.aio.insecure_channel(validation_address)
        validators.insert(0, ("ValidateCandles(record=true) on the service",
                              RemoteValidator(channel, DevServiceToken("ingestion"))))
    for name, validator in validators:
        t0 = time.perf_counter()
        for symbol, bars in parts:
            await validator.validate("binance", symbol, "1m", bars)
        out.append((name, n, time.perf_counter() - t0))
        await validator.close()
    return out


class NoEvents:
    async def publish(self, event: Any) -> None:
        return None


async def load_synthetic(pool: Any, n: int) -> tuple[datetime, datetime]:
    t0 = 1_500_000_000_000 // M * M
    ts = t0 + M * np.arange(n, dtype=np.int64)
    close = np.exp(np.cumsum(np.random.default_rng(3).normal(0, 2e-4, n)))
    data = encode_copy_binary(ts, close, close * 1.0005, close * 0.9995, close,
                              np.random.default_rng(4).uniform(0, 5, n))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("CREATE TEMP TABLE stage (ts timestamptz, open float8, high float8, "
                           "low float8, close float8, volume float8) ON COMMIT DROP")
        await conn.copy_to_table("stage", source=io.BytesIO(data), format="binary")
        await invalidate_blocks(conn, exchange="binance", symbol="BTC/USDC", timeframe="1m",
                                first_ms=int(ts[0]), last_ms=int(ts[-1]), timeframe_ms=M,
                                table="market_data")
        await conn.execute("INSERT INTO market_data (exchange, symbol, timeframe, ts, open, "
                           "high, low, close, volume) SELECT 'binance', 'BTC/USDC', '1m', ts, "
                           "open, high, low, close, volume FROM stage")
    await pool.execute("VACUUM ANALYZE market_data")
    return (datetime.fromtimestamp(t0 / 1000, UTC),
            datetime.fromtimestamp((t0 + n * M) / 1000, UTC))


async def best(repeats: int, call: Any) -> tuple[int, float]:
    times, n = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        n = await call()
        times.append(time.perf_counter() - t)
    return n, min(times)


async def reads(pool: Any, address: str, start: datetime, end: datetime,
                repeats: int) -> list[tuple[str, int, float]]:
    key = {"exchange": "binance", "symbol": "BTC/USDC", "timeframe": "1m"}  # 2017-2019: synthetic
    out = []

    async def plain() -> int:
        async with pool.acquire() as conn:
            return len(await read_candles(conn, **key, start=start, end=end,
                                          table="market_data"))

    cache = CandleCache()

    async def cached() -> int:
        async with pool.acquire() as conn:
            return len(await cache.read(conn, **key, timeframe_ms=M, start=start, end=end))

    out.append(("binary COPY reader (marketdata.reader)", *await best(repeats, plain)))
    await pool.execute("DELETE FROM candle_blocks")
    out.append(("block cache, cold (builds the blocks)", *await best(1, cached)))
    out.append(("block cache, warm (ingestion read path)", *await best(repeats, cached)))
    opts = [("grpc.max_receive_message_length", 128 * 1024 * 1024)]
    auth = bearer("users/bench", ("viewer",))
    async with grpc.aio.insecure_channel(address, options=opts) as channel:
        stub = ingestion_pb2_grpc.IngestionServiceStub(channel)
        rng = cpb.TimeRange()
        rng.start_time.FromDatetime(start)
        rng.end_time.FromDatetime(end)
        req = pb.GetCandlesRequest(series=cpb.SeriesKey(**key), range=rng,
                                   layout=cpb.COLUMN_LAYOUT_LE_BYTES)

        async def rpc() -> int:
            batch = await stub.GetCandles(req, metadata=auth)
            close = np.frombuffer(batch.columns.close, "<f8")
            return int(close.shape[0])

        out.append(("GetCandles LE_BYTES over gRPC -> numpy", *await best(repeats, rpc)))
    return out


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Figures:
    """Per-round (bars, seconds, CPU seconds) of one path."""

    def __init__(self) -> None:
        self.rounds: list[tuple[int, float, float]] = []

    def add(self, bars: int, seconds: float, cpu: float) -> None:
        self.rounds.append((bars, seconds, cpu))

    @property
    def bars(self) -> int:
        return self.rounds[-1][0]

    def rate(self) -> float:  # best wall-clock rate over the rounds
        return max(b / s for b, s, _ in self.rounds)

    def cpu_rate(self) -> float:  # best bars per CPU-second over the rounds
        return max(b / c for b, _, c in self.rounds)

    def seconds(self) -> float:
        return min(s for _, s, _ in self.rounds)


def _ratios(a: Figures, b: Figures) -> str:
    """Per-round wall-clock ratios a/b (interleaved: each round's pair ran side by side)."""
    r = sorted((x[0] / x[1]) / (y[0] / y[1]) for x, y in zip(a.rounds, b.rounds, strict=True))
    return f"per round {', '.join(f'{v:.2f}' for v in r)} (median {r[len(r) // 2]:.2f})"


def _cpu_ratios(a: Figures, b: Figures) -> str:
    """Per-round ratios a/b in bars per CPU-second."""
    r = sorted((x[0] / x[2]) / (y[0] / y[2]) for x, y in zip(a.rounds, b.rounds, strict=True))
    return f"per round {', '.join(f'{v:.2f}' for v in r)} (median {r[len(r) // 2]:.2f})"


async def _measured(meter: CpuMeter, call: Any, label: str = "") -> tuple[Any, float, float]:
    c0, t0 = meter.split(), time.perf_counter()
    got = await call()
    seconds = time.perf_counter() - t0
    c1 = meter.split()
    if label:  # --cpu-detail
        print(f"  [{label}: {seconds:.2f} s wall; CPU s " + ", ".join(
            f"{k} {c1[k] - c0[k]:.2f}" for k in c0) + "]", flush=True)
    return got, seconds, sum(c1.values()) - sum(c0.values())


VALIDATION_TABLES = ("data_validation_issues, quarantined_bars, data_gaps, series_verdicts, "
                     "series_verdict_changes")


async def run(args: argparse.Namespace, pg: PostgresServer, redis: RedisServer,
              work: Path) -> int:
    dsn = pg.dsn("usdcarb")
    pool = await create_pool(dsn, 1, 16, search_path="ingestion, public")
    await apply_migrations(pool, "ingestion", MIGRATIONS)
    vpool = await create_pool(dsn, 1, 8, search_path="validation, public")
    await apply_migrations(vpool, "validation", VALIDATION_MIGRATIONS)
    ceiling_pool = await create_pool(dsn, 1, 2, search_path="ceiling, public")
    await apply_migrations(ceiling_pool, "ceiling", MIGRATIONS)
    await ceiling_pool.close()
    procs = []
    closers: list[Any] = []
    archive, a_copy, ranged = Figures(), Figures(), Figures()
    ccxt, fetched, copied = Figures(), Figures(), Figures()
    costs: list[tuple[str, int, float]] = []
    read_rows: list[tuple[str, int, float]] = []
    load = [os.getloadavg()[0], 0.0]  # the machine's load around the rounds
    try:
        replay = spawn(["-m", "usdcarb.replay", "--data", str(args.data), "--port-file",
                        str(work / "replay.port")], env_for("X_"))
        procs.append(replay)
        replay_url = f"http://127.0.0.1:{wait_port(work / 'replay.port', replay)}"
        validation_address = ""
        if not args.no_validation:
            val = spawn(["-m", "usdcarb.validation.main"], env_for(
                "USDCARB_VALIDATION_", env="test", database_url=dsn, redis_url=redis.url,
                jwks_file=str(DEV_JWKS),
                port_file=str(work / "validation.port"), metrics_port="-1", plaintext="true",
                log_level="WARNING", log_json="false"), work / "validation.log")
            procs.append(val)
            validation_address = f"127.0.0.1:{wait_port(work / 'validation.port', val)}"
        meter = CpuMeter(pg, [p.pid for p in procs], detail=args.cpu_detail)
        # A long-running service compiles the spike rule's numba kernel once (or loads it
        # from numba's cache): not part of any measurement.
        rolling_median(np.zeros(8), 3, 1)
        # The ingestion service runs in this process (its worker pages with the same ccxt
        # client as the fetch-only ceiling below); by default it runs the validation
        # application in-process on the validation schema; with --validation-rpc it calls
        # the validation process with a development service token (DEV-ONLY key).
        settings = IngestionSettings(
            env="test", jwks_file=DEV_JWKS, replay_url=replay_url,
            validation_address=validation_address, rate_limit_scale=0.0,
            worker_concurrency=args.concurrency, archive_concurrency=args.concurrency,
            events=False, plaintext=True, metrics_port=-1, log_level="WARNING",
            batch_bars=args.batch_bars, validation_inprocess=not args.validation_rpc,
            archive_validate_range=False, archive_downloads=args.downloads)  # range: apart
        parts = build(pool, settings, token=DevServiceToken("ingestion"),
                      validation_pool=vpool)
        server = await start_in_process([INGESTION], parts.register, settings=settings)
        closers.append(server.stop)
        for worker in (parts.worker, parts.archive_worker):
            if worker is not None:
                task = asyncio.create_task(worker.run())
                closers.append(worker.stop)
                closers.append(lambda task=task: _cancel(task))
        closers.append(parts.validator.close)
        address = server.address

        async def fresh() -> None:
            await pool.execute("TRUNCATE market_data")
            await pool.execute("DELETE FROM candle_blocks")
            await pool.execute("TRUNCATE archive_imports CASCADE")
            await vpool.execute(f"TRUNCATE {VALIDATION_TABLES}")
            pg.psql("CHECKPOINT", database="usdcarb")

        wake = parts.archive_worker.wake if parts.archive_worker is not None else None

        def detail(label: str) -> str:
            return label if args.cpu_detail else ""

        # Rounds interleave each path with its ceilings (this machine is shared and its
        # load swings), on the same rows.
        load[0] = os.getloadavg()[0]
        for _ in range(args.rounds):
            if not args.skip_archive:
                await fresh()
                (a_bars, a_files), t, c = await _measured(
                    meter, lambda: archive_end_to_end(pool, replay_url, wake), detail("archive"))
                archive.add(a_bars, t, c)
                if isinstance(parts.validator, InProcessValidator):
                    # What the service does once an import ends, measured on its own: run
                    # during the other imports it would compete with them for the cores.
                    _, t, c = await _measured(meter, lambda: validate_imports(
                        pool, parts.validator), detail("ValidateRange of the imports"))
                    ranged.add(a_bars, t, c)
                a_rows, t, c = psql_copy_ceiling(pg, work, meter)
                a_copy.add(a_rows, t, c)
                if a_rows != a_bars:
                    raise RuntimeError(f"expected {a_bars} rows exported, got {a_rows}")
            if not args.skip_ccxt:
                await fresh()
                bars, t, c = await _measured(
                    meter, lambda: ingest_end_to_end(pool, args.concurrency), detail("ccxt"))
                ccxt.add(bars, t, c)
                pg.psql("CHECKPOINT", database="usdcarb")
                n, t, c = await _measured(meter, lambda: fetch_only(
                    replay_url, args.concurrency), detail("fetch-only"))
                fetched.add(n, t, c)
                rows, t, c = psql_copy_ceiling(pg, work, meter)
                copied.add(rows, t, c)
                if rows != bars:
                    raise RuntimeError(f"expected {bars} rows exported, got {rows}")
        load[1] = os.getloadavg()[0]
        if not args.skip_ccxt:
            costs = await validation_costs(pool, vpool, validation_address)
        if not args.skip_reads:
            start, end = await load_synthetic(pool, args.read_bars)
            read_rows = await reads(pool, address, start, end, args.repeats)
    finally:
        for close in closers:
            await close()
        for p in reversed(procs):
            stop(p)
        await pool.close()
        await vpool.close()
    print(f"{args.rounds} rounds, each path next to its ceilings on the same rows; best of "
          "the rounds, wall clock and bars per CPU-second (every process involved)")
    label = "psql \\copy of the same rows"
    if archive.rounds:
        print(f"archive import end to end ({a_files} files, {archive.bars:,} bars: download, "
              f"sha256, unzip, parse, validate, COPY; {args.concurrency} concurrent imports)")
        for name, f in (("archive import", archive), (label, a_copy)):
            print(f"  {name + ' bars/s':<44}{f.rate():>14,.0f}   ({f.seconds():.2f} s; "
                  f"{f.cpu_rate():,.0f} bars/CPU-s)")
        print(f"  {'ratio (target >= 0.8)':<44}{archive.rate() / a_copy.rate():>14.3f}   "
              f"{_ratios(archive, a_copy)}")
        print(f"  {'ratio in bars per CPU-second':<44}"
              f"{archive.cpu_rate() / a_copy.cpu_rate():>14.3f}   {_cpu_ratios(archive, a_copy)}")
        print(f"  {'load average (1 min) before / after':<44}{load[0]:>14.2f}   {load[1]:.2f}")
        if ranged.rounds and ranged.seconds() > 0:
            then = "then ValidateRange of the imported bars"
            print(f"  {then + ' bars/s':<44}{ranged.rate():>14,.0f}   ({ranged.seconds():.2f} s, "
                  "after the imports SUCCEEDED, not in their time)")
    if ccxt.rounds:
        via = ("own per-bar rules only" if args.no_validation else
               "ValidateCandles(record=true) over gRPC" if args.validation_rpc
               else "the validation application in-process, record=true")
        print(f"ingestion end to end ({len(SERIES)} series, {ccxt.bars:,} bars, through "
              f"{via}, {args.concurrency} concurrent jobs, batches of {args.batch_bars:,} "
              "bars)")
        for name, f in (("pipeline", ccxt), ("fetch + parse only (ccxt, replay)", fetched),
                        (label, copied)):
            print(f"  {name + ' bars/s':<44}{f.rate():>14,.0f}   ({f.seconds():.2f} s; "
                  f"{f.cpu_rate():,.0f} bars/CPU-s)")
        print(f"  {'pipeline / psql copy (fetching caps it)':<44}"
              f"{ccxt.rate() / copied.rate():>14.3f}")
        print(f"  {'pipeline / fetch-only (target >= 0.7)':<44}"
              f"{ccxt.rate() / fetched.rate():>14.3f}   {_ratios(ccxt, fetched)}")
        print(f"  {'... in bars per CPU-second':<44}"
              f"{ccxt.cpu_rate() / fetched.cpu_rate():>14.3f}")
    if costs:
        print(f"validation of the same {costs[0][1]:,} stored bars in batches of 10,000")
        for name, n, secs in costs:
            print(f"  {name:<44}{n / secs:>14,.0f} bars/s   ({secs * 1e6 / n:.1f} µs/bar)")
        label = "fetch + parse only, for comparison"
        print(f"  {label:<44}{fetched.rate():>14,.0f} bars/s   "
              f"({1e6 / fetched.rate():.1f} µs/bar)")
    if read_rows:
        print(f"read {args.read_bars:,} bars into numpy (best of {args.repeats})")
        for name, n, s in read_rows:
            assert n == args.read_bars, (name, n)
            print(f"  {name:<44}{n / s:>14,.0f} bars/s   ({s * 1000:.0f} ms)")
        print("  target >= 3,000,000 bars/s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--read-bars", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of (archive, \\copy, ccxt, fetch-only, \\copy); best of each")
    parser.add_argument("--batch-bars", type=int, default=50_000,
                        help="bars per validation call and transaction (1: every page)")
    parser.add_argument("--validation-rpc", action="store_true",
                        help="ValidateCandles(record=true) on the validation process per "
                             "batch, instead of the same application in-process")
    parser.add_argument("--skip-archive", action="store_true", help="no archive import")
    parser.add_argument("--skip-ccxt", action="store_true", help="no ccxt pipeline")
    parser.add_argument("--skip-reads", action="store_true", help="no read benchmark")
    parser.add_argument("--downloads", type=int, default=8,
                        help="archive files an import downloads ahead (and stores together)")
    parser.add_argument("--cpu-detail", action="store_true",
                        help="print each measurement's CPU seconds per process")
    parser.add_argument("--no-validation", action="store_true",
                        help="ingest with ingestion's own per-bar rules only")
    args, _ = parser.parse_known_args(argv)
    if not args.data.exists():
        print(f"recorded data not found at {args.data}; skipping")
        return 0
    work = scratch_dir("usdcarb-bench-ingest-")
    pg = PostgresServer(work / "pg", fast=True)
    redis = RedisServer(work / "redis")
    try:
        pg.start()
        pg.create_database("usdcarb")
        pg.psql("CREATE EXTENSION IF NOT EXISTS timescaledb", database="usdcarb")
        redis.start()
        return asyncio.run(run(args, pg, redis, work))
    finally:
        redis.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
