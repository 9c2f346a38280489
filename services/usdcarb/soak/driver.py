"""Run one soak: bring up a stack of its own, load it while faults are injected, drain,
account, report, and stop every process it started.

Phases (each bounded): stack up (under ``<out>/stack``, never .run/stack) → setup
(users log in through identity, the backtests' market is backfilled from the replay
server, strategies, a webhook channel and subscriptions) → load for ``seconds`` while
the fault schedule runs → drain (every job acknowledged reaches its outcome, every
delivery leaves PENDING) → accounting over the stores → stack down → report.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import importlib
import logging
import os
import shutil
import signal
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from usdcarb.devstack.ports import DevstackError, child_pids, free_port, signal_pid
from usdcarb.devstack.stack import Stack, StackInfo, _alive
from usdcarb.soak import accounting, report, tools
from usdcarb.soak.load import Caller, Recorder
from usdcarb.soak.workers import (
    BT_DAY,
    BT_SYMBOL,
    BT_VENUES,
    CLOCK_START,
    FOLLOW_SERIES,
    IngestAck,
    Ledger,
    Stop,
    backtest_worker,
    clock_worker,
    crud_worker,
    follow_job_worker,
    follow_worker,
    ingest_window,
    set_replay_clock,
    spread_params,
    subscribe_worker,
    sweep_worker,
)
from usdcarb_sdk import AsyncClient

logger = logging.getLogger(__name__)

ADMIN = os.environ.get("USDCARB_IDENTITY_BOOTSTRAP_ADMIN_USERNAME", "admin")
ADMIN_PASSWORD = os.environ.get("USDCARB_IDENTITY_BOOTSTRAP_ADMIN_PASSWORD",
                                "dev-only-bootstrap-password")
PASSWORD = "soak password, long enough 19"
# Heavy budget per minute by role (services/usdcarb/ratelimit/limits.yaml): the backtest
# workers of one subject pace themselves under it.
HEAVY_PER_MIN = {"analyst": 20, "trader": 40}


@dataclass
class SoakSettings:
    seconds: float = 180.0
    seed: int = 1
    out: Path = Path(".run/soak")
    faults: bool = True
    fault_kinds: list[str] | None = None
    backtest_streams: int = 20
    crud_rate: float = 2.0  # operations per second per CRUD caller
    read_rps: int = 8  # per load tool
    drain_s: float = 150.0
    analysts: int = 6
    traders: int = 2


@dataclass
class Outcome:
    exit_code: int
    report: dict[str, Any] = field(default_factory=dict)


def _faults_module() -> Any:
    """soak-faults' injectors, when they are there (None: load and accounting only)."""
    try:
        return importlib.import_module("usdcarb.soak.faults"), importlib.import_module(
            "usdcarb.soak.schedule")
    except ImportError as exc:
        logger.warning("no fault injection (%s): load and accounting only", exc)
        return None


class WebhookReceiver:
    """The desk's webhook endpoint on loopback: checks each Standard Webhooks signature
    and counts receipts per webhook-id (the delivery id)."""

    def __init__(self, ledger: Ledger) -> None:
        self.secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        self.ledger = ledger
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.url = f"http://127.0.0.1:{port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers.items()))
        except WebhookVerificationError:
            self.ledger.webhook_bad_signatures += 1
            return web.Response(status=400)
        webhook_id = request.headers.get("webhook-id", "")
        self.ledger.webhook_received[webhook_id] += 1
        if isinstance(payload, dict):
            self.ledger.webhook_subjects[webhook_id] = str(payload.get("subject", ""))
        return web.Response(status=200)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Soak:
    """One run of the soak."""

    def __init__(self, settings: SoakSettings) -> None:
        self.settings = settings
        self.out = settings.out.resolve()
        self.root = self.out / "stack"
        self.run_id = uuid.uuid4().hex[:6]
        self.recorder = Recorder()
        self.ledger = Ledger(run=self.run_id)
        self.fault_records: list[Any] = []
        self.schedule: Any = None
        self.faults: Any = None
        self.stack: Stack | None = None
        self.info: StackInfo | None = None
        self.stack_pids: dict[str, int] = {}
        self.tool_pids: list[int] = []
        self.phases: dict[str, float] = {}
        self.tool_counts: dict[str, int] = {}
        self.channel: Any = None
        self.descendants: dict[int, str | None] = {}  # pid -> its start time

    # ------------------------------------------------------------------ stack
    def _fresh_root(self) -> None:
        if (self.root / "stack.json").exists():
            logger.info("a previous soak stack is recorded under %s: stopping it", self.root)
            Stack(self.root).down()
        shutil.rmtree(self.root, ignore_errors=True)
        self.out.mkdir(parents=True, exist_ok=True)

    async def _up(self) -> StackInfo:
        """Start the stack; once more on fresh ports if a process of it could not start.

        A port from ``free_port`` is free only a moment: on this busy machine another
        socket sometimes takes it before the service binds it (the start fails loudly;
        nothing of that attempt is kept)."""
        for attempt in (1, 2):
            try:
                return await self._up_once()
            except DevstackError as exc:
                if attempt == 2:
                    raise
                logger.warning("the stack did not start (%s): once more on fresh ports",
                               str(exc).splitlines()[0][:200])
                self._note_descendants()
                await self._down()
                if self.faults is not None:  # checked for leftovers at the end too
                    self.tool_pids += list(self.faults.started_pids())
                await asyncio.to_thread(_stop_children)
                shutil.rmtree(self.root, ignore_errors=True)
        raise AssertionError("unreachable")

    async def _up_once(self) -> StackInfo:
        modules = _faults_module() if self.settings.faults else None
        env: dict[str, str] = {}
        options: dict[str, Any] = {}
        if modules is not None:
            faults_mod, schedule_mod = modules
            self.schedule = schedule_mod.FaultSchedule.build(
                self.settings.seed, self.settings.seconds, self.settings.fault_kinds)
            self.faults = faults_mod.SoakFaults(self.root, self.schedule)
            env = dict(self.faults.stack_env())
            if hasattr(self.faults, "stack_options"):
                options = dict(self.faults.stack_options())
        self.stack = Stack(self.root, gateway_port=free_port(), fast_postgres=False, env=env,
                           **options)
        info = await asyncio.to_thread(self.stack.up)
        self._remember(info)
        if self.faults is not None:
            info = await self.faults.start(self.stack, info)
            self._remember(info)
        return info

    def _remember(self, info: StackInfo) -> None:
        self.info = info
        for name, proc in info.processes.items():
            self.stack_pids.setdefault(f"{name}:{proc.pid}", proc.pid)

    async def _down(self) -> None:
        if self.faults is not None:
            with contextlib.suppress(Exception):
                await self.faults.stop()
        if self.stack is not None:
            await asyncio.to_thread(self.stack.down)

    # ------------------------------------------------------------------ callers
    async def _login(self, session: aiohttp.ClientSession, username: str,
                     password: str) -> str:
        assert self.info is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                async with session.post(
                        f"{self.info.gateway}/v1/auth:login", ssl=self.info.ssl_context() or False,
                        json={"username": username, "password": password},
                        timeout=aiohttp.ClientTimeout(total=15)) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status == 200:
                        return str(body["accessToken"])
                    if resp.status not in (429, 502, 503, 504) or time.monotonic() > deadline:
                        raise RuntimeError(f"expected a token for {username}, got "
                                           f"{resp.status} {body}")
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(1.0)

    async def _callers(self, session: aiohttp.ClientSession) -> dict[str, Caller]:
        """Users of every role, created by the bootstrap admin; tokens from identity."""
        assert self.info is not None
        channel = self.channel = self.info.aio_channel()
        admin_token = await self._login(session, ADMIN, ADMIN_PASSWORD)
        admin = Caller("admin", admin_token, self.recorder, self.info.gateway,
                       self.info.ssl_context(), channel, session, seed=self.settings.seed)
        roles = ([("analyst", i) for i in range(self.settings.analysts)]
                 + [("trader", i) for i in range(self.settings.traders)]
                 + [("viewer", i) for i in range(2)])
        callers: dict[str, Caller] = {"admin": admin}
        for role, i in roles:
            username = f"soak-{self.run_id}-{role}-{i}"
            request_id = str(uuid.uuid4())
            await admin.call("rest.CreateUser", functools.partial(
                admin.rest, "POST", f"/v1/users?requestId={request_id}",
                {"username": username, "password": PASSWORD, "roles": [f"ROLE_{role.upper()}"]}))
            token = await self._login(session, username, PASSWORD)
            callers[f"{role}-{i}"] = Caller(f"{role}-{i}", token, self.recorder,
                                            self.info.gateway, self.info.ssl_context(), channel,
                                            session, seed=self.settings.seed)
        return callers

    async def _setup(self, callers: dict[str, Caller]) -> dict[str, str]:
        """Backfill the backtests' market, one strategy version per backtesting caller,
        the webhook channel and the subscriptions. Return caller name -> version."""
        trader = callers["trader-0"]
        windows = [IngestAck(v, BT_SYMBOL, BT_DAY, BT_DAY + timedelta(days=1))
                   for v in BT_VENUES]
        self.ledger.ingests.extend(windows)
        await asyncio.gather(*(ingest_window(trader, self.ledger, w) for w in windows))
        for w in windows:
            if w.outcome != "RESULT_OK":
                raise RuntimeError(f"expected the backtests' market backfilled, got {w}")
        versions: dict[str, str] = {}
        for name, caller in callers.items():
            if not name.startswith(("analyst", "trader")):
                continue
            sid = f"soak-{self.run_id}-bt-{name}"
            await caller.call("rest.CreateStrategy", functools.partial(
                caller.rest, "POST", f"/v1/strategies?strategyId={sid}&requestId={uuid.uuid4()}",
                {"displayName": "soak backtests", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"}))
            got = await caller.call("rest.CreateStrategyVersion", functools.partial(
                caller.rest, "POST", f"/v1/strategies/{sid}/versions",
                {"parameters": spread_params()}))
            versions[name] = str(got["name"])
        return versions

    async def _notifications(self, caller: Caller, receiver: WebhookReceiver) -> None:
        channel = await caller.call("rest.CreateChannel", functools.partial(
            caller.rest, "POST", f"/v1/channels?requestId={uuid.uuid4()}",
            {"displayName": f"soak {self.run_id}",
             "webhook": {"url": receiver.url, "secret": receiver.secret}}))
        self.ledger.channel = str(channel["name"])
        for types, prefix in ((["EVENT_TYPE_BACKTEST_SUCCEEDED", "EVENT_TYPE_BACKTEST_FAILED"],
                               "backtests/"), (["EVENT_TYPE_SWEEP_FINISHED"], "sweeps/")):
            sub = await caller.call("rest.CreateSubscription", functools.partial(
                caller.rest, "POST", f"/v1/subscriptions?requestId={uuid.uuid4()}",
                {"channel": self.ledger.channel, "eventTypes": types, "subjectPrefix": prefix,
                 "enabled": True}))
            self.ledger.subscriptions.append(str(sub["name"]))

    # ------------------------------------------------------------------ load
    def _on_fault(self, record: Any) -> None:
        self.fault_records.append(record)
        logger.info("fault %s on %s: %s", getattr(record, "kind", "?"),
                    getattr(record, "target", "?"), getattr(record, "detail", ""))

    async def _load(self, callers: dict[str, Caller], versions: dict[str, str],
                    drained: asyncio.Event) -> None:
        assert self.info is not None
        s = self.settings
        stop = Stop(s.seconds)
        t0 = time.time()
        self.phases["load_start"] = t0
        self.phases["load_end"] = stop.deadline
        tool_runs = [r for r in await asyncio.gather(
            tools.start_ghz(self.out, self.info.gateway_target, self.info.ca,
                            callers["viewer-0"].token, s.seconds, s.read_rps),
            tools.start_vegeta(self.out, self.info.gateway, self.info.ca,
                               callers["viewer-1"].token, s.seconds, s.read_rps)) if r]
        self.tool_pids = [r.proc.pid for r in tool_runs]
        workers: list[asyncio.Task[Any]] = []
        crud = [("analyst-0", "rest"), ("analyst-1", "grpc"), ("analyst-2", "rest"),
                ("analyst-3", "sdk"), ("trader-1", "rest")]
        sdk_caller = callers["analyst-3"]
        # The Python SDK as a user's script has it; its own retries off (the Caller
        # retries and records every attempt).
        sdk_caller.sdk = AsyncClient(self.info.gateway, token=sdk_caller.token,
                                     ca_file=self.info.ca or None, retries=0, timeout=30)
        for name, transport in crud:
            if name in callers:
                workers.append(asyncio.create_task(crud_worker(
                    callers[name], self.ledger, stop, transport=transport,
                    rate_per_s=s.crud_rate), name=f"crud-{name}"))
        bt_callers = sorted(versions)
        per_subject: dict[str, int] = {}
        assignments = []
        for i in range(s.backtest_streams):
            name = bt_callers[i % len(bt_callers)]
            per_subject[name] = per_subject.get(name, 0) + 1
            assignments.append((name, ("sse", "ndjson", "grpc")[i % 3]))
        for i, (name, transport) in enumerate(assignments):
            role = name.split("-")[0]
            pause = 60.0 * per_subject[name] / HEAVY_PER_MIN[role] * 1.25
            workers.append(asyncio.create_task(backtest_worker(
                callers[name], self.ledger, stop, version=versions[name], transport=transport,
                hours=6 + i % 7, pause_s=pause), name=f"backtest-{i}"))
        workers.append(asyncio.create_task(sweep_worker(
            callers["trader-0"], self.ledger, stop, version=versions["trader-0"]),
            name="sweep"))
        for exchange, symbol in FOLLOW_SERIES:
            workers.append(asyncio.create_task(follow_worker(
                callers["trader-1"], self.ledger, stop, exchange=exchange, symbol=symbol,
                seconds=s.seconds),
                name=f"follow-{exchange}-{symbol}"))
        # A FOLLOW job on a market the backtests trade, following the replay's clock.
        replay_url = f"http://127.0.0.1:{self.info.processes['replay'].port}"
        async with aiohttp.ClientSession() as session:  # before the job starts from it
            await set_replay_clock(session, replay_url, int(CLOCK_START.timestamp() * 1000))
        following = asyncio.Event()
        clock = asyncio.create_task(clock_worker(replay_url, stop, following), name="clock")
        workers.append(asyncio.create_task(follow_job_worker(
            callers["trader-0"], self.ledger, stop, exchange=BT_VENUES[1], symbol=BT_SYMBOL,
            start=CLOCK_START, running=following), name="follow-job"))
        subscriber = asyncio.create_task(subscribe_worker(
            callers["analyst-0"], self.ledger, stop, drained), name="subscribe")
        fault_task = None
        if self.faults is not None:
            fault_task = asyncio.create_task(self.faults.run(t0, self._on_fault))
        await asyncio.sleep(max(0.0, stop.deadline - time.time()))
        logger.info("load phase over: %d attempts so far; waiting for workers to finish "
                    "their step", len(self.recorder.attempts))
        done, pending = await asyncio.wait([*workers, clock], timeout=s.drain_s)
        for task in pending:
            logger.warning("worker %s still busy after the drain bound: cancelled",
                           task.get_name())
            task.cancel()
        for task in done:
            if task.exception() is not None:
                logger.error("worker %s crashed: %r", task.get_name(), task.exception())
                self.ledger.failed_calls.append(f"worker {task.get_name()} crashed: "
                                                f"{task.exception()!r}")
        if fault_task is not None:
            try:
                records = await asyncio.wait_for(fault_task, s.drain_s)
                if records:
                    self.fault_records = list(records)
            except TimeoutError:
                logger.error("the fault schedule did not finish within the drain bound")
        self.phases["workers_done"] = time.time()
        for run in tool_runs:
            await tools.finish(run, 30.0)
            if run.name == "ghz":
                self.tool_counts["ghz"] = tools.collect_ghz(run, self.recorder)
            else:
                self.tool_counts["vegeta"] = await tools.collect_vegeta(run, self.recorder)
        await self._drain()
        # The subscriber catches up with the last events, then stops.
        await self._wait_events_seen(30.0)
        drained.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(subscriber, 30)
        self.phases["drained"] = time.time()

    async def _drain(self) -> None:
        """Wait (bounded) until every job acknowledged is terminal in its store and every
        delivery of our channel has left PENDING."""
        assert self.info is not None
        deadline = time.time() + self.settings.drain_s
        conn = await _connect(self.info.dsn)
        try:
            while time.time() < deadline:
                open_jobs = await accounting.open_jobs(conn, self.ledger)
                pending = await accounting.pending_deliveries(conn, self.ledger)
                if open_jobs == 0 and pending == 0:
                    return
                logger.info("drain: %d jobs not terminal, %d deliveries pending",
                            open_jobs, pending)
                await asyncio.sleep(2.0)
        finally:
            await conn.close()

    async def _wait_events_seen(self, within_s: float) -> None:
        assert self.info is not None
        deadline = time.time() + within_s
        conn = await _connect(self.info.dsn)
        try:
            while time.time() < deadline:
                expected = await accounting.expected_event_subjects(conn, self.ledger)
                seen = set(self.ledger.event_subjects.values())
                if expected <= seen:
                    return
                await asyncio.sleep(1.0)
        finally:
            await conn.close()

    # ------------------------------------------------------------------ run
    async def run(self) -> Outcome:
        self._fresh_root()
        started = time.time()
        self.phases["start"] = started
        table: dict[str, Any] = {}
        error = ""
        try:
            await self._up()
            self.phases["stack_up"] = time.time()
            assert self.info is not None
            receiver = WebhookReceiver(self.ledger)
            await receiver.start()
            callers: dict[str, Caller] = {}
            async with aiohttp.ClientSession() as session:
                try:
                    callers.update(await self._callers(session))
                    versions = await self._setup(callers)
                    await self._notifications(callers["analyst-0"], receiver)
                    self.phases["setup_done"] = time.time()
                    drained = asyncio.Event()
                    await self._load(callers, versions, drained)
                    table = await accounting.account(self.info, self.ledger)
                finally:
                    await receiver.stop()
                    if self.channel is not None:
                        await self.channel.close()
                    for caller in callers.values():
                        if caller.sdk is not None:
                            await caller.sdk.close()
        except Exception as exc:
            logger.exception("the soak broke off")
            error = repr(exc)
        finally:
            self._note_descendants()
            try:
                await self._down()
            except Exception as exc:
                error = error or f"stack down failed: {exc!r}"
        leftovers = self._leftovers()
        table.setdefault("processes", {})["left_running"] = leftovers
        self.phases["end"] = time.time()
        document = report.build(
            settings=self.settings, run_id=self.run_id, recorder=self.recorder,
            ledger=self.ledger, faults=self.fault_records,
            schedule=self.schedule.to_json() if self.schedule is not None else None,
            accounting=table, phases=self.phases, tool_counts=self.tool_counts, error=error)
        report.write(self.out, document, self.recorder)
        report.write_ledger(self.out, self.ledger)
        return Outcome(0 if document["passed"] else 1, document)

    def _note_descendants(self) -> None:
        """Remember what the stack's processes spawned (engine pools, PostgreSQL's
        backends, replicas' children), and our own children, before stopping it all."""
        roots = set(self.stack_pids.values()) | {os.getpid()}
        if self.faults is not None and hasattr(self.faults, "started_pids"):
            roots |= set(self.faults.started_pids())
        if self.root.joinpath("stack.json").exists():
            roots |= {p.pid for p in StackInfo.load(self.root / "stack.json").processes.values()}
        todo = list(roots)
        while todo:
            for child in child_pids(todo.pop()):
                if child not in self.descendants:
                    self.descendants[child] = _start_time(child)
                    todo.append(child)

    def _leftovers(self) -> list[str]:
        """Every process this soak started (stack, replicas, tools, fault helpers and
        whatever they spawned) that still runs."""
        pids = set(self.stack_pids.values()) | set(self.tool_pids) | set(child_pids(os.getpid()))
        # A descendant counts only if it is still the same process (not a reused pid).
        pids |= {pid for pid, started in self.descendants.items()
                 if started is not None and _start_time(pid) == started}
        if self.faults is not None and hasattr(self.faults, "started_pids"):
            pids |= set(self.faults.started_pids())
        if self.root.joinpath("stack.json").exists():
            info = StackInfo.load(self.root / "stack.json")
            pids |= {p.pid for p in info.processes.values() if _alive(p)}
        left = []
        for pid in sorted(pids):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = Path(f"/proc/{pid}/stat").read_text().split()[2]
            except OSError:
                continue
            if state != "Z":
                left.append(f"{pid} {cmd[:120]}")
        return left


def _stop_children(grace_s: float = 10.0) -> None:
    """Stop what a failed start left of ours: our own child processes (each started by
    this soak; e.g. an Envoy that never wrote its base id is in no stack.json), by PID."""
    children = child_pids(os.getpid())
    for pid in children:
        signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_running(p) for p in children):
        time.sleep(0.1)
    for pid in children:
        if _running(pid):
            logger.warning("pid %d still running %.0fs after SIGTERM: SIGKILL", pid, grace_s)
            signal_pid(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


async def _connect(dsn: str) -> asyncpg.Connection:
    deadline = time.time() + 60
    while True:
        try:
            return await asyncpg.connect(dsn, timeout=5)
        except (OSError, asyncpg.PostgresError):
            if time.time() > deadline:
                raise
            await asyncio.sleep(1.0)


def run(settings: SoakSettings) -> Outcome:
    return asyncio.run(Soak(settings).run())

