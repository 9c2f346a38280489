"""Notification delivery: event published → signed webhook received.

Runs one notification replica as its own process (``python -m usdcarb.notification.main``)
on a scratch PostgreSQL and Redis; the webhook receiver runs here, on the clock the
events are published with. Two measures, against the targets of issue 10:

- latency: events published one at a time (every 20 ms) to 1 subscription, p50 and p99
  of publish → received (targets p50 < 50 ms, p99 < 250 ms);
- throughput: events to 100 subscriptions on 10 channels, deliveries received per second
  from the first publish to the last delivery (target ≥ 1,000/s), for a burst of 100 events
  (10,000 deliveries) and for a backlog of 300 (30,000 deliveries, most of them waiting in
  PostgreSQL while the first are sent).

Each throughput run also reports the CPU seconds it took in the replica, in PostgreSQL
(postmaster and backends) and in this process (receiver and publisher), the deliveries per
CPU-second of the replica and PostgreSQL, and the load average: on a machine shared with
other work the wall-clock rate says as much about the others as about the service.

The ceiling is the same receiver fed by bare aiohttp POSTs from one process, 40 at a time
(no stream, no database, no signature), measured in the same run: the ratio is what
durability costs, under whatever load the machine had.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

from gatewaykit import cpu_seconds  # noqa: E402

from usdcarb.devstack import PostgresServer, RedisServer, free_port, scratch_dir  # noqa: E402
from usdcarb.notification.app import ChannelInput, SubscriptionInput, Who  # noqa: E402
from usdcarb.notification.main import NotificationSettings, build  # noqa: E402
from usdcarb.platform import events  # noqa: E402
from usdcarb.platform.db import create_pool  # noqa: E402
from usdcarb.platform.redis import create_redis  # noqa: E402
from usdcarb.platform.testing import DEV_JWKS  # noqa: E402

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes, bench only
STREAM = "bench:events"


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Receiver:
    """Count deliveries per event id with their arrival time."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.count = 0
        self.done = asyncio.Event()
        self.expect = 0
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.arrivals.setdefault(body.get("id", ""), []).append(time.perf_counter())
        self.count += 1
        if self.expect and self.count >= self.expect:
            self.done.set()
        return web.Response(text="ok")

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook/{n}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    def reset(self, expect: int) -> None:
        self.arrivals, self.count, self.expect = {}, 0, expect
        self.done = asyncio.Event()


def _replica(dsn: str, redis_url: str, root: Path) -> subprocess.Popen[bytes]:
    p = "USDCARB_NOTIFICATION_"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(REPO / d) for d in ("services", "gen/python", "clients/python")),
        f"{p}ENV": "test", f"{p}PLAINTEXT": "true", f"{p}GRPC_PORT": str(free_port()),
        f"{p}METRICS_PORT": "-1", f"{p}DATABASE_URL": dsn, f"{p}REDIS_URL": redis_url,
        f"{p}EVENTS_STREAM": STREAM, f"{p}PORT_FILE": str(root / "notification.port"),
        f"{p}LOG_LEVEL": "WARNING", f"{p}DIGEST_HOUR_UTC": "-1", f"{p}JWKS_FILE": str(DEV_JWKS)}
    log = (root / "notification.log").open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "usdcarb.notification.main"], env=env,
                                cwd=REPO, stdout=log, stderr=log, start_new_session=True)
    finally:
        log.close()


async def _publish(redis: Any, i: int) -> tuple[str, float]:
    sent = time.perf_counter()
    event_id = await events.publish(redis, events.DomainEvent(
        type="EVENT_TYPE_BACKTEST_SUCCEEDED", source="bench", subject=f"backtests/b{i}",
        summary=f"backtest b{i} finished", data={"total_return": 0.01 * i}), stream=STREAM)
    return event_id, sent


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``, its live children and the children it has reaped."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK") + cpu_seconds(pid)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    total += cpu_seconds(int(entry.name))
            except (OSError, ValueError):
                continue  # exited meanwhile
    return total


class CpuMeter:
    """CPU seconds of the replica, PostgreSQL and this process over one measurement."""

    def __init__(self, replica: int, postgres: int) -> None:
        self._replica, self._postgres = replica, postgres
        self._start = self._read()

    def _read(self) -> tuple[float, float, float]:
        return (cpu_seconds(self._replica), _tree_cpu_seconds(self._postgres),
                time.process_time())

    def report(self, deliveries: int, elapsed: float) -> str:
        replica, postgres, here = (b - a for a, b in zip(self._start, self._read(), strict=True))
        load = os.getloadavg()[0]
        return (f"  CPU: replica {replica:.1f} s, PostgreSQL {postgres:.1f} s, receiver and "
                f"publisher {here:.1f} s ({(replica + postgres + here) / elapsed:.2f} of "
                f"{os.cpu_count()} cores; load average {load:.1f}); "
                f"{deliveries / (replica + postgres):,.0f} deliveries per CPU-second of "
                f"replica + PostgreSQL")


async def _throughput(redis: Any, receiver: Receiver, meter: CpuMeter, events_n: int,
                      first: int, label: str) -> float:
    expect = events_n * 100
    receiver.reset(expect)
    started = time.perf_counter()
    for i in range(first, first + events_n):
        await _publish(redis, i)
    await asyncio.wait_for(receiver.done.wait(), 600)
    elapsed = time.perf_counter() - started
    rate = expect / elapsed
    _say(f"throughput, {label}: {expect} deliveries ({events_n} events x 100 subscriptions "
         f"on 10 channels) in {elapsed:.2f} s = {rate:,.0f}/s (target >= 1,000/s)")
    _say(meter.report(expect, elapsed))
    return rate


async def _ceiling(port: int, receiver: Receiver, n: int, concurrency: int) -> float:
    receiver.reset(n)
    sem = asyncio.Semaphore(concurrency)
    body = b'{"id": "ceiling"}'
    async with aiohttp.ClientSession() as session:
        async def post(i: int) -> None:
            async with sem, session.post(f"http://127.0.0.1:{port}/hook/{i % 10}",
                                         data=body) as r:
                await r.read()
        started = time.perf_counter()
        await asyncio.gather(*(post(i) for i in range(n)))
    return n / (time.perf_counter() - started)


async def run(args: argparse.Namespace, root: Path) -> int:
    pg = PostgresServer(root / "pg", fast=True)
    redis_server = RedisServer(root / "redis")
    pg.start()
    redis_server.start()
    proc = None
    try:
        pg.create_database("bench")
        dsn = pg.dsn("bench")
        receiver = Receiver()
        runner = await receiver.start()
        proc = _replica(dsn, redis_server.url, root)
        deadline = time.monotonic() + 60
        while not (root / "notification.port").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                _say((root / "notification.log").read_text()[-3000:])
                return 1
            await asyncio.sleep(0.1)
        redis = await create_redis(redis_server.url)
        pool = await create_pool(dsn, 1, 4, search_path="notification, public")
        app = build(pool, redis, NotificationSettings(env="test", events_stream=STREAM)).app
        who = Who(subject="users/bench")

        async def channel(n: int) -> str:
            c = await app.create_channel(ChannelInput(
                display_name=f"bench {n}", kind="webhook", secret=SECRET,
                url=f"http://127.0.0.1:{receiver.port}/hook/{n}"), who, "")
            return c.name

        # -- latency: one subscription, one event at a time ------------------------------
        first = await channel(0)
        sub = await app.create_subscription(SubscriptionInput(channel=first), who, "")
        for i in range(20):  # warm-up: connections, plans
            await _publish(redis, i)
        await asyncio.sleep(1.0)
        receiver.reset(args.latency_events)
        sent: dict[str, float] = {}
        for i in range(args.latency_events):
            event_id, at = await _publish(redis, i)
            sent[event_id] = at
            await asyncio.sleep(0.02)
        await asyncio.wait_for(receiver.done.wait(), 30)
        lat = sorted((receiver.arrivals[e][0] - t) * 1000 for e, t in sent.items())
        p50, p99 = statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]
        _say(f"latency publish→received ({len(lat)} events, 1 subscription): "
             f"p50 {p50:.1f} ms (target < 50), p99 {p99:.1f} ms (target < 250)")
        await app.delete_subscription(sub.name, who)

        # -- throughput: 100 subscriptions on 10 channels ---------------------------------
        names = [first] + [await channel(n) for n in range(1, 10)]
        for name in names:
            for _ in range(10):
                await app.create_subscription(SubscriptionInput(channel=name), who, "")
        postmaster = pg.pid
        assert postmaster is not None
        rate = await _throughput(redis, receiver, CpuMeter(proc.pid, postmaster),
                                 args.burst_events, 0, "burst")
        backlog = await _throughput(redis, receiver, CpuMeter(proc.pid, postmaster),
                                    args.backlog_events, args.burst_events, "backlog")
        ceiling = await _ceiling(receiver.port, receiver, 5000, 40)
        _say(f"ceiling: bare aiohttp POSTs, same receiver, concurrency 40: {ceiling:,.0f}/s; "
             f"ratio {rate / ceiling:.2f} (burst), {backlog / ceiling:.2f} (backlog)")
        await pool.close()
        await redis.aclose()
        await runner.cleanup()
        ok = p50 < 50 and p99 < 250 and min(rate, backlog) >= 1000
        _say("targets: " + ("met" if ok else "NOT met"))
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(15)
        redis_server.stop()
        pg.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-events", type=int, default=300)
    parser.add_argument("--burst-events", type=int, default=100)
    parser.add_argument("--backlog-events", type=int, default=300)
    args = parser.parse_args(argv)
    root = scratch_dir("usdcarb-bench-notify-")
    try:
        return asyncio.run(run(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
