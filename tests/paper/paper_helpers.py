"""Shared inputs of the paper-run tests: a spread version, its config, synthetic bars."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
from google.protobuf import json_format

from usdcarb.platform.testing import bearer
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import strategy_pb2 as spb

KIND = "cross-exchange-spread"
PARAMS: dict[str, Any] = {"symbol": "USDC/USDT", "venueA": "binance", "venueB": "kraken",
                          "entryBps": 15, "exitBps": 3, "quantity": 10000}
KEYS = [("binance", "USDC/USDT"), ("kraken", "USDC/USDT")]
START = datetime(2023, 3, 10, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
BAR_MS = 60_000
TRADER = bearer("alice", ("trader",))


def config(start: datetime = START) -> pb.BacktestConfig:
    cfg = pb.BacktestConfig(timeframe="1m", quote_asset="USDT",
                            fill_policy=pb.FILL_POLICY_NEXT_BAR)
    cfg.range.start_time.FromDatetime(start)
    for venue, fee in (("binance", 10.0), ("kraken", 7.5)):
        cfg.venues.append(pb.VenueConfig(
            venue=venue, taker_fee_bps=fee, slippage=pb.SlippageModel(fixed_bps=1.0),
            initial_balances=[pb.AssetAmount(asset="USDC", amount=1e6),
                              pb.AssetAmount(asset="USDT", amount=1e6)]))
    return cfg


def bars(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` 1m bars of USDC/USDT on both venues whose spread crosses ±15 bps often."""
    rng = np.random.default_rng(seed)
    t = START_MS + np.arange(n, dtype=np.int64) * BAR_MS
    a = 1.0 + np.cumsum(rng.normal(0.0, 2e-4, n))
    spread = 25e-4 * np.sin(np.arange(n) / 9.0) + rng.normal(0.0, 4e-4, n)
    b = a * (1.0 + spread)
    closes = np.round(np.stack([a, b]), 6)
    volumes = np.round(rng.uniform(1e4, 1e6, (2, n)), 2)
    return t, closes, volumes


async def deploy_paper(strategy: Any, params: dict[str, Any]) -> str:
    """A cross-exchange-spread version with ``params``, approved and deployed in PAPER
    mode through the StrategyService stub ``strategy``; return the deployment's name."""
    sid = f"s-{uuid.uuid4().hex[:8]}"
    await strategy.CreateStrategy(spb.CreateStrategyRequest(
        strategy_id=sid, strategy=spb.Strategy(
            display_name="spread", kind=spb.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD)),
        metadata=TRADER)
    v = await strategy.CreateStrategyVersion(spb.CreateStrategyVersionRequest(
        parent=f"strategies/{sid}", version=spb.StrategyVersion(parameters=json_format.ParseDict(
            {"crossExchangeSpread": params}, spb.StrategyParameters()))), metadata=TRADER)
    for state in (spb.VERSION_STATE_BACKTESTED, spb.VERSION_STATE_APPROVED):
        await strategy.TransitionStrategyVersion(spb.TransitionStrategyVersionRequest(
            name=v.name, state=state, reason="ok"), metadata=TRADER)
    d = await strategy.CreateDeployment(spb.CreateDeploymentRequest(
        parent=f"strategies/{sid}", deployment=spb.Deployment(
            version=v.name, environment=spb.DEPLOYMENT_ENVIRONMENT_PAPER)), metadata=TRADER)
    return str(d.name)
