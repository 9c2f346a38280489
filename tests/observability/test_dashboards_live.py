"""Every panel query of every dashboard returns data from the stack's Prometheus after a
small workload through the gateway: an ingest backfill and an incremental follow-up, a
backtest, a refused login, a call the caller's role may not make, a 404."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from backtest.service.bt_helpers import (
    START_MS,
    SYMBOL,
    VENUES,
    config_json,
    load_bars,
    spread_params,
    synthetic_pair,
)
from observability.conftest import MonitoredStack
from observability.test_alerting import http, wait_for
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.observability.dashboards import build, dashboards
from usdcarb.observability.monitoring import api_get

pytestmark = pytest.mark.e2e
BARS = 2_000
SERIES = {"exchange": "binance", "symbol": "BTC/USDC", "timeframe": "1m"}


def _queries() -> list[tuple[str, str, str]]:
    found = []
    for stem, board in dashboards().items():
        for panel in build(board).panels or []:
            for target in getattr(panel, "targets", None) or []:
                found.append((stem, str(panel.title), str(target.expr)))
    return found


def _ingest(base: str, token: str, body: dict[str, Any]) -> None:
    code, job = http(base, "POST", "/v1/ingestJobs", token, {"series": SERIES, **body})
    assert code == 200, job

    def finished() -> dict[str, Any] | None:
        code, got = http(base, "GET", f"/v1/{job['name']}", token)
        assert code == 200, got
        return got if got["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED") else None
    done = wait_for(finished, 90, f"ingest job {job['name']} finished")
    assert done["state"] == "JOB_STATE_SUCCEEDED", done


def _backtest(monitored: MonitoredStack, token: str) -> None:
    info = monitored.info

    async def load() -> None:
        conn = await asyncpg.connect(info.dsn)
        try:
            data = synthetic_pair(BARS)
            for venue in VENUES:
                await conn.execute("DELETE FROM ingestion.market_data WHERE exchange = $1",
                                   venue)
                await load_bars(conn, "ingestion.market_data", venue, SYMBOL, data[venue])
        finally:
            await conn.close()

    asyncio.run(load())
    sid = f"obs-{uuid.uuid4().hex[:6]}"
    code, body = http(info.gateway, "POST", f"/v1/strategies?strategyId={sid}", token,
                      {"displayName": "obs", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"})
    assert code == 200, body
    code, version = http(info.gateway, "POST", f"/v1/strategies/{sid}/versions", token,
                         {"parameters": spread_params()})
    assert code == 200, version
    code, job = http(info.gateway, "POST", "/v1/backtests", token, {
        "strategyVersion": version["name"],
        "config": config_json(START_MS, START_MS + BARS * 60_000)})
    assert code == 200, job

    def finished() -> dict[str, Any] | None:
        code, got = http(info.gateway, "GET", f"/v1/{job['name']}", token)
        assert code == 200, got
        return got if got["state"] not in ("JOB_STATE_QUEUED", "JOB_STATE_RUNNING") else None
    done = wait_for(finished, 120, "the backtest finished")
    assert done["state"] == "JOB_STATE_SUCCEEDED", done


@pytest.fixture(scope="module")
def workload(monitored: MonitoredStack) -> float:
    base = monitored.info.gateway
    trader = mint_dev_token("users/obs-trader", ["trader"])
    _ingest(base, trader, {"mode": "INGEST_MODE_BACKFILL", "range": {
        "startTime": "2023-03-10T00:00:00Z", "endTime": "2023-03-10T03:00:00Z"}})
    _ingest(base, trader, {"mode": "INGEST_MODE_INCREMENTAL", "range": {
        "endTime": "2023-03-10T04:00:00Z"}})
    _backtest(monitored, trader)
    code, _ = http(base, "POST", "/v1/auth:login", "", {"username": "nobody", "password": "x"})
    assert code == 401
    code, _ = http(base, "POST", "/v1/auth:refresh", "", {"refreshToken": "not-a-token"})
    assert code == 401  # identity refuses it and audits the refusal
    code, _ = http(base, "GET", "/v1/strategies/does-not-exist", trader)
    assert code == 404
    return time.time()


def test_every_panel_query_returns_data_after_a_workload(
        monitored: MonitoredStack, workload: float) -> None:
    prometheus = monitored.info.prometheus
    queries = _queries()
    assert len(queries) >= 40

    def results(expr: str) -> Callable[[], list[Any] | None]:
        def run() -> list[Any] | None:
            got = api_get(prometheus, "/api/v1/query",
                          query=expr.replace("$__rate_interval", "1m"))
            return got["result"] or None
        return run

    empty = []
    deadline = time.monotonic() + 60  # samplers run every few seconds; one budget for all
    for stem, title, expr in queries:
        try:
            wait_for(results(expr), max(1.0, deadline - time.monotonic()), expr)
        except AssertionError:
            empty.append(f"{stem} / {title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
