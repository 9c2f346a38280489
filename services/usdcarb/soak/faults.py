"""The soak's fault injectors: each window of a ``FaultSchedule`` applied to a running
stack, lifted, and timed until the system serves again.

A stack for the soak runs two replicas of every service and an Envoy started for hot
restart (``stack_options``), and ingestion reaches the exchange (the replay server)
through the fault proxy (``stack_env``). Then, for every window, ``run`` records a
``FaultRecord``: ``start`` (injected), ``end`` (lifted: the process is back, the burst
over) and ``recovered_at`` — the first moment after ``end`` when the component answers
(PostgreSQL ``SELECT 1``, Redis ``PING``, the replica ``SERVING``, Envoy's new epoch
``LIVE``, an exchange page answered 200 again), every backend host is healthy in Envoy's
eyes, and the caller's own ``probe`` (e.g. a request through the gateway), if given,
succeeds — three checks in a row, 0.25 s apart. ``recovered_at - end`` is the time to
recover; ``None`` means it did not within ``recover_timeout_s``.

Only processes of the stack are touched, by PID through ``Stack`` (which checks each PID
still runs what it started), plus the fault proxy this object starts itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis

from usdcarb.devstack.ports import free_port, pid_alive
from usdcarb.devstack.stack import SERVICES, Stack, StackInfo, replica_key
from usdcarb.soak.faultproxy import FaultProxyProcess, LegFaults
from usdcarb.soak.schedule import FaultSchedule, FaultWindow

logger = logging.getLogger(__name__)

__all__ = ["FaultRecord", "SoakFaults", "envoy_hosts"]

REPLICAS = 2
# Every exchange request during a replay burst fails: the budget outlasts any burst.
BURST_BUDGET = 1_000_000
PROBE_INTERVAL_S = 0.25
RECOVERED_STREAK = 3
RUN_GRACE_S = 60.0  # run() returns by t0 + duration + this at the latest

Probe = Callable[[], Awaitable[bool]]


@dataclass
class FaultRecord:
    """What one fault did, in wall-clock seconds (``time.time()``)."""

    kind: str
    target: str
    start: float
    end: float
    recovered_at: float | None
    detail: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    scheduled_s: float = 0.0  # the window's start_s (after t0)

    @property
    def time_to_recover_s(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.end

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "time_to_recover_s": self.time_to_recover_s}


def envoy_hosts(admin: str) -> dict[str, dict[int, bool]]:
    """Return Envoy's view of each backend cluster: {cluster: {port: healthy}}."""
    with urllib.request.urlopen(f"{admin}/clusters", timeout=2) as reply:
        body = reply.read().decode()
    hosts: dict[str, dict[int, bool]] = {}
    for line in body.splitlines():
        parts = line.split("::")
        if len(parts) >= 4 and parts[2] == "health_flags" and parts[0] in SERVICES:
            port = int(parts[1].rpartition(":")[2])
            hosts.setdefault(parts[0], {})[port] = parts[3] == "healthy"
    return hosts


def _get_json(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


def _replay_ok(replay: str) -> int:
    """Return how many exchange requests the replay server has answered 200."""
    stats = _get_json(f"{replay}/_replay/stats")
    return sum(int(c.get("200", 0)) for c in stats["statuses"].values())


class SoakFaults:
    """Inject ``schedule`` into a stack: ``stack_env``/``stack_options`` before
    ``Stack.up``, then ``start``, ``run`` while the load runs, ``stop`` at the end."""

    def __init__(self, root: Path, schedule: FaultSchedule, *, probe: Probe | None = None,
                 recover_timeout_s: float = 60.0) -> None:
        self.root = Path(root)
        self.schedule = schedule
        self.probe = probe
        self.recover_timeout_s = recover_timeout_s
        self.records: list[FaultRecord] = []
        self._rng = random.Random(f"usdcarb-soak-inject:{schedule.seed}")
        self._proxy: FaultProxyProcess | None = None
        self._stack: Stack | None = None
        self._info: StackInfo | None = None
        self._pids: set[int] = set()
        # What must be undone if a fault is interrupted (run cancelled): restored by stop().
        self._undo: list[Callable[[], object]] = []

    # ------------------------------------------------------------------ set-up
    def stack_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Stack``: two replicas of every service, Envoy ready for
        hot restart."""
        return {"replicas": REPLICAS, "hot_restart": True}

    def stack_env(self) -> dict[str, str]:
        """Start the fault proxy of the ingestion→exchange leg and return the settings
        that route ingestion's exchange calls through it (pass as ``Stack(env=...)``)."""
        if self._proxy is None:
            proxy = FaultProxyProcess(listen_port=free_port(), control_port=free_port(),
                                      log=self.root / "logs" / "faultproxy.log",
                                      seed=self.schedule.seed)
            proxy.start()
            self._proxy = proxy
            if proxy.pid is not None:
                self._pids.add(proxy.pid)
        return {"USDCARB_INGESTION_REPLAY_URL": f"http://127.0.0.1:{self._proxy.listen_port}"}

    async def start(self, stack: Stack, info: StackInfo) -> StackInfo:
        """After ``stack.up()``: point the proxy at the replay server and check that Envoy
        sees every replica healthy; return the stack's current description."""
        self._stack, self._info = stack, info
        self._pids.update(p.pid for p in info.processes.values())
        if self._proxy is not None:
            await asyncio.to_thread(self._proxy.set_upstream, "127.0.0.1",
                                    info.processes["replay"].port)
        if not await self._until(self._all_hosts_healthy, 120.0):
            raise RuntimeError(f"expected Envoy to see {REPLICAS} healthy hosts per backend, "
                               f"got {await asyncio.to_thread(envoy_hosts, info.admin)}")
        return self._current()

    def started_pids(self) -> list[int]:
        """Every pid this object started or replaced (the proxy, restarted processes)."""
        return sorted(self._pids)

    async def undo(self) -> None:
        """Lift a fault that ``run``/``inject`` was cancelled in the middle of (clear the
        replay's switches or the proxy's, restart what was killed); idempotent."""
        while self._undo:
            undo = self._undo.pop()
            try:
                await asyncio.to_thread(undo)
            except Exception:
                logger.exception("undoing an interrupted fault failed")

    async def stop(self) -> None:
        """Undo an interrupted fault, stop the fault proxy (by PID); idempotent."""
        await self.undo()
        if self._proxy is not None:
            await asyncio.to_thread(self._proxy.stop)

    # ------------------------------------------------------------------ the run
    async def run(self, t0: float, on_event: Callable[[FaultRecord], None] = lambda _: None,
                  ) -> list[FaultRecord]:
        """Inject every window at ``t0 + start_s`` (or once the previous fault has
        recovered, if later); return the records. Returns by t0 + duration + 60 s: a
        window that cannot start by then is skipped (logged). A fault that cannot be
        applied (a process that does not come back) is undone as far as possible and
        recorded as never recovered, with the error in ``detail``."""
        if self._stack is None:
            raise RuntimeError("expected start() before run()")
        deadline = t0 + self.schedule.duration_s + RUN_GRACE_S
        for window in self.schedule.windows:
            at = max(t0 + window.start_s, time.time())
            if at > deadline - self.recover_timeout_s:
                logger.warning("fault %s on %s skipped: no time left to recover in this run",
                               window.kind, window.target)
                continue
            await asyncio.sleep(at - time.time())
            try:
                async with asyncio.timeout(deadline - time.time()):  # run()'s own bound
                    record = await self.inject(window)
            except Exception as exc:  # reported as a fault that never recovered
                logger.exception("fault %s on %s could not be applied", window.kind,
                                 window.target)
                await self.undo()
                now = time.time()
                record = FaultRecord(window.kind, window.target, now, now, None,
                                     detail=f"injection failed: {exc!r}"[:500],
                                     params=dict(window.params), scheduled_s=window.start_s)
            self.records.append(record)
            logger.info("fault %s on %s: lifted after %.1fs, recovered %s (%s)", record.kind,
                        record.target, record.end - record.start,
                        "never" if record.time_to_recover_s is None
                        else f"after {record.time_to_recover_s:.1f}s", record.detail)
            on_event(record)
        return list(self.records)

    async def inject(self, window: FaultWindow) -> FaultRecord:
        """Apply one window now, lift it, wait (bounded) for recovery; return its record."""
        injector = {
            "pg_restart_fast": self._postgres, "pg_restart_immediate": self._postgres,
            "redis_kill": self._redis, "service_kill": self._service,
            "envoy_hot_restart": self._envoy, "replay_429": self._replay,
            "replay_5xx": self._replay, "slow_leg": self._slow_leg,
        }[window.kind]
        record = FaultRecord(window.kind, window.target, time.time(), 0.0, None,
                             params=dict(window.params), scheduled_s=window.start_s)
        recovered = await injector(window, record)
        record.recovered_at = await self._recovery(record, recovered)
        return record

    # ------------------------------------------------------------------ injectors
    # Each applies its fault, sets record.end when it is lifted, and returns the check
    # that the component itself answers again (the common checks are added after).
    async def _postgres(self, window: FaultWindow, record: FaultRecord) -> Probe:
        stack = self._need_stack()
        mode = window.params.get("mode", "fast")
        before = self._current().processes["postgres"].pid
        self._undo.append(lambda: self._ensure_postgres(stack))
        after = await asyncio.to_thread(stack.restart_postgres, mode)
        record.end = time.time()
        self._undo.pop()
        self._pids.add(after.pid)
        record.detail = f"pg_ctl stop -m {mode}: postmaster {before} → {after.pid}"
        dsn = self._current().dsn

        async def answers() -> bool:
            try:
                conn = await asyncpg.connect(dsn, timeout=2)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                return False
            try:
                return bool(await conn.fetchval("SELECT 1", timeout=2) == 1)
            finally:
                await conn.close()

        return answers

    async def _redis(self, window: FaultWindow, record: FaultRecord) -> Probe:
        stack = self._need_stack()
        before = self._current().processes["redis"].pid
        self._undo.append(lambda: self._ensure_redis(stack))
        after = await asyncio.to_thread(stack.restart_redis, kill=True)
        record.end = time.time()
        self._undo.pop()
        self._pids.add(after.pid)
        record.detail = f"SIGKILL redis {before}, restarted as {after.pid} (same port, AOF)"
        url = self._current().redis_url

        async def answers() -> bool:
            client = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            try:
                return bool(await cast(Awaitable[bool], client.ping()))
            except (OSError, aioredis.RedisError):
                return False
            finally:
                await client.aclose()

        return answers

    async def _service(self, window: FaultWindow, record: FaultRecord) -> Probe:
        stack = self._need_stack()
        key = replica_key(window.target, int(window.params.get("replica", 1)))
        self._undo.append(lambda: self._ensure_service(stack, key))
        killed = await asyncio.to_thread(stack.kill_process, key)
        self._pids.add(killed)
        # Lifted when the restart is issued, as a supervisor would restart it; the time it
        # takes to serve again (imports, warm-up) is the time to recover.
        record.end = time.time()
        proc = await asyncio.to_thread(stack.start_service, key)
        self._undo.pop()
        self._pids.add(proc.pid)
        record.detail = f"SIGKILL {key} {killed}, restarted as {proc.pid} on port {proc.port}"
        info = self._current()
        if window.target == "ratelimit":  # not health-checked by Envoy: its own check
            url = f"http://127.0.0.1:{proc.extra['http_port']}/healthcheck"

            async def answers() -> bool:
                return await asyncio.to_thread(_http_ok, url)

            return answers

        async def in_rotation() -> bool:  # start_service waited for SERVING already
            try:
                hosts = await asyncio.to_thread(envoy_hosts, info.admin)
            except OSError:
                return False
            return hosts.get(window.target, {}).get(proc.port, False)

        return in_rotation

    async def _envoy(self, window: FaultWindow, record: FaultRecord) -> Probe:
        stack = self._need_stack()
        old = self._current().processes["envoy"]
        new = await asyncio.to_thread(stack.restart_envoy, wait_parent=False)
        record.end = time.time()
        self._pids.update((old.pid, new.pid))
        record.detail = (f"epoch {new.extra.get('epoch')}: pid {new.pid} took the listeners "
                         f"over from {old.pid}")
        admin = self._current().admin

        async def live_and_parent_gone() -> bool:
            # The parent drains, then is shut down: the restart is over once it is gone.
            server = await asyncio.to_thread(_get_json_or_none, f"{admin}/server_info")
            return (server is not None and server.get("state") == "LIVE"
                    and not pid_alive(old.pid))

        return live_and_parent_gone

    async def _replay(self, window: FaultWindow, record: FaultRecord) -> Probe:
        replay = self._replay_url()
        status = int(window.params.get("status", 429))
        switches = ({"rate_limit": BURST_BUDGET} if status == 429 else
                    {"server_errors": BURST_BUDGET, "server_error_status": status})
        self._undo.append(lambda: _get_json(f"{replay}/_replay/faults", {}))
        await asyncio.to_thread(_get_json, f"{replay}/_replay/faults", switches)
        record.start = time.time()
        await asyncio.sleep(window.duration_s)
        left = await asyncio.to_thread(_get_json, f"{replay}/_replay/faults")
        await asyncio.to_thread(_get_json, f"{replay}/_replay/faults", {})
        record.end = time.time()
        self._undo.pop()
        answered = BURST_BUDGET - int(left.get("rate_limit" if status == 429 else
                                               "server_errors", BURST_BUDGET))
        record.detail = f"{answered} exchange requests answered {status} in {window.duration_s}s"
        return await self._exchange_answers()

    async def _slow_leg(self, window: FaultWindow, record: FaultRecord) -> Probe:
        proxy = self._proxy
        if proxy is None:
            raise RuntimeError("expected the fault proxy (stack_env) for slow_leg, got none")
        p = window.params
        faults = LegFaults(latency_ms=float(p.get("latency_ms", 200)),
                           jitter_ms=float(p.get("jitter_ms", 100)),
                           bandwidth_bps=int(p.get("bandwidth_bps", 64_000)))
        before = await asyncio.to_thread(proxy.stats)
        self._undo.append(lambda: proxy.set_faults(LegFaults()))
        await asyncio.to_thread(proxy.set_faults, faults)
        record.start = time.time()
        # Connections reset at seeded moments inside the window.
        moments = sorted(self._rng.uniform(0, window.duration_s)
                         for _ in range(int(p.get("resets", 1))))
        reset = 0
        for moment in moments:
            await asyncio.sleep(max(0.0, record.start + moment - time.time()))
            reset += await asyncio.to_thread(proxy.reset_all)
        await asyncio.sleep(max(0.0, record.start + window.duration_s - time.time()))
        await asyncio.to_thread(proxy.set_faults, LegFaults())
        record.end = time.time()
        self._undo.pop()
        after = await asyncio.to_thread(proxy.stats)
        record.detail = (f"{faults.latency_ms:g}±{faults.jitter_ms:g} ms, "
                         f"{faults.bandwidth_bps} B/s, {reset} connections reset; "
                         f"{after['delayed_chunks'] - before['delayed_chunks']} chunks delayed, "
                         f"{after['connections'] - before['connections']} connections")
        return await self._exchange_answers()

    # ------------------------------------------------------------------ recovery
    async def _recovery(self, record: FaultRecord, answers: Probe) -> float | None:
        """Return when, after the fault was lifted, the component answers, Envoy sees
        every backend host healthy and the caller's probe succeeds (None: not in time)."""
        async def recovered() -> bool:
            if not await answers() or not await self._all_hosts_healthy():
                return False
            return self.probe is None or await self.probe()

        # Recovered at the first of RECOVERED_STREAK passes in a row: one lucky answer
        # (e.g. on the one pooled connection that survived a database restart) is not it.
        streak: list[float] = []

        async def steadily() -> bool:
            if await recovered():
                streak.append(time.time())
            else:
                streak.clear()
            return len(streak) >= RECOVERED_STREAK

        if await self._until(steadily, self.recover_timeout_s):
            return streak[0]
        return None

    async def _exchange_answers(self) -> Probe:
        """An exchange request answered 200 after now (ingestion fetching again)."""
        replay = self._replay_url()
        baseline = await asyncio.to_thread(_replay_ok, replay)

        async def answered() -> bool:
            try:
                return await asyncio.to_thread(_replay_ok, replay) > baseline
            except OSError:
                return False

        return answered

    async def _all_hosts_healthy(self) -> bool:
        try:
            hosts = await asyncio.to_thread(envoy_hosts, self._current().admin)
        except (OSError, ValueError):
            return False
        backends = [s for s in SERVICES if s != "ratelimit"]
        return all(len(hosts.get(b, {})) >= 1 and all(hosts[b].values()) for b in backends)

    @staticmethod
    async def _until(check: Probe, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if await check():
                    return True
            except Exception:
                logger.debug("recovery probe failed", exc_info=True)
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(PROBE_INTERVAL_S)

    # ------------------------------------------------------------------ helpers
    def _need_stack(self) -> Stack:
        if self._stack is None:
            raise RuntimeError("expected start() before a fault, got none")
        return self._stack

    def _current(self) -> StackInfo:
        """The stack as stack.json describes it now (faults change pids)."""
        stack = self._need_stack()
        self._info = StackInfo.load(stack.state_file)
        return self._info

    def _replay_url(self) -> str:
        return f"http://127.0.0.1:{self._current().processes['replay'].port}"

    @staticmethod
    def _ensure_postgres(stack: Stack) -> None:
        info = StackInfo.load(stack.state_file)
        if not pid_alive(info.processes["postgres"].pid):
            pg = stack._postgres()
            if not pg.attach():
                pg.start()
                info.processes["postgres"].pid = pg.pid or 0
                info.save(stack.state_file)

    @staticmethod
    def _ensure_redis(stack: Stack) -> None:
        info = StackInfo.load(stack.state_file)
        if not pid_alive(info.processes["redis"].pid):
            from usdcarb.devstack.redis import RedisServer
            redis = RedisServer(stack.root / "redis", port=info.processes["redis"].port)
            redis.start()
            info.processes["redis"].pid = redis.pid or 0
            info.save(stack.state_file)

    @staticmethod
    def _ensure_service(stack: Stack, key: str) -> None:
        stack.start_service(key)  # a no-op when it runs


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _get_json_or_none(url: str) -> Any:
    try:
        return _get_json(url)
    except (OSError, ValueError):
        return None
