"""The paper book steps the backtest engine bar by bar, from serialised checkpoints, to
exactly the result of one backtest over the same bars (issue 18)."""

from __future__ import annotations

import numpy as np
from tests.paper.paper_helpers import KEYS, KIND, PARAMS, bars, config

from usdcarb.backtest.engine import run_backtest
from usdcarb.backtest.engine.params import required_series
from usdcarb.backtest.paper.book import PaperBook
from usdcarb.backtest.paper.runner import paper_spec


def test_bar_by_bar_from_checkpoints_equals_one_backtest() -> None:
    n = 400
    t, closes, volumes = bars(n)
    closes[1, 50:53] = np.nan          # a venue missing for three bars
    closes[0, 200] = np.nan
    volumes[1, 50:53] = np.nan
    volumes[0, 200] = np.nan
    spec = paper_spec(config(), required_series(KIND, PARAMS))
    book = PaperBook(KIND, PARAMS, spec.engine, KEYS)
    checkpoint = None
    fills = []
    equity = []
    for i in range(n):
        out = book.step(t[:i + 1], np.ascontiguousarray(closes[:, :i + 1]),
                        np.ascontiguousarray(volumes[:, :i + 1]), i, checkpoint)
        checkpoint = out.checkpoint
        fills += out.fills
        equity += list(out.equity)
    ref = run_backtest(KIND, PARAMS, spec.engine, book.frame(t, closes, volumes))
    assert len(fills) == len(ref.trades.bar) > 8
    assert [f.bar for f in fills] == list(ref.trades.bar)
    assert [f.price for f in fills] == list(ref.trades.price)
    assert [f.quantity * f.side for f in fills] == list(ref.trades.quantity * ref.trades.side)
    assert [f.fee for f in fills] == list(ref.trades.fee)
    assert [f.venue for f in fills] == list(ref.trades.venue)
    assert equity == list(ref.equity)
    for name in ("total_pnl", "sharpe", "max_drawdown", "round_trips", "fees_paid"):
        assert out.metrics[name] == ref.metrics[name], name


def test_a_checkpoint_must_match_the_bars_processed() -> None:
    t, closes, volumes = bars(3)
    spec = paper_spec(config(), required_series(KIND, PARAMS))
    book = PaperBook(KIND, PARAMS, spec.engine, KEYS)
    first = book.step(t[:1], np.ascontiguousarray(closes[:, :1]),
                      np.ascontiguousarray(volumes[:, :1]), 0, None)
    for done, cp in ((1, None), (0, first.checkpoint), (3, first.checkpoint)):
        try:
            book.step(t, closes, volumes, done, cp)
        except ValueError:
            continue
        raise AssertionError(f"expected a refusal of done={done}")


def test_a_checkpoint_round_trips_bit_for_bit_and_other_bytes_are_refused() -> None:
    from usdcarb.backtest.paper.book import pack_state, unpack_state

    t, closes, volumes = bars(40)
    spec = paper_spec(config(), required_series(KIND, PARAMS))
    book = PaperBook(KIND, PARAMS, spec.engine, KEYS)
    blob = book.step(t, closes, volumes, 0, None).checkpoint
    state, init_eq = unpack_state(blob)
    assert pack_state(state, init_eq) == blob
    for bad in (b"PK\x03\x04" + blob[4:], blob[:-1], blob + b"\x00"):
        try:
            unpack_state(bad)
        except ValueError:
            continue
        raise AssertionError("expected a refusal of a damaged checkpoint")
