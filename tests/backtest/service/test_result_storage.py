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
from usdcarb.backtest.colcodec import decode_columns, encode_columns
from usdcarb.backtest.curves import DEFAULT_POINTS, CurveRequest, equity_to_pb
from usdcarb.backtest.finish import curves_of, early, finish, take_curves, take_trades
from usdcarb.backtest.handoff import discard, read_frame, remove_orphans, write_frame
from usdcarb.backtest.model import BacktestJob, EquityColumns, TradeRows
from usdcarb.backtest.results import equity_columns, trade_rows
from usdcarb.backtest.store import BacktestStore
from usdcarb.backtest.trade_columns import encode_trades
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2

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


def test_columns_from_the_engines_series_indexes_equal_those_from_the_names() -> None:
    # The engine gives each fill's series; the columns made from it (a lookup per series)
    # are those made from the names (hashed per fill), and name only the series traded.
    rng = np.random.default_rng(3)
    names = (("venueb", "USDC/USDT"), ("venuea", "USDC/USDT"), ("kraken", "USDC/USD"),
             ("idle", "BTC/USDT"))   # never trades
    series = rng.integers(0, 3, 5_000)
    t = trades(5_000)
    by_name = dataclasses.replace(
        t, venue=np.array([names[i][0] for i in series], dtype=object),
        symbol=np.array([names[i][1] for i in series], dtype=object))
    by_series = dataclasses.replace(by_name, series=series, series_names=names)
    want = [bytes(x) if isinstance(x, memoryview) else x for x in encode_trades("b", by_name)]
    got = [bytes(x) if isinstance(x, memoryview) else x for x in encode_trades("b", by_series)]
    assert got == want
    assert got[2:4] == [["kraken", "venuea", "venueb"], ["USDC/USD", "USDC/USDT"]]


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


@pytest.mark.integration
async def test_a_result_is_stored_whole_or_not_at_all_by_the_attempt_that_owns_it(
        service_pool: Any) -> None:
    store = BacktestStore(await service_pool("backtest"))
    job, _ = await store.insert_backtest(BacktestJob(
        id=uuid.uuid4().hex[:12], strategy_version="strategies/s/versions/1", config={},
        request_id=uuid.uuid4().hex))
    first, _ = await store.start_backtest(job.id, "w1", 3, {})
    second, _ = await store.start_backtest(job.id, "w2", 3, {})   # w1 presumed dead
    assert first is not None and second is not None
    raw = np.arange(4, dtype="<f8").tobytes()
    curve = EquityColumns(points=4, time_ms=raw, equity=raw, drawdown=raw, exposure=raw)

    async def broken() -> EquityColumns:
        raise ValueError("the engine process lost the curve")

    # the attempt that was taken over writes nothing, not even its curve
    assert not await store.succeed_backtest(first, result={}, digest="d", trades=trades(10),
                                            equity=curve)
    assert await store.get_equity(job.id) is None
    # a curve that cannot be had leaves the job running, its trades unwritten
    with pytest.raises(ValueError, match="lost the curve"):
        await store.succeed_backtest(second, result={}, digest="d", trades=trades(10),
                                     equity=broken())
    assert (await store.get_backtest(job.id)).state.value == "JOB_STATE_RUNNING"
    assert await store.list_trades(job.id, after_seq=0, limit=5) == []
    assert await store.succeed_backtest(second, result={}, digest="d", trades=trades(10),
                                        equity=curve)
    assert (await store.get_backtest(job.id)).state.value == "JOB_STATE_SUCCEEDED"
    stored = await store.get_equity(job.id)
    assert stored is not None and stored.equity == raw
    assert len(await store.list_trades(job.id, after_seq=0, limit=50)) == 10


@pytest.mark.unit
def test_handoff_gives_the_engine_process_the_frame_and_the_parent_the_stored_columns(
) -> None:
    n = 3_000
    rng = np.random.default_rng(3)
    a = 1 + np.round(rng.normal(0, 0.002, n), 5)
    b = 1 + np.round(rng.normal(0, 0.002, n), 5)
    b[rng.random(n) < 0.05] = np.nan   # missing bars stay missing
    b[0] = 1.0
    frame = engine.MarketFrame(time_ms=T0 + 60_000 * np.arange(n, dtype=np.int64), series=(
        engine.Series("venuea", "USDC/USDT", a, np.ones(n)),
        engine.Series("venueb", "USDC/USDT", b, np.arange(n, dtype=float))))
    ref = write_frame(frame)
    try:
        back = read_frame(ref)
        np.testing.assert_array_equal(back.time_ms, frame.time_ms)
        for x, y in zip(back.series, frame.series, strict=True):
            assert (x.venue, x.symbol) == (y.venue, y.symbol)
            np.testing.assert_array_equal(x.close, y.close)
            np.testing.assert_array_equal(x.volume, y.volume)
        params = {"crossExchangeSpread": {"symbol": "USDC/USDT", "venueA": "venuea",
                                          "venueB": "venueb", "entryBps": 5, "exitBps": 1,
                                          "quantity": 1_000}}
        balances = {"USDC": 1e5, "USDT": 1e5}
        for quote_only in (False, True):   # a moving hold baseline, then a constant one
            config = engine.EngineConfig(venues=tuple(
                engine.VenueCosts(venue=v, taker_fee_bps=1.0, maker_fee_bps=0.5,
                                 initial_balances={"USDT": 1e5} if quote_only else balances)
                for v in ("venuea", "venueb")), fill="next", quote_asset="USDT")
            # engine process: the times and the moving baseline encoded while the engine
            # runs, the rest once it is done; parent: map what it wrote
            encoded, on_baseline = early(back.time_ms)
            out = engine.run_backtest("cross-exchange-spread", params, config, back,
                                      on_baseline=on_baseline)
            assert len(out.trades) > 10 and (out.baseline is None) == quote_only
            assert ("baseline" in encoded) != quote_only
            fin = finish(ref, "backtests/b1", back.time_ms, out, encoded)
            assert len(pickle.dumps(fin)) < 4_000 and len(fin.output.equity) == 0
            trade_cols = take_trades(ref, fin)   # stored while the curves are encoded
            curves = curves_of(ref.path)         # the parent's next call
            assert len(pickle.dumps(curves)) < 60_000
            stored = take_curves(ref, fin, curves)
            # the stored curve decodes to the engine's columns bit for bit
            raw = decode_columns(EquityColumns(
                points=stored.points, **{k: bytes(getattr(stored, k)) for k in (
                    "time_ms", "equity", "drawdown", "exposure", "baseline")}))
            for name, want in (("time_ms", frame.time_ms), ("equity", out.equity),
                               ("drawdown", out.drawdown), ("exposure", out.exposure),
                               ("baseline", out.baseline_curve())):
                got = np.frombuffer(getattr(raw, name), "<i8" if name == "time_ms" else "<u8")
                if name == "baseline" and quote_only:   # constant: one value
                    got = np.repeat(got, n)
                np.testing.assert_array_equal(
                    got, np.asarray(want).view("<i8" if name == "time_ms" else "<u8"), name)
            # the trade columns are those of the trade log, and the curve the reduced one
            assert [bytes(x) if isinstance(x, memoryview) else x
                    for x in encode_trades("b1", trade_cols)] == [
                bytes(x) if isinstance(x, memoryview) else x
                for x in encode_trades("b1", trade_rows(frame.time_ms, out.trades))]
            assert fin.trade_count == len(out.trades)
            columns = equity_columns(frame.time_ms, out)
            # the same stored bytes as encoding the columns in one go
            alone = encode_columns(columns, out.extras["initial_equity"])
            for name in ("time_ms", "equity", "drawdown", "exposure", "baseline"):
                assert bytes(getattr(stored, name)) == bytes(getattr(alone, name)), name
            assert pb.EquityCurve.FromString(curves.curve) == equity_to_pb(
                "backtests/b1/equityCurve", columns, common_pb2.COLUMN_LAYOUT_PACKED,
                CurveRequest(max_points=DEFAULT_POINTS, page=None))
    finally:
        discard(ref)
    assert not any(os.path.exists(p) for p in (ref.path, ref.trades_path, ref.finished_path))


@pytest.mark.unit
def test_hand_off_files_of_a_dead_process_are_removed_and_live_ones_kept(
        tmp_path: Any) -> None:
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)
    orphans = [tmp_path / f"usdcarb-frame-{dead}-abc{suffix}"
               for suffix in ("", ".finished", ".trades")]
    mine = tmp_path / f"usdcarb-frame-{os.getpid()}-xyz"
    other = tmp_path / "usdcarb-frame-notapid"
    for p in (*orphans, mine, other):
        p.write_bytes(b"x")
    assert remove_orphans([str(tmp_path)]) == 3
    assert not any(p.exists() for p in orphans) and mine.exists() and other.exists()
