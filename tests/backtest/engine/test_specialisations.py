"""One compiled specialisation serves every kind, fill and series count, so a warmed
cache covers whatever the service is asked (no compile on the request path)."""

from __future__ import annotations

import numpy as np
import pytest

from usdcarb.backtest import engine
from usdcarb.backtest.engine import legs, loop, sweep
from usdcarb.backtest.engine.layout import rows
from usdcarb.backtest.engine.warm import KINDS, _market, warm_up
from usdcarb.backtest.handoff import discard, read_frame, write_frame

pytestmark = pytest.mark.unit


def test_service_shaped_runs_of_every_kind_add_no_specialisation() -> None:
    warm_up()
    before = (len(loop.run_range.signatures), len(sweep._sweep_kernel.signatures),
              len(legs.simulate.signatures))
    market = _market(500)
    ref = write_frame(market)
    try:
        frame = read_frame(ref)      # how the engine process gets its data
    finally:
        discard(ref)
    # A read-only input (e.g. a frombuffer view) must not be a new type either.
    ro = np.asarray(frame.series[0].close)
    ro.flags.writeable = False
    venues = tuple(engine.VenueCosts(venue=v, taker_fee_bps=2.0,
                                     initial_balances={"USDC": 1e6, "USDT": 1e6, "BTC": 5.0})
                   for v in ("vena", "venb"))
    for fill in ("next", "same"):
        config = engine.EngineConfig(venues=venues, fill=fill)
        for kind, params, axis in KINDS:
            engine.run_backtest(kind, params, config, frame)
            engine.run_sweep(kind, params, {axis: [10.0, 20.0, 30.0]}, config, frame)
    frozen = engine.MarketFrame(frame.time_ms, (
        engine.Series("vena", "USDC/USDT", ro, frame.series[0].volume), *frame.series[1:]))
    kind, params, _ = KINDS[0]
    engine.run_backtest(kind, params, engine.EngineConfig(venues=venues), frozen)
    for execution in (engine.Execution(leg_mode="independent", one_leg="retry"),
                      engine.Execution(order_type="maker", maker_timeout_bars=2)):
        engine.run_backtest(kind, params, engine.EngineConfig(
            venues=venues, execution=execution), frame)
    after = (len(loop.run_range.signatures), len(sweep._sweep_kernel.signatures),
             len(legs.simulate.signatures))
    assert after == before


def test_frame_rows_from_the_hand_off_are_taken_without_a_copy() -> None:
    market = _market(1000)
    ref = write_frame(market)
    try:
        frame = read_frame(ref)
    finally:
        discard(ref)
    closes = [s.close for s in frame.series]
    block = rows(closes[:2])
    assert np.shares_memory(block, closes[0]) and block.shape == (2, 1000)
    picked = rows([closes[2], closes[0]])            # not consecutive: stacked
    assert not np.shares_memory(picked, closes[0])
    assert np.array_equal(picked[0], closes[2]) and picked.flags.c_contiguous
