"""Step the backtest engine forward over newly arrived bars from a checkpoint.

The same code as a backtest: ``engine.run.prepare`` lays the bars out, ``fresh_state``
starts the run at its first bar and ``legs.simulate`` runs the new bars ``[done, n)`` from
the checkpointed kernel state (positions, balances, pending orders, curve statistics), as
``run_plan`` runs its progress chunks. Bar indices in the state are absolute from the
run's first bar, so the layout always spans every bar the run has seen (as the run saw
them: a market's bar missing when its bar was processed stays missing).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from usdcarb.backtest.engine.kernel import S_NTR
from usdcarb.backtest.engine.legs import simulate
from usdcarb.backtest.engine.metrics import as_dict, utilization
from usdcarb.backtest.engine.model import F64, I64, EngineConfig, MarketFrame, Series
from usdcarb.backtest.engine.params import normalized, param_vector
from usdcarb.backtest.engine.run import Trades, _grow, empty_trades, figures, fresh_state, prepare

MAGIC = b"USDCARB-PAPER-1\n"
_HEAD = struct.Struct("<4sB")     # dtype ("<f8", "<i8", "|i1" ...), number of dimensions


def pack_state(state: Sequence[Any], init_eq: float) -> bytes:
    """Serialise the kernel state (a tuple of arrays) and the initial equity, bit for bit.

    A flat little format (per array: dtype, shape, raw bytes) rather than ``np.savez``:
    it is written and read once per bar, and a zip archive cost most of a bar's step.
    """
    parts = [MAGIC, struct.pack("<dI", init_eq, len(state))]
    for a in state:
        arr = np.ascontiguousarray(a)
        code = arr.dtype.str.encode()
        if len(code) != 3 or arr.dtype.byteorder == ">":
            raise ValueError(f"expected a little-endian numeric array, got {arr.dtype}")
        parts.append(_HEAD.pack(code.ljust(4), arr.ndim))
        parts.append(struct.pack(f"<{arr.ndim}q", *arr.shape))
        parts.append(arr.tobytes())
    return b"".join(parts)


def unpack_state(blob: bytes) -> tuple[tuple[Any, ...], float]:
    """Return the kernel state and initial equity ``pack_state`` stored."""
    view = memoryview(blob)
    if bytes(view[:len(MAGIC)]) != MAGIC:
        raise ValueError("expected a paper checkpoint, got other bytes")
    at = len(MAGIC)
    init_eq, count = struct.unpack_from("<dI", view, at)
    at += struct.calcsize("<dI")
    out = []
    for _ in range(count):
        code, ndim = _HEAD.unpack_from(view, at)
        at += _HEAD.size
        shape = struct.unpack_from(f"<{ndim}q", view, at)
        at += 8 * ndim
        dtype = np.dtype(code.rstrip(b" ").decode())
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        out.append(np.frombuffer(view[at:at + size], dtype).reshape(shape).copy())
        at += size
    if at != len(blob):
        raise ValueError(f"expected {at} bytes of checkpoint, got {len(blob)}")
    return tuple(out), float(init_eq)


@dataclass(frozen=True)
class Fill:
    """One leg fill, of a paper run or of a backtest (a trade log row; bar: the index from
    the run's first bar)."""

    bar: int
    time_ms: int
    venue: str
    symbol: str
    side: int
    quantity: float
    price: float
    fee: float
    slippage: float
    round_trip: int
    signal_bar: int
    signal_edge_bps: float


@dataclass(frozen=True)
class Stepped:
    """What running bars ``[done, n)`` produced."""

    fills: list[Fill]
    equity: F64          # per new bar
    drawdown: F64
    exposure: F64
    checkpoint: bytes
    init_eq: float
    metrics: dict[str, Any]
    balances: list[tuple[str, str, float]]


class PaperBook:
    """A strategy version under one config, trading the markets ``keys`` (legs first)."""

    def __init__(self, kind: str, params: Mapping[str, Any], config: EngineConfig,
                 keys: Sequence[tuple[str, str]]) -> None:
        if config.robustness is not None:
            raise ValueError("expected no robustness panel for a paper run")
        self.kind = kind
        self.params = dict(params)
        self.config = config
        self.keys = list(keys)
        self.pvec = param_vector(kind, normalized(kind, params))

    def frame(self, time_ms: I64, closes: F64, volumes: F64) -> MarketFrame:
        return MarketFrame(time_ms=time_ms, series=tuple(
            Series(venue=v, symbol=s, close=closes[j], volume=volumes[j])
            for j, (v, s) in enumerate(self.keys)))

    def step(self, time_ms: I64, closes: F64, volumes: F64, done: int,
             checkpoint: bytes | None) -> Stepped:
        """Run bars ``[done, len(time_ms))`` of the bars seen so far ([series, bar] arrays)
        from ``checkpoint`` (None: a fresh run, ``done`` 0)."""
        n = len(time_ms)
        if not 0 <= done < n:
            raise ValueError(f"expected new bars after bar {done}, got {n} bars")
        if (checkpoint is None) != (done == 0):
            raise ValueError("expected a checkpoint exactly when bars were processed")
        plan, _ = prepare(self.kind, self.params, self.config,
                          self.frame(time_ms, closes, volumes))
        if checkpoint is None:
            state, init_eq = fresh_state(plan)
        else:
            state, init_eq = unpack_state(checkpoint)
        st = state[5]
        ntr0 = int(st[S_NTR])
        equity = np.zeros(n)
        exposure = np.zeros(n)
        drawdown = np.zeros(n)
        trades: Trades = empty_trades(ntr0 + 64)
        at = done
        while at < n:
            at = simulate(plan.layout, self.pvec, at, n, state, equity, exposure, drawdown,
                          True, trades)
            if at < n:
                trades = _grow(trades, 2 * len(trades.bar))
        ntr = int(st[S_NTR])
        fills = [Fill(bar=int(trades.bar[k]), time_ms=int(time_ms[trades.bar[k]]),
                      venue=plan.series[trades.ser[k]].venue,
                      symbol=plan.series[trades.ser[k]].symbol, side=int(trades.side[k]),
                      quantity=float(trades.qty[k]), price=float(trades.px[k]),
                      fee=float(trades.fee[k]), slippage=float(trades.slip[k]),
                      round_trip=int(trades.rt[k]), signal_bar=int(trades.sig[k]),
                      signal_edge_bps=float(trades.edge[k]))
                 for k in range(ntr0, ntr)]
        probe = tuple(np.array(a, copy=True) for a in state)
        vec = figures(probe, n, int(time_ms[-1]), init_eq, float(self.config.periods_per_year))
        util = utilization(plan.slots, plan.init_bal, plan.layout.slot_lim, state[1])
        metrics = as_dict(vec, util)
        balances = [(v, a, float(state[0][k])) for k, (v, a) in enumerate(plan.slots)]
        return Stepped(fills=fills, equity=equity[done:].copy(),
                       drawdown=drawdown[done:].copy(), exposure=exposure[done:].copy(),
                       checkpoint=pack_state(state, init_eq), init_eq=init_eq,
                       metrics=metrics, balances=balances)
