"""spread-arb-v1 in backtrader (run with .venv-bench/bin/python).

usage: bt_spread.py DIR next|same  -> DIR/bt_single.{json,npz}

Both feeds carry only the tradable bars (open = close), so a market order placed on a
bar fills at the next tradable bar's close (cheat-on-close for same-bar fills).
"""

from __future__ import annotations

import sys
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
from common import FEE_A_BPS, FEE_B_BPS, INIT_CASH, QTY, SLIP_BPS, best_of, load, tradable, write


class Spread(bt.Strategy):  # type: ignore[misc]
    params = (("entry", 15.0), ("exit", 3.0))

    def __init__(self) -> None:
        self.target = 0
        self.held = 0
        self.fills: list[tuple[int, int, int, float, float, float]] = []
        self.entry_thr = self.p.entry / 1e4
        self.exit_thr = self.p.exit / 1e4

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            col = 0 if order.data is self.datas[0] else 1
            ex = order.executed
            self.fills.append((order.ref, col, 1 if ex.size > 0 else -1, abs(ex.size),
                               ex.price, ex.comm))

    def next(self) -> None:
        a, b = self.datas[0].close[0], self.datas[1].close[0]
        spread = (b - a) / a
        if self.target == 0 and spread > self.entry_thr:
            self.target = 1
        elif self.target == 0 and spread < -self.entry_thr:
            self.target = -1
        elif self.target != 0 and abs(spread) < self.exit_thr:
            self.target = 0
        if self.target != self.held:
            if self.held != 0:
                self.order(self.datas[0], -self.held)
                self.order(self.datas[1], self.held)
            if self.target != 0:
                self.order(self.datas[0], self.target)
                self.order(self.datas[1], -self.target)
            self.held = self.target

    def order(self, data: bt.feed.DataBase, side: int) -> None:
        (self.buy if side > 0 else self.sell)(data=data, size=QTY, exectype=bt.Order.Market)


def run(idx: np.ndarray, ta: np.ndarray, tb: np.ndarray, same: bool) -> tuple[list[tuple], float]:
    cerebro = bt.Cerebro(stdstats=False)
    times = pd.date_range("2024-01-01", periods=len(idx), freq="1min")
    for name, x in (("A", ta), ("B", tb)):
        df = pd.DataFrame({"open": x, "high": x, "low": x, "close": x, "volume": 1e12,
                           "openinterest": 0.0}, index=times)
        # PandasDirectData reads rows as tuples (index first): the default column map fits.
        cerebro.adddata(bt.feeds.PandasDirectData(dataname=df), name=name)
    cerebro.broker.setcash(INIT_CASH)
    cerebro.broker.set_checksubmit(False)
    cerebro.broker.set_slippage_perc(SLIP_BPS / 1e4, slip_open=True, slip_match=True,
                                     slip_out=True)
    if same:
        cerebro.broker.set_coc(True)
    for name, fee in (("A", FEE_A_BPS), ("B", FEE_B_BPS)):
        cerebro.broker.setcommission(commission=fee / 1e4, commtype=bt.CommInfoBase.COMM_PERC,
                                     percabs=True, stocklike=True, name=name)
    cerebro.addstrategy(Spread)
    strat = cerebro.run(runonce=False, preload=True)[0]
    return strat.fills, float(cerebro.broker.getvalue() - INIT_CASH)


def main() -> None:
    folder, same = Path(sys.argv[1]), sys.argv[2] == "same"
    a, b = load(folder)
    idx, ta, tb = tradable(a, b)
    secs, (fills, pnl) = best_of(lambda: run(idx, ta, tb, same), repeat=int(sys.argv[3]) if len(
        sys.argv) > 3 else 3)
    fills.sort(key=lambda f: f[0])   # order refs: legs in submission order
    arr = np.array([f[1:6] for f in fills]) if fills else np.zeros((0, 5))
    write(folder, "bt_single", {"seconds": secs, "pnl": pnl},
          {"col": arr[:, 0].astype(np.int64), "side": arr[:, 1].astype(np.int64),
           "size": arr[:, 2], "price": arr[:, 3], "fee": arr[:, 4]})


if __name__ == "__main__":
    main()
