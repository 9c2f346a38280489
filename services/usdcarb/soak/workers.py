"""The stateful load of the soak, as users drive it through the gateway.

Each worker runs until ``stop`` is set and writes what the clients were told into the
``Ledger``: strategies and versions acknowledged (and deleted), backtests and sweeps
acknowledged as created and the outcome their stream ended with, ingest windows and
their outcomes, events seen on SubscribeEvents, webhook deliveries received. The
accounting pass compares that ledger with the stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format

from usdcarb.soak.load import RETRYABLE_GRPC, Caller, CallFailed, Failure, classify_grpc
from usdcarb.v1 import (
    backtest_pb2,
    backtest_pb2_grpc,
    common_pb2,
    ingestion_pb2,
    ingestion_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
    strategy_pb2,
    strategy_pb2_grpc,
)

logger = logging.getLogger(__name__)

# The market the backtests trade (loaded by the setup from the replay server) and the
# series the ingest followers walk through, window after window.
# (The samples' okx BTC/USDC repeats binance's bars: validation calls that leg aliased.)
BT_SYMBOL, BT_VENUES = "BTC/USDC", ("binance", "bybit")
BT_DAY = datetime(2023, 3, 10, tzinfo=UTC)
# (Kraken's OHLC endpoint serves only its latest 720 bars: no backfill windows there.)
FOLLOW_SERIES = (("binance", "USDC/USDT"), ("okx", "USDC/USDT"), ("okx", "BTC/USDT"),
                 ("binance", "BTC/USDT"))
FOLLOW_START, FOLLOW_END = datetime(2023, 3, 10, tzinfo=UTC), datetime(2023, 3, 12, tzinfo=UTC)
# The replay exchange's clock walks through the recording's last day during the load; an
# INGEST_MODE_FOLLOW job follows it bar by bar (the windows above stay behind the clock).
CLOCK_START, CLOCK_END = FOLLOW_END, datetime(2023, 3, 13, tzinfo=UTC)
FOLLOW_STEP = timedelta(hours=1)
WINDOW_TRIES = 3
BT_EVENT_TYPES = ("EVENT_TYPE_BACKTEST_SUCCEEDED", "EVENT_TYPE_BACKTEST_FAILED")
SWEEP_EVENT_TYPES = ("EVENT_TYPE_SWEEP_FINISHED",)
STREAM_TIMEOUT_S = 240.0


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def spread_params(entry_bps: float = 15.0) -> dict[str, Any]:
    return {"crossExchangeSpread": {"symbol": BT_SYMBOL, "venueA": BT_VENUES[0],
                                    "venueB": BT_VENUES[1], "entryBps": entry_bps,
                                    "exitBps": 3, "quantity": 0.5}}


def backtest_config(hours: int = 12) -> dict[str, Any]:
    venue = {"takerFeeBps": 1.0, "makerFeeBps": 0.5, "slippage": {"fixedBps": 0.5},
             "initialBalances": [{"asset": "BTC", "amount": 2},
                                 {"asset": "USDC", "amount": 100_000}]}
    return {"range": {"startTime": iso(BT_DAY), "endTime": iso(BT_DAY + timedelta(hours=hours))},
            "timeframe": "1m", "venues": [{"venue": v, **venue} for v in BT_VENUES],
            "fillPolicy": "FILL_POLICY_NEXT_BAR", "quoteAsset": "USDC"}


@dataclass
class StrategyAck:
    owner: str
    created: bool = False
    deleted: bool = False
    display_name: str = ""
    versions: set[str] = field(default_factory=set)  # version ids acknowledged
    # A rename or delete sent whose answer never came: the store may hold either state.
    unanswered: str = ""


@dataclass
class JobAck:
    """A backtest or sweep acknowledged as created, and what its stream ended with."""

    name: str
    caller: str
    transport: str
    request_id: str
    acked_at: float
    outcome: str = ""  # RESULT_OK / RESULT_FAILED / RESULT_CANCELLED from the stream
    reason: str = ""
    has_result: bool = False
    resumes: int = 0
    duplicate_events: int = 0  # events at or below a sequence already seen
    ended_at: float = 0.0


@dataclass
class IngestAck:
    exchange: str
    symbol: str
    start: datetime
    end: datetime
    name: str = ""
    request_id: str = ""
    outcome: str = ""
    reason: str = ""
    resumes: int = 0
    mode: str = "backfill"  # or "follow": no end, cancelled by the client when the load ends


@dataclass
class Ledger:
    """What the clients were told, for the accounting pass."""

    run: str
    strategies: dict[str, StrategyAck] = field(default_factory=dict)
    backtests: dict[str, JobAck] = field(default_factory=dict)
    sweeps: dict[str, JobAck] = field(default_factory=dict)
    ingests: list[IngestAck] = field(default_factory=list)
    create_request_ids: dict[str, str] = field(default_factory=dict)  # request id -> kind
    events_seen: Counter[str] = field(default_factory=Counter)  # SubscribeEvents: id -> times
    event_subjects: dict[str, str] = field(default_factory=dict)
    subscribe_resumes: int = 0
    webhook_received: Counter[str] = field(default_factory=Counter)  # webhook-id -> times
    webhook_bad_signatures: int = 0
    webhook_subjects: dict[str, str] = field(default_factory=dict)
    channel: str = ""
    subscriptions: list[str] = field(default_factory=list)
    failed_calls: list[str] = field(default_factory=list)  # calls that never succeeded


class Stop:
    """The run's clock: load until ``deadline``, then each worker finishes its step."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.time() + seconds
        self.event = asyncio.Event()

    def __call__(self) -> bool:
        return self.event.is_set() or time.time() >= self.deadline

    async def sleep(self, seconds: float) -> None:
        left = self.deadline - time.time()
        if left <= 0:
            return
        try:
            await asyncio.wait_for(self.event.wait(), min(seconds, left))
        except TimeoutError:
            pass


def _failed(ledger: Ledger, err: CallFailed) -> None:
    ledger.failed_calls.append(f"{err.op}: {err.code} {err.detail[:200]}")
    logger.warning("call failed for good: %s", err)


# --------------------------------------------------------------------- strategies CRUD
async def crud_worker(caller: Caller, ledger: Ledger, stop: Stop, *, transport: str,
                      rate_per_s: float) -> None:
    """Create, version, read, rename and (every fifth) delete strategies at a steady
    rate, over REST, native gRPC or the Python SDK."""
    k = 0
    pause = 1.0 / rate_per_s
    while not stop():
        k += 1
        try:
            await _crud_round(caller, ledger, stop, k, transport, pause)
        except CallFailed as err:
            _failed(ledger, err)
            await stop.sleep(pause)


async def _crud_round(caller: Caller, ledger: Ledger, stop: Stop, k: int, transport: str,
                      pause: float) -> None:
    """One strategy through its life: create, two versions, reads, rename, maybe delete."""
    stub = strategy_pb2_grpc.StrategyServiceStub(caller.channel)  # type: ignore[no-untyped-call]
    sid = f"soak-{ledger.run}-{caller.name}-{k}"
    ack = StrategyAck(owner=caller.name)
    ledger.strategies[sid] = ack
    request_id = str(uuid.uuid4())
    ledger.create_request_ids[request_id] = "strategy"
    if transport == "sdk":
        await _sdk_round(caller, ledger, stop, k, pause, sid, ack, request_id)
        return
    if transport == "rest":
        await caller.call("rest.CreateStrategy", lambda: caller.rest(
            "POST", f"/v1/strategies?strategyId={sid}&requestId={request_id}",
            {"displayName": f"soak {k}", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"}))
    else:
        await caller.call("grpc.CreateStrategy", lambda: caller.grpc_unary(
            stub.CreateStrategy, strategy_pb2.CreateStrategyRequest(
                strategy=strategy_pb2.Strategy(
                    display_name=f"soak {k}",
                    kind=strategy_pb2.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD),
                strategy_id=sid, request_id=request_id)))
    ack.created, ack.display_name = True, f"soak {k}"
    await stop.sleep(pause)
    for entry in (10 + k % 7, 30 + k % 5):
        params = spread_params(float(entry))
        if transport == "rest":
            got = await caller.call("rest.CreateStrategyVersion", functools.partial(
                caller.rest, "POST", f"/v1/strategies/{sid}/versions", {"parameters": params}))
            ack.versions.add(str(got["name"]).rsplit("/", 1)[1])
        else:
            request = strategy_pb2.CreateStrategyVersionRequest(
                parent=f"strategies/{sid}", version=json_format.ParseDict(
                    {"parameters": params}, strategy_pb2.StrategyVersion()))
            reply = await caller.call("grpc.CreateStrategyVersion", functools.partial(
                caller.grpc_unary, stub.CreateStrategyVersion, request))
            ack.versions.add(reply.name.rsplit("/", 1)[1])
        await stop.sleep(pause)
    if transport == "rest":
        await caller.call("rest.GetStrategy", lambda: caller.rest(
            "GET", f"/v1/strategies/{sid}"))
        await caller.call("rest.ListStrategyVersions", lambda: caller.rest(
            "GET", f"/v1/strategies/{sid}/versions"))
    else:
        await caller.call("grpc.GetStrategy", lambda: caller.grpc_unary(
            stub.GetStrategy, strategy_pb2.GetStrategyRequest(name=f"strategies/{sid}")))
        await caller.call("grpc.ListStrategyVersions", lambda: caller.grpc_unary(
            stub.ListStrategyVersions,
            strategy_pb2.ListStrategyVersionsRequest(parent=f"strategies/{sid}")))
    await stop.sleep(pause)
    renamed = f"soak {k} renamed"
    ack.unanswered = "rename"
    if transport == "rest":
        await caller.call("rest.UpdateStrategy", lambda: caller.rest(
            "PATCH", f"/v1/strategies/{sid}?updateMask=displayName",
            {"displayName": renamed}))
    else:
        await caller.call("grpc.UpdateStrategy", lambda: caller.grpc_unary(
            stub.UpdateStrategy, strategy_pb2.UpdateStrategyRequest(
                strategy=strategy_pb2.Strategy(name=f"strategies/{sid}",
                                               display_name=renamed),
                update_mask={"paths": ["display_name"]})))
    ack.display_name = renamed
    await stop.sleep(pause)
    if k % 5 == 0:
        await caller.call(f"{transport}.DeleteStrategy",
                          _delete(caller, stub, sid, transport))
        ack.deleted = True
        await stop.sleep(pause)


async def _sdk(call: Any) -> Any:
    """One attempt through the Python SDK (its own retries off: the soak's Caller
    retries and records each attempt), its UsdcarbError classified like any status."""
    from usdcarb_sdk.errors import UsdcarbError

    try:
        return await call
    except UsdcarbError as err:
        name = err.code.name
        if name == "INTERNAL" and "RST_STREAM" in err.message:
            raise Failure("RST_STREAM", True, err.message) from None
        raise Failure(name, name in RETRYABLE_GRPC, err.message, err.retry_after) from None


async def _sdk_round(caller: Caller, ledger: Ledger, stop: Stop, k: int, pause: float,
                     sid: str, ack: StrategyAck, request_id: str) -> None:
    """The strategy's life through the Python SDK's AsyncClient (as a user's script)."""
    from usdcarb_sdk import v1
    from usdcarb_sdk._gen.google.protobuf import FieldMask

    client = caller.sdk
    assert client is not None
    await caller.call("sdk.CreateStrategy", lambda: _sdk(client.strategies.create(
        display_name=f"soak {k}", kind="cross-exchange-spread", strategy_id=sid,
        request_id=request_id)))
    ack.created, ack.display_name = True, f"soak {k}"
    await stop.sleep(pause)
    for entry in (10 + k % 7, 30 + k % 5):
        params = spread_params(float(entry))
        # A new call per attempt (a coroutine is awaited once); a version's id is the hash
        # of its parameters, so a retried create finds the one a lost answer created.
        async def create_version(params: dict[str, Any] = params) -> Any:
            return await _sdk(client.strategies.create_version(sid, params))

        version = await caller.call("sdk.CreateStrategyVersion", create_version)
        ack.versions.add(version.name.rsplit("/", 1)[1])
        await stop.sleep(pause)

    async def versions() -> list[Any]:
        return [v async for v in client.strategies.all_versions(sid)]

    await caller.call("sdk.GetStrategy", lambda: _sdk(client.strategies.get(sid)))
    await caller.call("sdk.ListStrategyVersions", lambda: _sdk(versions()))
    await stop.sleep(pause)
    renamed = f"soak {k} renamed"
    ack.unanswered = "rename"
    await caller.call("sdk.UpdateStrategy", lambda: _sdk(client.strategies.update_strategy(
        v1.UpdateStrategyRequest(strategy=v1.Strategy(name=f"strategies/{sid}",
                                                      display_name=renamed),
                                 update_mask=FieldMask(paths=["display_name"])))))
    ack.display_name, ack.unanswered = renamed, ""
    await stop.sleep(pause)
    if k % 5 == 0:
        ack.unanswered = "delete"
        tries = 0

        async def delete() -> None:
            nonlocal tries
            tries += 1
            try:
                await _sdk(client.strategies.delete_strategy(name=f"strategies/{sid}"))
            except Failure as failure:
                if tries > 1 and failure.code == "NOT_FOUND":
                    return  # an earlier attempt did it; its answer was lost
                raise

        await caller.call("sdk.DeleteStrategy", delete)
        ack.deleted, ack.unanswered = True, ""
        await stop.sleep(pause)


def _delete(caller: Caller, stub: Any, sid: str, transport: str) -> Any:
    """Return one attempt of a delete; NOT_FOUND on a retry means an earlier attempt did
    it (its answer was lost), so the delete is idempotent for the client."""
    tries = 0

    async def attempt() -> None:
        nonlocal tries
        tries += 1
        try:
            if transport == "rest":
                await caller.rest("DELETE", f"/v1/strategies/{sid}")
            else:
                await caller.grpc_unary(stub.DeleteStrategy, strategy_pb2.DeleteStrategyRequest(
                    name=f"strategies/{sid}"))
        except Failure as failure:
            if tries > 1 and failure.code in ("NOT_FOUND", "HTTP_404"):
                return
            raise

    return attempt


# --------------------------------------------------------------------- backtests
async def backtest_worker(caller: Caller, ledger: Ledger, stop: Stop, *, version: str,
                          transport: str, hours: int, pause_s: float) -> None:
    """Create a backtest, then watch it to its outcome over ``transport`` ("sse",
    "ndjson" or "grpc"), resuming after the last sequence seen; again until stop, at
    most one create per ``pause_s`` (under the caller's heavy budget)."""
    config = backtest_config(hours)
    while not stop():
        began = time.time()
        try:
            await _one_backtest(caller, ledger, version, transport, config)
        except CallFailed as err:
            _failed(ledger, err)
        await stop.sleep(max(0.5, pause_s - (time.time() - began)))


async def _one_backtest(caller: Caller, ledger: Ledger, version: str, transport: str,
                        config: dict[str, Any]) -> None:
    stub = backtest_pb2_grpc.BacktestServiceStub(caller.channel)  # type: ignore[no-untyped-call]
    request_id = str(uuid.uuid4())
    ledger.create_request_ids[request_id] = "backtest"
    if transport == "grpc":
        request = backtest_pb2.CreateBacktestRequest(
            backtest=backtest_pb2.Backtest(
                strategy_version=version,
                config=json_format.ParseDict(config, backtest_pb2.BacktestConfig())),
            request_id=request_id)
        reply = await caller.call("grpc.CreateBacktest", lambda: caller.grpc_unary(
            stub.CreateBacktest, request))
        name = reply.name
    else:
        body = await caller.call("rest.CreateBacktest", lambda: caller.rest(
            "POST", f"/v1/backtests?requestId={request_id}",
            {"strategyVersion": version, "config": config}))
        name = str(body["name"])
    ack = JobAck(name, caller.name, transport, request_id, time.time())
    ledger.backtests[name] = ack
    await caller.call(f"{transport}.WatchBacktest",
                      lambda: _watch_backtest(caller, stub, ack, transport))


async def _watch_backtest(caller: Caller, stub: Any, ack: JobAck, transport: str) -> None:
    """One attempt at following a backtest: from after the last sequence seen to the
    outcome. A retry is a resume."""
    last = getattr(ack, "_last_seq", 0)
    if last:
        ack.resumes += 1

    def seen(sequence: int) -> bool:
        nonlocal last
        if sequence <= last:
            ack.duplicate_events += 1
            return False
        last = sequence
        ack._last_seq = sequence  # type: ignore[attr-defined]
        return True

    if transport == "grpc":
        try:
            call = stub.WatchBacktest(backtest_pb2.WatchBacktestRequest(
                name=ack.name, after_sequence=last), metadata=caller.metadata,
                timeout=STREAM_TIMEOUT_S)
            async for event in call:
                if not seen(event.sequence):
                    continue
                if event.HasField("completed"):
                    outcome = event.completed.outcome
                    ack.outcome = common_pb2.Outcome.Result.Name(outcome.result)
                    ack.reason = outcome.error.message
                    ack.has_result = event.completed.HasField("result")
                    ack.ended_at = time.time()
                    return
        except Exception as err:
            import grpc

            if isinstance(err, grpc.RpcError):
                raise classify_grpc(err) from None
            raise
        raise Failure("NETWORK", True, "stream ended before its outcome")
    path = f"/v1/{ack.name}:watch" + (f"?afterSequence={last}" if last else "")
    async for message in caller.rest_lines(path, sse=transport == "sse",
                                           timeout_s=STREAM_TIMEOUT_S):
        if not seen(int(message.get("sequence", 0))):
            continue
        if "completed" in message:
            outcome = message["completed"].get("outcome", {})
            ack.outcome = str(outcome.get("result", "RESULT_UNSPECIFIED"))
            ack.reason = str(outcome.get("error", {}).get("message", ""))
            ack.has_result = "result" in message["completed"]
            ack.ended_at = time.time()
            return
    raise Failure("NETWORK", True, "stream ended before its outcome")


async def sweep_worker(caller: Caller, ledger: Ledger, stop: Stop, *, version: str) -> None:
    """Sweeps (a 3 x 2 grid) created over REST and watched as NDJSON, one after another."""
    while not stop():
        try:
            await _one_sweep(caller, ledger, version)
        except CallFailed as err:
            _failed(ledger, err)
        await stop.sleep(2.0)


async def _one_sweep(caller: Caller, ledger: Ledger, version: str) -> None:
    request_id = str(uuid.uuid4())
    ledger.create_request_ids[request_id] = "sweep"
    body = {"strategyVersion": version, "config": backtest_config(12),
            "axes": [{"path": "entryBps", "values": [10, 15, 20]},
                     {"path": "exitBps", "values": [2, 3]}]}
    created = await caller.call("rest.CreateSweep", lambda: caller.rest(
        "POST", f"/v1/sweeps?requestId={request_id}", body))
    ack = JobAck(str(created["name"]), caller.name, "ndjson", request_id, time.time())
    ledger.sweeps[ack.name] = ack
    await caller.call("ndjson.WatchSweep", lambda: _watch_sweep(caller, ack))


async def _watch_sweep(caller: Caller, ack: JobAck) -> None:
    last = getattr(ack, "_last_seq", 0)
    if last:
        ack.resumes += 1
    path = f"/v1/{ack.name}:watch" + (f"?afterSequence={last}" if last else "")
    async for message in caller.rest_lines(path, sse=False, timeout_s=STREAM_TIMEOUT_S):
        sequence = int(message.get("sequence", 0))
        if sequence <= last:
            ack.duplicate_events += 1
            continue
        last = sequence
        ack._last_seq = sequence  # type: ignore[attr-defined]
        if "outcome" in message:
            ack.outcome = str(message["outcome"].get("result", "RESULT_UNSPECIFIED"))
            ack.reason = str(message["outcome"].get("error", {}).get("message", ""))
            ack.has_result = ack.outcome == "RESULT_OK"
            ack.ended_at = time.time()
            return
    raise Failure("NETWORK", True, "stream ended before its outcome")


# --------------------------------------------------------------------- ingestion
def ingest_request(ack: IngestAck) -> ingestion_pb2.CreateIngestJobRequest:
    rng = common_pb2.TimeRange()
    rng.start_time.FromDatetime(ack.start)
    if ack.mode == "backfill":
        rng.end_time.FromDatetime(ack.end)
    mode = (ingestion_pb2.INGEST_MODE_FOLLOW if ack.mode == "follow"
            else ingestion_pb2.INGEST_MODE_BACKFILL)
    return ingestion_pb2.CreateIngestJobRequest(
        ingest_job=ingestion_pb2.IngestJob(
            series=common_pb2.SeriesKey(exchange=ack.exchange, symbol=ack.symbol,
                                        timeframe="1m"),
            mode=mode, range=rng),
        request_id=ack.request_id)


async def ingest_window(caller: Caller, ledger: Ledger, ack: IngestAck) -> None:
    """Create one ingest job for ``ack``'s window and watch it to its outcome (resumed
    after the last sequence seen when the stream breaks)."""
    await create_ingest(caller, ledger, ack)
    await watch_ingest(caller, ack)


async def create_ingest(caller: Caller, ledger: Ledger, ack: IngestAck) -> None:
    stub = ingestion_pb2_grpc.IngestionServiceStub(caller.channel)  # type: ignore[no-untyped-call]
    ack.request_id = str(uuid.uuid4())
    ledger.create_request_ids[ack.request_id] = "ingest"
    request = ingest_request(ack)
    job = await caller.call("grpc.CreateIngestJob", lambda: caller.grpc_unary(
        stub.CreateIngestJob, request))
    ack.name = job.name


async def watch_ingest(caller: Caller, ack: IngestAck,
                       running: asyncio.Event | None = None) -> None:
    """Watch the job to its outcome; set ``running`` once it is seen RUNNING."""
    stub = ingestion_pb2_grpc.IngestionServiceStub(caller.channel)  # type: ignore[no-untyped-call]
    last = 0

    async def watch() -> None:
        nonlocal last
        if last:
            ack.resumes += 1
        try:
            async for event in stub.WatchIngestJob(
                    ingestion_pb2.WatchIngestJobRequest(name=ack.name, after_sequence=last),
                    metadata=caller.metadata, timeout=STREAM_TIMEOUT_S):
                last = max(last, event.sequence)
                if running is not None and event.job.state == common_pb2.JOB_STATE_RUNNING:
                    running.set()
                if event.HasField("outcome"):
                    ack.outcome = common_pb2.Outcome.Result.Name(event.outcome.result)
                    ack.reason = event.outcome.error.message
                    return
        except Exception as err:
            import grpc

            if isinstance(err, grpc.RpcError):
                raise classify_grpc(err) from None
            raise
        raise Failure("NETWORK", True, "stream ended before its outcome")

    await caller.call("grpc.WatchIngestJob", watch)


async def follow_job_worker(caller: Caller, ledger: Ledger, stop: Stop, *, exchange: str,
                            symbol: str, start: datetime, running: asyncio.Event) -> None:
    """One INGEST_MODE_FOLLOW job for the whole load: it follows the replay exchange's
    clock as it moves (``clock_worker``); when the load ends the client cancels it and
    watches it to its outcome."""
    stub = ingestion_pb2_grpc.IngestionServiceStub(caller.channel)  # type: ignore[no-untyped-call]
    ack = IngestAck(exchange, symbol, start, CLOCK_END, mode="follow")
    ledger.ingests.append(ack)
    try:
        await create_ingest(caller, ledger, ack)
    except CallFailed as err:
        _failed(ledger, err)
        return
    watcher = asyncio.ensure_future(watch_ingest(caller, ack, running))
    while not stop() and not watcher.done():
        await stop.sleep(1.0)
    try:
        if not watcher.done() or watcher.exception() is not None or not ack.outcome:
            # Cancelled when the load ends — also when its watch gave up during a fault
            # (the job runs on regardless; a user would cancel it and look again).
            await caller.call("grpc.CancelIngestJob", functools.partial(
                caller.grpc_unary, stub.CancelIngestJob,
                ingestion_pb2.CancelIngestJobRequest(name=ack.name)))
        try:
            await watcher
        except CallFailed as err:
            _failed(ledger, err)
            await watch_ingest(caller, ack)      # watched again, to the cancel's outcome
    except CallFailed as err:
        _failed(ledger, err)


async def follow_worker(caller: Caller, ledger: Ledger, stop: Stop, *, exchange: str,
                        symbol: str, seconds: float) -> None:
    """Follow a series from the replay server: one window after another, each a job,
    paced to spread the recording over the load phase."""
    pause = seconds / ((FOLLOW_END - FOLLOW_START) / FOLLOW_STEP)
    start = FOLLOW_START
    while not stop() and start < FOLLOW_END:
        end = min(start + FOLLOW_STEP, FOLLOW_END)
        for _ in range(WINDOW_TRIES):
            # A window that failed (the exchange's errors outlasted the job's retries) is
            # asked again, as a user would; each try is its own job, all accounted.
            ack = IngestAck(exchange, symbol, start, end)
            ledger.ingests.append(ack)
            try:
                await ingest_window(caller, ledger, ack)
            except CallFailed as err:
                _failed(ledger, err)
            if ack.outcome != "RESULT_FAILED":
                break
            await stop.sleep(pause)
        start = end
        await stop.sleep(pause)


async def set_replay_clock(session: Any, replay_url: str, now_ms: int) -> None:
    """Move the replay exchange's clock (its admin endpoint, straight to the server)."""
    import aiohttp

    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.post(f"{replay_url}/_replay/clock", json={"now_ms": now_ms},
                                timeout=aiohttp.ClientTimeout(total=5)) as resp:
            await resp.read()


async def clock_worker(replay_url: str, stop: Stop, following: asyncio.Event) -> None:
    """Once the follow job runs (it starts where the exchange's clock stands), move the
    replay exchange's clock from CLOCK_START to CLOCK_END over the rest of the load, a
    minute of the recording at a time; at the end it stands at CLOCK_END again."""
    import aiohttp

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(following.wait(), max(1.0, stop.deadline - time.time()))
    span_ms = (CLOCK_END - CLOCK_START).total_seconds() * 1000
    start_ms = int(CLOCK_START.timestamp() * 1000)
    began = time.time()
    seconds = max(1.0, stop.deadline - began)
    async with aiohttp.ClientSession() as session:
        while not stop():
            done = min(1.0, (time.time() - began) / seconds)
            await set_replay_clock(session, replay_url,
                                   start_ms + int(done * span_ms) // 60_000 * 60_000)
            await stop.sleep(1.0)
        await set_replay_clock(session, replay_url, int(CLOCK_END.timestamp() * 1000))


# --------------------------------------------------------------------- notifications
async def subscribe_worker(caller: Caller, ledger: Ledger, stop: Stop,
                           drained: asyncio.Event) -> None:
    """SubscribeEvents over native gRPC, from the first event on, resumed after the last
    id seen whenever the stream breaks; runs until the drain is over."""
    stub = notification_pb2_grpc.NotificationServiceStub(caller.channel)  # type: ignore[no-untyped-call]
    after = "0"
    types = [notification_pb2.EventType.Value(t) for t in BT_EVENT_TYPES + SWEEP_EVENT_TYPES]

    async def attempt() -> None:
        nonlocal after
        call = stub.SubscribeEvents(notification_pb2.SubscribeEventsRequest(
            event_types=types, after_id=after), metadata=caller.metadata)
        try:
            reader = asyncio.ensure_future(_read_events(call, ledger, lambda i: _set_after(i)))
            done = asyncio.ensure_future(drained.wait())
            await asyncio.wait({reader, done}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                done.cancel()
                reader.result()  # raises the stream's error
                raise Failure("NETWORK", True, "event stream ended")
            call.cancel()
            reader.cancel()
        except Exception as err:
            import grpc

            if isinstance(err, grpc.RpcError):
                raise classify_grpc(err) from None
            raise

    def _set_after(event_id: str) -> None:
        nonlocal after
        after = event_id

    while not drained.is_set():
        try:
            await caller.call("grpc.SubscribeEvents", attempt, stop=drained.is_set)
        except CallFailed as err:
            if drained.is_set():
                return
            _failed(ledger, err)
            await asyncio.sleep(1.0)
        ledger.subscribe_resumes += 1


async def _read_events(call: Any, ledger: Ledger, advance: Any) -> None:
    async for message in call:
        if message.HasField("event"):
            event = message.event
            ledger.events_seen[event.id] += 1
            ledger.event_subjects[event.id] = event.subject
            advance(event.id)
