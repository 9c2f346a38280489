"""spread-arb-v1 in vectorbt 1.0 (run with .venv-bench/bin/python).

usage: vbt_spread.py DIR single next|same   -> DIR/vbt_single.{json,npz}
       vbt_spread.py DIR sweep ENTRY,EXIT;...  -> DIR/vbt_sweep.json (100 separate portfolios)
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import numpy as np
import vectorbt as vbt
from common import (
    FEE_A_BPS,
    FEE_B_BPS,
    INIT_CASH,
    QTY,
    SLIP_BPS,
    best_of,
    load,
    signals,
    tradable,
    write,
)


def run(a: np.ndarray, b: np.ndarray, entry: float, exit_: float, same: bool) -> tuple:
    idx, ta, tb = tradable(a, b)
    long_a, short_a, ex = signals(ta, tb, entry, exit_, same)
    close = np.column_stack([ta, tb])
    pf = vbt.Portfolio.from_signals(
        close, entries=np.column_stack([long_a, short_a]), exits=np.column_stack([ex, ex]),
        short_entries=np.column_stack([short_a, long_a]), short_exits=np.column_stack([ex, ex]),
        size=QTY, size_type="amount", fees=np.array([FEE_A_BPS / 1e4, FEE_B_BPS / 1e4]),
        slippage=SLIP_BPS / 1e4, init_cash=INIT_CASH, cash_sharing=True, group_by=True,
        upon_opposite_entry="ignore", freq="1min")
    rec = pf.orders.values
    pnl = float(pf.final_value()) - INIT_CASH
    sharpe = float(pf.sharpe_ratio())
    return idx, rec, pnl, sharpe, pf


def main() -> None:
    folder, mode = Path(sys.argv[1]), sys.argv[2]
    a, b = load(folder)
    if mode == "single":
        same = sys.argv[3] == "same"
        secs, (idx, rec, pnl, sharpe, _) = best_of(lambda: run(a, b, 15.0, 3.0, same))
        write(folder, "vbt_single", {"seconds": secs, "pnl": pnl, "sharpe": sharpe},
              {"bar": idx[rec["idx"]], "col": rec["col"], "side": rec["side"],
               "size": rec["size"], "price": rec["price"], "fee": rec["fees"]})
        return
    pairs = [tuple(map(float, p.split(","))) for p in sys.argv[3].split(";")]
    run(a, b, *pairs[0], False)  # warm-up (vectorbt compiles its kernels)
    gc.collect()
    t0 = time.perf_counter()
    pnls = []
    for entry, exit_ in pairs:
        *_, pnl, _, pf = run(a, b, entry, exit_, False)
        pnls.append(pnl)
        del pf
        gc.collect()
    write(folder, "vbt_sweep", {"seconds": time.perf_counter() - t0, "pnl": pnls}, {})


if __name__ == "__main__":
    main()
