"""The deployment report renders a paper run beside its backtest, without a stack (its
fetching and the page in chromium: tests/cli/test_cli_deploy.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from usdcarb_sdk import v1
from usdcarb_sdk.deployment_report import DeploymentData, differences_frame
from usdcarb_sdk.frames import trades_to_frame

pytestmark = pytest.mark.unit

T0 = datetime(2023, 3, 10, tzinfo=UTC)
DEP = "strategies/s/deployments/d"


def trade(minute: int, price: float) -> v1.Trade:
    return v1.Trade(time=T0.replace(minute=minute), venue="kraken", symbol="USDC/USDT",
                    side=v1.Side.BUY, quantity=10_000, price=price, round_trip=1,
                    signal_bar=minute - 1)


def test_deployment_report_shows_both_curves_and_each_differing_fill() -> None:
    ms = int(T0.timestamp() * 1000)
    dv = v1.PaperDivergence(
        name=f"{DEP}/paperDivergence", strategy_version="strategies/s/versions/v", bars=3,
        quote_asset="USDT", paper_equity=101.0, backtest_equity=103.0, paper_pnl=1.0,
        backtest_pnl=3.0, pnl_difference=-2.0, paper_fills=1, backtest_fills=2,
        differing_fills=2, late_bars=1, max_divergence=1.5, diverged=True,
        time_ms=[ms, ms + 60_000, ms + 120_000], paper_equity_curve=[100.0, 100.5, 101.0],
        backtest_equity_curve=[100.0, 102.0, 103.0],
        differences=[
            v1.FillDifference(kind=v1.FillDifferenceKind.MISSING_IN_PAPER,
                              reason=v1.DivergenceReason.LATE_BAR, backtest=trade(1, 1.001),
                              cause_time=T0.replace(minute=1), cause_markets=["kraken:USDC/USDT"]),
            v1.FillDifference(kind=v1.FillDifferenceKind.PRICE_OR_QUANTITY,
                              reason=v1.DivergenceReason.CARRIED_OVER, paper=trade(2, 1.002),
                              backtest=trade(2, 1.003)),
        ])
    run = v1.PaperRun(name=f"{DEP}/paperRun", strategy_version=dv.strategy_version,
                      state=v1.PaperRunState.RUNNING, bars=3, equity=101.0,
                      config=v1.BacktestConfig(quote_asset="USDT", timeframe="1m"))
    frame = differences_frame(dv)
    assert list(frame["kind"]) == ["missing in paper", "price or quantity"]
    assert list(frame["reason"]) == ["late bar", "carried over"]
    assert frame.loc[0, "paper time"] == "—" and frame.loc[0, "cause markets"] == \
        "kraken:USDC/USDT"
    page = DeploymentData(run, dv, trades_to_frame([trade(2, 1.002)])).to_html()
    assert page.startswith("<!DOCTYPE html>") and "<script src=" not in page
    assert 'id="chart-paper-equity"' in page and 'id="chart-paper-difference"' in page
    assert "Fills that differ (2)" in page and "EXCEEDED" in page and "-2.00 USDT" in page
    table = page[page.index('id="divergence"'):page.index('id="fills"')]
    assert len(re.findall(r"<tr>", table)) == 3   # header + two differing fills
    assert "late bar" in table and "2023-03-10 00:01" in table
