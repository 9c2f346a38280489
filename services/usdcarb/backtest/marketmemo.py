"""Market data of recent runs kept in memory, block by block, for as long as it is current.

Why: a run reads its series through the block cache beside the hypertable
(``usdcarb.marketdata.cache``): a million bars are ~100 block rows, ~50 MB off the
database per series, then placed on the grid and hashed (~0.2 s a series on two cores).
Runs over the same data (a sweep's chunks, the same range re-run, overlapping ranges)
re-read the same blocks. This memo keeps each block already placed on its bar grid
(close and volume, NaN where the venue has no bar) with the digest of its rows, and
takes it again only while the block row it came from is the current one.

Versions: a block row is only ever deleted (by the writer that changes its bars, or the
statement guard on ``market_data``) and rebuilt as a new row, so the row's ``xmin`` (the
transaction that wrote it) with its ``build_time`` names its data. A read lists the blocks' ``xmin`` (no column
bytes), then fetches only the blocks the memo does not hold at that version, both in one
REPEATABLE READ snapshot. Blocks not built yet (new data, or the week still filling) are
read through ``CandleCache`` (which builds them when it may) and not kept.

Snapshot hash: sha256 over the range, then per series its name, row count and, per
block of the range, the sha256 of the rows of that block inside the range (every
column, little-endian). It covers exactly the rows read, as before, but a block's digest
is computed once per block version instead of once per run. A block cut by the range's
ends is always fetched and hashed over the rows inside the range.

Memory: least recently used blocks are dropped past ``max_bytes`` (16 bytes a bar slot).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from usdcarb.marketdata.cache import CandleCache
from usdcarb.marketdata.reader import Candles
from usdcarb.marketdata.writer import BLOCK_SLOTS

F64 = npt.NDArray[np.float64]
_COLS = ("ts", "open", "high", "low", "close", "volume", "provenance")
_DTYPES = ("<i8", "<f8", "<f8", "<f8", "<f8", "<f8", "u1")
# A block row's version: the transaction that wrote it and when (the time as well, so
# that even a transaction id reused after wraparound cannot name two rows).
_VERSION = "xmin::text || '@' || build_time::text"


@dataclass(frozen=True)
class GridBlock:
    """One block's bars on its slot grid, and the digest of its rows."""

    version: str   # "xmin@build_time" of the block row it was read from
    rows: int
    digest: bytes
    close: F64     # BLOCK_SLOTS slots from the block start, NaN where no bar
    volume: F64

    @property
    def nbytes(self) -> int:
        return int(self.close.nbytes + self.volume.nbytes) + 64


def rows_digest(columns: Sequence[npt.NDArray[Any]]) -> bytes:
    """sha256 of rows given as the seven columns (ts, OHLCV, provenance), little-endian."""
    h = hashlib.sha256(f"{len(columns[0])}|".encode())
    for col, dtype in zip(columns, _DTYPES, strict=True):
        h.update(np.ascontiguousarray(col, dtype=dtype).data)
    return h.digest()


def _place(ts: npt.NDArray[np.int64], close: F64, volume: F64, origin: int,
           timeframe_ms: int, out_close: F64, out_volume: F64) -> None:
    """Put bars on the grid starting at ``origin`` (bars off the grid or outside it are
    ignored: the ingestion service stores aligned bars only)."""
    offset = ts - origin
    idx = offset // timeframe_ms
    ok = (offset % timeframe_ms == 0) & (idx >= 0) & (idx < len(out_close))
    if ok.all():
        out_close[idx] = close
        out_volume[idx] = volume
    else:
        out_close[idx[ok]] = close[ok]
        out_volume[idx[ok]] = volume[ok]


def grid_block(version: str, cols: Sequence[npt.NDArray[Any]], block_start: int,
               timeframe_ms: int) -> GridBlock:
    """A block's rows (seven columns) as a GridBlock."""
    close = np.full(BLOCK_SLOTS, np.nan)
    volume = np.full(BLOCK_SLOTS, np.nan)
    ts = np.asarray(cols[0], np.int64)
    _place(ts, np.asarray(cols[4], np.float64), np.asarray(cols[5], np.float64), block_start,
           timeframe_ms, close, volume)
    return GridBlock(version=version, rows=len(ts), digest=rows_digest(cols), close=close,
                     volume=volume)


class MarketMemo:
    """Grid blocks of recently read series, least recently used dropped past a budget."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self._blocks: OrderedDict[tuple[str, ...], GridBlock] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()   # blocks are put from worker threads
        self.hits = self.misses = 0

    def get(self, key: tuple[str, ...], version: str) -> GridBlock | None:
        with self._lock:
            block = self._blocks.get(key)
            if block is None or block.version != version:
                self.misses += 1
                return None
            self._blocks.move_to_end(key)
            self.hits += 1
            return block

    def put(self, key: tuple[str, ...], block: GridBlock) -> None:
        if block.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._blocks.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._blocks[key] = block
            self._bytes += block.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._blocks.popitem(last=False)
                self._bytes -= dropped.nbytes

    @property
    def nbytes(self) -> int:
        return self._bytes


@dataclass(frozen=True)
class SeriesRead:
    """What reading one series gave: its rows and digest, and ``fill(close, volume)``,
    which places its bars on the grid (every slot written, NaN where no bar)."""

    rows: int
    digest: bytes    # sha256 over the series' per-block digests
    fill: Callable[[F64, F64], None] = field(compare=False, repr=False,
                                             default=lambda close, volume: None)


async def read_series(
    conn: Any, memo: MarketMemo | None, *, table: str, blocks: str, exchange: str,
    symbol: str, timeframe: str, timeframe_ms: int, start_ms: int, end_ms: int,
    origin: int, out_close: F64 | None = None, out_volume: F64 | None = None,
) -> SeriesRead:
    """Read bars [start_ms, end_ms) of one series, through ``memo`` (see the module
    docstring), and place them on the grid ``out_*`` (slot 0 at ``origin``,
    epoch-aligned; every slot is written, NaN where no bar) when given; else the
    result's ``fill`` places them later (a caller that may not need them)."""
    span = timeframe_ms * BLOCK_SLOTS
    first, last = (start_ms // span) * span, ((end_ms - 1) // span) * span
    starts = list(range(first, last + span, span)) if end_ms > start_ms else []
    series = (table, exchange, symbol, timeframe)

    def whole(b: int) -> bool:
        return b >= start_ms and b + span <= end_ms

    held: dict[int, GridBlock] = {}
    fetched: dict[int, Any] = {}
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        listed = await conn.fetch(
            f"SELECT block_start, {_VERSION} AS version FROM {blocks} "
            "WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 "
            "AND block_start >= $4 AND block_start <= $5", exchange, symbol, timeframe,
            first, last)
        versions = {int(r["block_start"]): str(r["version"]) for r in listed}
        want = []
        for b, v in versions.items():
            got = memo.get((*series, str(b)), v) if memo is not None and whole(b) else None
            if got is None:
                want.append(b)
            else:
                held[b] = got
        if want:
            for r in await conn.fetch(
                    f"SELECT block_start, {_VERSION} AS version, {', '.join(_COLS)} "
                    f"FROM {blocks} WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 "
                    "AND block_start = ANY($4::bigint[])", exchange, symbol, timeframe, want):
                fetched[int(r["block_start"])] = r
    # Blocks not built: read (and built where possible) through the block cache, one
    # read per run of consecutive missing blocks, clipped to the range.
    rest: dict[int, Candles] = {}
    missing = [b for b in starts if b not in held and b not in fetched]
    runs: list[list[int]] = []
    for b in missing:
        if runs and runs[-1][-1] + span == b:
            runs[-1].append(b)
        else:
            runs.append([b])
    if runs:
        cache = CandleCache(table=table, blocks=blocks)
        for run in runs:
            lo, hi = max(start_ms, run[0]), min(end_ms, run[-1] + span)
            c = await cache.read(conn, exchange=exchange, symbol=symbol, timeframe=timeframe,
                                 timeframe_ms=timeframe_ms, start=_dt(lo), end=_dt(hi))
            for b in run:
                i = int(np.searchsorted(c.open_time_ms, b, "left"))
                j = int(np.searchsorted(c.open_time_ms, b + span, "left"))
                rest[b] = Candles(*(getattr(c, f)[i:j] for f in Candles.__dataclass_fields__))

    # (grid slots lo, hi, the whole block or the rows of a cut one)
    Part = tuple[int, int, GridBlock | None, list[Any] | None]

    def prepare() -> tuple[int, bytes, list[Part]]:
        rows = 0
        digests: list[bytes] = []
        parts: list[Part] = []
        for b in starts:
            block = held.get(b)
            if block is None and b in fetched:
                r = fetched[b]
                cols = [np.frombuffer(r[c], d) for c, d in zip(_COLS, _DTYPES, strict=True)]
                if whole(b):
                    block = grid_block(str(r["version"]), cols, b, timeframe_ms)
                    if memo is not None:
                        memo.put((*series, str(b)), block)
                else:
                    ts = cols[0]
                    i = int(np.searchsorted(ts, start_ms, "left"))
                    j = int(np.searchsorted(ts, end_ms, "left"))
                    cols = [c[i:j] for c in cols]
            elif block is None:
                c = rest[b]
                cols = [c.open_time_ms, c.open, c.high, c.low, c.close, c.volume,
                        c.provenance]
            # The grid slots of this block (block starts and the origin are on the grid).
            lo = max(0, (b - origin) // timeframe_ms)
            hi = min(slots, (b + span - origin) // timeframe_ms)
            if block is not None:   # a whole block: every slot of it inside the grid
                parts.append((lo, hi, block, None))
                rows += block.rows
                digests.append(block.digest)
            else:
                parts.append((lo, hi, None, cols))
                rows += len(cols[0])
                digests.append(rows_digest(cols))
        h = hashlib.sha256(f"|{exchange}|{symbol}|{rows}|".encode())
        for d in digests:
            h.update(d)
        return rows, h.digest(), parts

    def fill(parts: list[Part], close: F64, volume: F64) -> None:
        for lo, hi, block, cols in parts:
            if block is not None:
                close[lo:hi] = block.close
                volume[lo:hi] = block.volume
            else:
                assert cols is not None
                close[lo:hi] = np.nan
                volume[lo:hi] = np.nan
                _place(np.asarray(cols[0], np.int64), np.asarray(cols[4], np.float64),
                       np.asarray(cols[5], np.float64), origin, timeframe_ms, close, volume)

    slots = (end_ms - origin + timeframe_ms - 1) // timeframe_ms if end_ms > origin else 0

    def read() -> SeriesRead:
        rows, digest, parts = prepare()
        if out_close is not None and out_volume is not None:
            fill(parts, out_close, out_volume)
        return SeriesRead(rows=rows, digest=digest,
                          fill=lambda close, volume: fill(parts, close, volume))

    return await asyncio.to_thread(read)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
