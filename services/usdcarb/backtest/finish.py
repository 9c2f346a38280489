"""A finished backtest made ready to store, in the engine process, and handed to the parent.

Why: the parent used to map the run's curves back (32 MB a 2 x 1M run), copy them into
column bytes, then encode the stored forms (Parquet, LZ4), the trade columns and the
reduced curve of the final event, on the core it shares with its event loop: ~0.1 s of
a 2 x 1M run after the engine had finished. Now the engine process does it the moment
the engine returns, from the engine's own arrays (no copy), the independent encodings
side by side on threads (Arrow's codecs and numpy's large-array loops release the GIL),
and hands back only what is stored or streamed: the stored curve columns and the trade
columns in one file beside the frame, which the parent maps and passes to asyncpg as
they are; the reduced curve as serialized bytes and the figures, pickled (small).

The bytes are those the parent computed before, by the same functions
(``colcodec.encode_columns``, ``trade_columns.trade_columns``, ``curves.equity_to_pb``):
the stored curve decodes to the engine's columns bit for bit (test_result_storage).

File: int64 count of blobs, their lengths, then each blob 8-byte aligned; the parent owns
it (``handoff.discard`` removes it with the frame).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from usdcarb.backtest.colcodec import encode_baseline, encode_columns, encode_grid
from usdcarb.backtest.curves import DEFAULT_POINTS, CurveRequest, equity_to_pb
from usdcarb.backtest.engine import BacktestOutput
from usdcarb.backtest.handoff import FrameRef, map_file
from usdcarb.backtest.model import EquityColumns
from usdcarb.backtest.results import trade_rows
from usdcarb.backtest.trade_columns import DTYPES, TradeColumns, trade_columns
from usdcarb.v1 import common_pb2

_COLUMNS = ("time_ms", "equity", "drawdown", "exposure", "baseline")
THREADS = 3


@dataclass(frozen=True)
class Finished:
    """What the parent gets back through the executor: small things only."""

    output: BacktestOutput   # figures; curves and trade log left empty
    trade_count: int
    curve: bytes             # the final event's reduced EquityCurve, serialized
    points: int
    venues: tuple[str, ...]  # the trade columns' name dictionaries
    symbols: tuple[str, ...]
    sizes: tuple[int, ...]   # blob lengths in the file: the curve columns, then the trades
    seconds: float           # wall time of the finishing, for the stage log


def le_bytes(a: Any, dtype: str) -> memoryview:
    """``a`` as little-endian ``dtype`` bytes, without a copy where it already is."""
    return np.ascontiguousarray(a, dtype=dtype).data.cast("B")


def early(time_ms: npt.NDArray[np.int64]) -> tuple[dict[str, bytes],
                                                   Callable[[npt.NDArray[np.float64]], None]]:
    """Columns encoded before the run ends: the bar times now, and the hold baseline
    from the engine's ``on_baseline`` (beside the simulation; an engine process side
    thread). Pass the dict to ``finish``."""
    done = {"time_ms": encode_grid(le_bytes(time_ms, "<i8"), len(time_ms))}  # type: ignore[arg-type]

    def on_baseline(curve: npt.NDArray[np.float64]) -> None:
        done["baseline"] = encode_baseline(le_bytes(curve, "<f8"))  # type: ignore[arg-type]

    return done, on_baseline


def finish(ref: FrameRef, name: str, time_ms: npt.NDArray[np.int64],
           out: BacktestOutput, encoded: dict[str, bytes] | None = None) -> Finished:
    """Encode ``out`` for storage (engine process side); ``name`` is "backtests/{id}";
    ``encoded``: columns encoded already (``early``)."""
    started = time.perf_counter()
    initial = out.extras.get("initial_equity")
    baseline = (le_bytes([out.extras.get("initial_equity", 0.0)], "<f8")
                if out.baseline is None else le_bytes(out.baseline, "<f8"))
    raw = EquityColumns(points=len(time_ms), time_ms=le_bytes(time_ms, "<i8"),  # type: ignore[arg-type]
                        equity=le_bytes(out.equity, "<f8"),  # type: ignore[arg-type]
                        drawdown=le_bytes(out.drawdown, "<f8"),  # type: ignore[arg-type]
                        exposure=le_bytes(out.exposure, "<f8"),  # type: ignore[arg-type]
                        baseline=baseline)  # type: ignore[arg-type]
    with ThreadPoolExecutor(THREADS, thread_name_prefix="finish") as pool:
        curve = pool.submit(lambda: equity_to_pb(
            f"{name}/equityCurve", raw, common_pb2.COLUMN_LAYOUT_PACKED,
            CurveRequest(max_points=DEFAULT_POINTS, page=None)).SerializeToString())
        trades = pool.submit(lambda: trade_columns(trade_rows(time_ms, out.trades)))
        stored = encode_columns(raw, initial, executor=pool, encoded=encoded)
        t = trades.result()
    blobs = [getattr(stored, c) for c in _COLUMNS] + list(t.arrays)
    sizes = _write(ref.finished_path, blobs)
    empty = np.empty(0, np.float64)
    stripped = dataclasses.replace(
        out, equity=empty, drawdown=empty, exposure=empty,
        baseline=None if out.baseline is None else empty,
        trades=dataclasses.replace(out.trades, **{
            f.name: getattr(out.trades, f.name)[:0]
            for f in dataclasses.fields(out.trades)}))
    return Finished(output=stripped, trade_count=t.count, curve=curve.result(),
                    points=len(time_ms), venues=tuple(t.venues), symbols=tuple(t.symbols),
                    sizes=tuple(sizes), seconds=time.perf_counter() - started)


def _write(path: str, blobs: list[Any]) -> list[int]:
    sizes = [memoryview(b).nbytes for b in blobs]
    pad = b"\0" * 8
    with open(path, "wb") as f:
        f.write(np.array([len(sizes), *sizes], "<i8").tobytes())
        for b, n in zip(blobs, sizes, strict=True):
            f.write(b)
            f.write(pad[:-n % 8])
    os.chmod(path, 0o600)
    return sizes


def take_finished(ref: FrameRef, fin: Finished) -> tuple[EquityColumns, TradeColumns]:
    """The stored curve columns and trade columns ``finish`` wrote, mapped (parent side)."""
    path = ref.finished_path
    size = os.path.getsize(path)
    head = 8 * (1 + len(fin.sizes))
    total = head + sum(-(-n // 8) * 8 for n in fin.sizes)
    if len(fin.sizes) != len(_COLUMNS) + len(DTYPES) or size != total:
        raise ValueError(f"expected {total} bytes of {len(_COLUMNS) + len(DTYPES)} columns "
                         f"from the engine process, got {size} bytes of {len(fin.sizes)}")
    buf = memoryview(map_file(path, size))
    listed = np.frombuffer(buf[:head], "<i8")
    if listed[0] != len(fin.sizes) or tuple(int(x) for x in listed[1:]) != fin.sizes:
        raise ValueError(f"expected column sizes {fin.sizes}, got {listed[1:].tolist()}")
    blobs: list[memoryview] = []
    at = head
    for n in fin.sizes:
        blobs.append(buf[at:at + n])
        at += -(-n // 8) * 8
    curve = EquityColumns(points=fin.points, **dict(zip(_COLUMNS, blobs, strict=False)))  # type: ignore[arg-type]
    trades = TradeColumns(count=fin.trade_count, venues=list(fin.venues),
                          symbols=list(fin.symbols), arrays=tuple(blobs[len(_COLUMNS):]))
    return curve, trades
