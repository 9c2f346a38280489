"""A result's trades and curves survive the store and the engine-process hand-off exactly."""

from __future__ import annotations

import dataclasses
import os
import pickle
import uuid
from typing import Any

import numpy as np
import pytest

from usdcarb.backtest import engine
from usdcarb.backtest.handoff import (
    discard,
    read_frame,
    remove_orphans,
    send_curves,
    take_curves,
    write_frame,
)
from usdcarb.backtest.model import BacktestJob, EquityColumns, TradeRows
from usdcarb.backtest.store import BacktestStore

T0 = 1_678_406_400_000


def trades(n: int) -> TradeRows:
    rng = np.random.default_rng(7)
    venues = np.array(["venuea", "venueb", "kraken"], dtype=object)
    return TradeRows(
        time_ms=T0 + 60_000 * np.sort(rng.integers(0, 10**6, n)),
        venue=venues[rng.integers(0, 3, n)],
        symbol=np.array(["USDC/USDT", "USDC/USD"], dtype=object)[rng.integers(0, 2, n)],
        side=rng.choice(np.array([-1, 1], np.int8), n), quantity=rng.random(n) * 1e4,
        price=1 + rng.random(n) / 100, fee=rng.random(n), slippage=rng.random(n) / 10,
        round_trip=rng.integers(0, n, n), signal_bar=rng.integers(0, 10**6, n),
        signal_edge_bps=np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)))


@pytest.mark.integration
async def test_trades_are_listed_back_exactly_page_by_page(service_pool: Any) -> None:
    store = BacktestStore(await service_pool("backtest"))
    job, _ = await store.insert_backtest(BacktestJob(
        id=uuid.uuid4().hex[:12], strategy_version="strategies/s/versions/1", config={},
        request_id=uuid.uuid4().hex))
    job, _ = await store.start_backtest(job.id, "w", 3, {})
    assert job is not None
    t = trades(2_345)
    curve = np.arange(3, dtype="<f8").tobytes()
    assert await store.succeed_backtest(job, result={}, digest="d", trades=t, equity=EquityColumns(
        points=3, time_ms=curve, equity=curve, drawdown=curve, exposure=curve))
    got: list[Any] = []
    while page := await store.list_trades(job.id, after_seq=len(got), limit=1_000):
        got += page
    assert [r["seq"] for r in got] == list(range(1, len(t) + 1))
    assert [r["time"] for r in got] == t.time_ms.tolist()
    for name in ("venue", "symbol"):
        assert [r[name] for r in got] == [str(v) for v in getattr(t, name)]
    for name in ("side", "quantity", "price", "fee", "slippage", "round_trip", "signal_bar",
                 "signal_edge_bps"):
        np.testing.assert_array_equal([r[name] for r in got], getattr(t, name))


@pytest.mark.unit
def test_handoff_gives_the_engine_process_the_frame_and_the_parent_the_curves() -> None:
    n = 1_000
    frame = engine.MarketFrame(time_ms=T0 + 60_000 * np.arange(n, dtype=np.int64), series=(
        engine.Series("venuea", "USDC/USDT", np.linspace(0.99, 1.01, n), np.ones(n)),
        engine.Series("venueb", "USDC/USDT", np.full(n, np.nan), np.arange(n, dtype=float))))
    ref = write_frame(frame)
    try:
        back = read_frame(ref)
        np.testing.assert_array_equal(back.time_ms, frame.time_ms)
        for a, b in zip(back.series, frame.series, strict=True):
            assert (a.venue, a.symbol) == (b.venue, b.symbol)
            np.testing.assert_array_equal(a.close, b.close)
            np.testing.assert_array_equal(a.volume, b.volume)
        out = engine.BacktestOutput(
            equity=np.linspace(1, 2, n), drawdown=np.zeros(n), exposure=np.ones(n),
            trades=None, metrics={}, optimistic_fills=False, engine_version="x")  # type: ignore[arg-type]
        for baseline in (None, np.linspace(1, 1.5, n)):   # none: constant at the start
            out = dataclasses.replace(out, baseline=baseline)
            sent = send_curves(ref, out)
            assert len(sent.equity) == 0 and len(pickle.dumps(sent)) < 2_000
            got = take_curves(ref, sent)
            for name in ("equity", "drawdown", "exposure", "baseline"):
                np.testing.assert_array_equal(getattr(got, name), getattr(out, name))
        # The trade log goes the same way; venue and symbol names come back as names.
        t = trades(5_000)
        names = {v: v for v in ("venuea", "venueb", "kraken", "USDC/USDT", "USDC/USD")}
        log = engine.TradeLog(
            bar=np.arange(5_000, dtype=np.int64),
            venue=np.array([names[v] for v in t.venue], dtype=object),
            symbol=np.array([names[v] for v in t.symbol], dtype=object), side=t.side,
            quantity=t.quantity, price=t.price, fee=t.fee, slippage=t.slippage,
            round_trip=t.round_trip, signal_bar=t.signal_bar,
            signal_edge_bps=t.signal_edge_bps)
        sent = send_curves(ref, dataclasses.replace(out, trades=log))
        assert len(sent.trades) == 0 and len(pickle.dumps(sent)) < 4_000
        got = take_curves(ref, sent).trades
        for f in dataclasses.fields(log):
            want = getattr(log, f.name)
            assert getattr(got, f.name).dtype == want.dtype, f.name
            np.testing.assert_array_equal(getattr(got, f.name), want)
    finally:
        discard(ref)
    assert not any(os.path.exists(p) for p in (ref.path, ref.curves_path, ref.trades_path))


@pytest.mark.unit
def test_hand_off_files_of_a_dead_process_are_removed_and_live_ones_kept(
        tmp_path: Any) -> None:
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)
    orphans = [tmp_path / f"usdcarb-frame-{dead}-abc{suffix}"
               for suffix in ("", ".curves", ".trades")]
    mine = tmp_path / f"usdcarb-frame-{os.getpid()}-xyz"
    other = tmp_path / "usdcarb-frame-notapid"
    for p in (*orphans, mine, other):
        p.write_bytes(b"x")
    assert remove_orphans([str(tmp_path)]) == 3
    assert not any(p.exists() for p in orphans) and mine.exists() and other.exists()
