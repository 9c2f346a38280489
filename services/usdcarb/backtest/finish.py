"""A finished backtest made ready to store, in the engine process, and handed to the parent.

Why: the parent used to map the run's curves back (32 MB a 2 x 1M run), copy them into
column bytes, then encode the stored forms (Parquet, LZ4), the trade columns and the
reduced curve of the final event, on the core it shares with its event loop: ~0.1 s of
a 2 x 1M run after the engine had finished. Now the engine process does it from the
engine's own arrays (no copy): the trade columns at once, into the job's trades file,
and it answers; the curve columns and the reduced curve go on being encoded on threads
(Arrow's codecs and numpy's large-array loops release the GIL) while the parent stores
the trades; ``stored_of``, the parent's next call, hands the stored columns over (the
finished file) as soon as they are written, and ``curves_of`` the final event's curve,
reduced meanwhile. The parent maps both files and passes the columns to asyncpg as they are; the
result commits in one transaction as before. The bar times and a moving hold baseline
are encoded earlier still, while the engine runs (``early``).

The bytes are those the parent computed before, by the same functions
(``colcodec.encode_columns``, ``trade_columns.trade_columns``, ``curves.equity_to_pb``):
the stored curve decodes to the engine's columns bit for bit (test_result_storage).

Files: int64 count of blobs, their lengths, then each blob 8-byte aligned; the parent owns
them (``handoff.discard`` removes them with the frame, once ``curves_of`` has answered).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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
    """What the parent gets back through the executor when the engine is done: small
    things only; the trade columns are in the job's trades file."""

    output: BacktestOutput   # figures; curves and trade log left empty
    trade_count: int
    points: int
    venues: tuple[str, ...]  # the trade columns' name dictionaries
    symbols: tuple[str, ...]
    sizes: tuple[int, ...]   # the trade columns' lengths in the trades file


@dataclass(frozen=True)
class Stored:
    """The stored curve columns once encoded (``stored_of``): in the job's finished file."""

    sizes: tuple[int, ...]   # the stored curve columns' lengths
    seconds: float           # wall time from the engine's end to the columns written


@dataclass(frozen=True)
class Curves(Stored):
    """... and the final event's curve (``curves_of``)."""

    curve: bytes             # the final event's reduced EquityCurve, serialized


# The curve encodings still running in this engine process, by frame file: the stored
# columns, then the final event's curve too.
_pending: dict[str, tuple[Future[Stored], Future[Curves]]] = {}


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
    ``encoded``: columns encoded already (``early``).

    The trade columns are written before this returns, so the parent can store them at
    once; the curve columns and the reduced curve go on being encoded on threads of
    this process, and ``stored_of`` and ``curves_of`` (the parent's next calls here)
    hand them over.
    """
    started = time.perf_counter()
    initial = out.extras.get("initial_equity")
    baseline = (le_bytes([out.extras.get("initial_equity", 0.0)], "<f8")
                if out.baseline is None else le_bytes(out.baseline, "<f8"))
    raw = EquityColumns(points=len(time_ms), time_ms=le_bytes(time_ms, "<i8"),  # type: ignore[arg-type]
                        equity=le_bytes(out.equity, "<f8"),  # type: ignore[arg-type]
                        drawdown=le_bytes(out.drawdown, "<f8"),  # type: ignore[arg-type]
                        exposure=le_bytes(out.exposure, "<f8"),  # type: ignore[arg-type]
                        baseline=baseline)  # type: ignore[arg-type]
    columns: Future[Stored] = Future()
    done: Future[Curves] = Future()

    def curves() -> None:
        # The stored columns first (the parent writes them to PostgreSQL while the final
        # event's curve is reduced here: it is needed only once they are committed).
        try:
            with ThreadPoolExecutor(THREADS, thread_name_prefix="finish") as pool:
                stored = encode_columns(raw, initial, executor=pool, encoded=encoded)
            sizes = tuple(_write(ref.finished_path, [getattr(stored, c) for c in _COLUMNS]))
            written = time.perf_counter() - started
            columns.set_result(Stored(sizes=sizes, seconds=written))
            curve = equity_to_pb(
                f"{name}/equityCurve", raw, common_pb2.COLUMN_LAYOUT_PACKED,
                CurveRequest(max_points=DEFAULT_POINTS, page=None)).SerializeToString()
            done.set_result(Curves(sizes=sizes, seconds=written, curve=curve))
        except BaseException as exc:   # handed to the parent by stored_of / curves_of
            for future in (columns, done):
                if not future.done():
                    future.set_exception(exc)

    for path, (_, old) in list(_pending.items()):   # a parent that never came back
        old.exception()
        del _pending[path]
    _pending[ref.path] = (columns, done)
    threading.Thread(target=curves, name="finish-curves", daemon=True).start()
    t = trade_columns(trade_rows(time_ms, out.trades))
    sizes = _write(ref.trades_path, list(t.arrays))
    empty = np.empty(0, np.float64)
    stripped = dataclasses.replace(
        out, equity=empty, drawdown=empty, exposure=empty,
        baseline=None if out.baseline is None else empty,
        trades=dataclasses.replace(out.trades, **{
            f.name: getattr(out.trades, f.name)[:0]
            for f in dataclasses.fields(out.trades)}))
    return Finished(output=stripped, trade_count=t.count, points=len(time_ms),
                    venues=tuple(t.venues), symbols=tuple(t.symbols), sizes=tuple(sizes))


def stored_of(path: str) -> Stored:
    """(Engine process) wait for the stored curve columns ``finish`` is encoding for the
    frame file ``path`` (written to its finished file), and say where they are."""
    pending = _pending.get(path)
    if pending is None:
        raise ValueError(f"expected curve columns being encoded for {path}, got none")
    return pending[0].result()


def curves_of(path: str) -> Curves:
    """(Engine process) wait for the curve columns and the final event's curve ``finish``
    is making for the frame file ``path``, and hand them over (the last call for it)."""
    pending = _pending.pop(path, None)
    if pending is None:
        raise ValueError(f"expected curve columns being encoded for {path}, got none")
    return pending[1].result()


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


def _blobs(path: str, sizes: tuple[int, ...]) -> list[memoryview]:
    """The blobs ``_write`` wrote to ``path``, mapped."""
    size = os.path.getsize(path)
    head = 8 * (1 + len(sizes))
    total = head + sum(-(-n // 8) * 8 for n in sizes)
    if size != total:
        raise ValueError(f"expected {total} bytes of {len(sizes)} columns from the engine "
                         f"process, got {size} bytes")
    buf = memoryview(map_file(path, size))
    listed = np.frombuffer(buf[:head], "<i8")
    if listed[0] != len(sizes) or tuple(int(x) for x in listed[1:]) != sizes:
        raise ValueError(f"expected column sizes {sizes}, got {listed[1:].tolist()}")
    out: list[memoryview] = []
    at = head
    for n in sizes:
        out.append(buf[at:at + n])
        at += -(-n // 8) * 8
    return out


def take_trades(ref: FrameRef, fin: Finished) -> TradeColumns:
    """The trade columns ``finish`` wrote, mapped (parent side)."""
    if len(fin.sizes) != len(DTYPES):
        raise ValueError(f"expected {len(DTYPES)} trade columns, got {len(fin.sizes)}")
    return TradeColumns(count=fin.trade_count, venues=list(fin.venues),
                        symbols=list(fin.symbols),
                        arrays=tuple(_blobs(ref.trades_path, fin.sizes)))


def take_curves(ref: FrameRef, fin: Finished, curves: Stored) -> EquityColumns:
    """The stored curve columns ``finish`` wrote, mapped (parent side)."""
    if len(curves.sizes) != len(_COLUMNS):
        raise ValueError(f"expected {len(_COLUMNS)} curve columns, got {len(curves.sizes)}")
    blobs = _blobs(ref.finished_path, curves.sizes)
    return EquityColumns(points=fin.points, **dict(zip(_COLUMNS, blobs, strict=True)))  # type: ignore[arg-type]
