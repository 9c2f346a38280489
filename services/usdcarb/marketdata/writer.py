"""Write candle columns as a PostgreSQL binary COPY stream (the reader's mirror image).

``encode_copy_binary`` lays fixed-width NOT NULL columns out in one numpy structured
array: no per-row Python work, so encoding runs at memory speed.
"""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

_PG_EPOCH_MS = 946_684_800_000
_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
STAGE_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
_ROW = np.dtype([
    ("n", ">i2"),
    ("l_ts", ">i4"), ("ts", ">i8"),
    ("l_o", ">i4"), ("open", ">f8"),
    ("l_h", ">i4"), ("high", ">f8"),
    ("l_l", ">i4"), ("low", ">f8"),
    ("l_c", ">i4"), ("close", ">f8"),
    ("l_v", ">i4"), ("volume", ">f8"),
])


def encode_copy_binary(
    open_time_ms: npt.NDArray[np.int64], open_: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64], low: npt.NDArray[np.float64],
    close: npt.NDArray[np.float64], volume: npt.NDArray[np.float64],
) -> bytes:
    """Encode rows (ts timestamptz, open, high, low, close, volume float8) for COPY BINARY."""
    n = int(open_time_ms.shape[0])
    rows = np.empty(n, dtype=_ROW)
    rows["n"] = 6
    for name in ("l_ts", "l_o", "l_h", "l_l", "l_c", "l_v"):
        rows[name] = 8
    rows["ts"] = (open_time_ms.astype(np.int64) - _PG_EPOCH_MS) * 1000
    rows["open"], rows["high"], rows["low"] = open_, high, low
    rows["close"], rows["volume"] = close, volume
    return _HEADER + rows.tobytes() + _TRAILER


# -- the columnar block cache (ingestion.candle_blocks) -----------------------------------

BLOCK_SLOTS = 10_080  # bar slots per cached block: one week of 1-minute bars
GLOBAL_LOCK = 7_216_372_948_311_501  # advisory key every unaware writer takes (shared)


def series_lock_key(exchange: str, symbol: str, timeframe: str) -> int:
    """Return the advisory lock key of one series' cache blocks (signed 64-bit)."""
    digest = hashlib.sha1(f"{exchange}|{symbol}|{timeframe}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def blocks_table(table: str) -> str:
    """Return the cache table beside a market data table ("x.market_data" -> "x.candle_blocks")."""
    schema, dot, _ = table.rpartition(".")
    return f"{schema}{dot}candle_blocks"


async def invalidate_blocks(conn: Any, *, exchange: str, symbol: str, timeframe: str,
                            first_ms: int, last_ms: int, timeframe_ms: int,
                            table: str = "ingestion.market_data") -> None:
    """Call inside the transaction that writes bars [first_ms, last_ms] of one series to
    ``table``, BEFORE the write: drop the cached blocks it changes, and mark the
    transaction so the statement guard does not drop every other block."""
    span = timeframe_ms * BLOCK_SLOTS
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)",
                       series_lock_key(exchange, symbol, timeframe))
    await conn.execute(
        f"DELETE FROM {blocks_table(table)} WHERE exchange = $1 AND symbol = $2 "
        "AND timeframe = $3 AND block_start >= $4 AND block_start <= $5",
        exchange, symbol, timeframe, (first_ms // span) * span, (last_ms // span) * span)
    await conn.execute("SELECT set_config('usdcarb.blocks_touched', 'on', true)")


# -- direct binary COPY into the market data table -----------------------------------

MARKET_COLUMNS = ("exchange", "symbol", "timeframe", "ts", "open", "high", "low", "close",
                  "volume", "provenance", "source")


def _market_dtype(texts: list[bytes], src: bytes, trades: bool) -> np.dtype[Any]:
    fields: list[tuple[str, Any]] = [("n", ">i2")]
    for i, t in enumerate(texts):
        fields += [(f"l_t{i}", ">i4"), (f"t{i}", f"S{len(t)}")]
    fields += [("l_ts", ">i4"), ("ts", ">i8")]
    for name in ("open", "high", "low", "close", "volume"):
        fields += [(f"l_{name}", ">i4"), (name, ">f8")]
    fields += [("l_p", ">i4"), ("p", ">i2"), ("l_src", ">i4"), ("src", f"S{len(src)}")]
    if trades:
        fields += [("l_trades", ">i4"), ("trades", ">i8")]
    return np.dtype(fields)


def encode_market_rows(
    exchange: str, symbol: str, timeframe: str, open_time_ms: npt.NDArray[np.int64],
    open_: npt.NDArray[np.float64], high: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64], close: npt.NDArray[np.float64],
    volume: npt.NDArray[np.float64], *, provenance: int = 1, source: str = "",
    trades: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.uint8]:
    """Encode whole ``MARKET_COLUMNS`` rows of one series (with ``trades``: and the
    ``trades`` column after them) for COPY BINARY straight into the table; return the
    whole stream (header, rows, trailer) as one byte array, which asyncpg's
    ``copy_to_table(source=...)`` takes as a buffer, without another copy.

    The text columns are the same in every row, so each row is a fixed-width record of a
    numpy structured array laid out in place inside the stream: one broadcast of a
    template row (lengths, texts, provenance, source), then the six value columns
    (big-endian) — no per-row Python work and no intermediate copies."""
    texts = [t.encode() for t in (exchange, symbol, timeframe)]
    if not all(texts):
        raise ValueError(f"expected a series key, got {(exchange, symbol, timeframe)!r}")
    src = (source or exchange).encode()
    dtype = _market_dtype(texts, src, trades is not None)
    n = int(open_time_ms.shape[0])
    head, size = len(_HEADER), len(_HEADER) + n * dtype.itemsize + len(_TRAILER)
    stream = np.empty(size, np.uint8)
    stream[:head] = np.frombuffer(_HEADER, np.uint8)
    stream[size - len(_TRAILER):] = np.frombuffer(_TRAILER, np.uint8)
    body = stream[head:size - len(_TRAILER)]
    template = np.zeros(1, dtype)
    template["n"] = len(MARKET_COLUMNS) + (trades is not None)
    for i, t in enumerate(texts):
        template[f"l_t{i}"], template[f"t{i}"] = len(t), t
    template["l_ts"] = 8
    for name in ("open", "high", "low", "close", "volume"):
        template[f"l_{name}"] = 8
    template["l_p"], template["p"] = 2, provenance
    template["l_src"], template["src"] = len(src), src
    if trades is not None:
        template["l_trades"] = 8
    body.reshape(n, dtype.itemsize)[:] = template.view(np.uint8)
    rows = body.view(dtype)
    rows["ts"] = (open_time_ms.astype(np.int64, copy=False) - _PG_EPOCH_MS) * 1000
    for name, col in (("open", open_), ("high", high), ("low", low), ("close", close),
                      ("volume", volume)):
        rows[name] = col
    if trades is not None:
        rows["trades"] = trades
    return stream


async def write_series(conn: Any, *, exchange: str, symbol: str, timeframe: str,
                       timeframe_ms: int, open_time_ms: npt.NDArray[np.int64],
                       open_: npt.NDArray[np.float64], high: npt.NDArray[np.float64],
                       low: npt.NDArray[np.float64], close: npt.NDArray[np.float64],
                       volume: npt.NDArray[np.float64], source: str = "",
                       table: str = "market_data") -> tuple[int, int]:
    """Store original bars (ascending, unique times) of one series inside the caller's
    transaction; return (bars written, bars already stored as originals).

    Bars whose time is not stored yet go in with ONE binary COPY straight into the
    hypertable: no staging table, no ``ON CONFLICT`` per row. Only bars overlapping
    stored ones are merged, and only over gap-filled bars (provenance <> 1): an original
    is never overwritten, so re-importing changes nothing. A concurrent writer that
    stores the same times first makes the COPY fail with a unique violation; the caller
    retries the transaction, which then sees those bars as stored.
    """
    written = await write_series_rows(
        conn, exchange=exchange, symbol=symbol, timeframe=timeframe,
        timeframe_ms=timeframe_ms, open_time_ms=open_time_ms, open_=open_, high=high,
        low=low, close=close, volume=volume, source=source, table=table)
    n = int(written.sum())
    return n, int(open_time_ms.shape[0]) - n


async def write_series_rows(conn: Any, *, exchange: str, symbol: str, timeframe: str,
                            timeframe_ms: int, open_time_ms: npt.NDArray[np.int64],
                            open_: npt.NDArray[np.float64], high: npt.NDArray[np.float64],
                            low: npt.NDArray[np.float64], close: npt.NDArray[np.float64],
                            volume: npt.NDArray[np.float64], source: str = "",
                            table: str = "market_data",
                            trades: npt.NDArray[np.int64] | None = None
                            ) -> npt.NDArray[np.bool_]:
    """``write_series``, returning which rows were written (the others were stored as
    originals already): a caller storing several files at once counts each file's.
    ``trades``: the bars' trade counts, when the source has them (else NULL)."""
    n = int(open_time_ms.shape[0])
    if not n:
        return np.zeros(0, bool)
    first, last = int(open_time_ms[0]), int(open_time_ms[-1])
    await invalidate_blocks(conn, exchange=exchange, symbol=symbol, timeframe=timeframe,
                            first_ms=first, last_ms=last, timeframe_ms=timeframe_ms,
                            table=table)
    stored = await conn.fetch(
        f"SELECT (extract(epoch FROM ts) * 1000)::int8 AS t, provenance FROM {table} "
        "WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 AND ts >= $4 AND ts <= $5",
        exchange, symbol, timeframe, _dt(first), _dt(last))
    fresh = np.ones(n, bool)
    replace = np.zeros(n, bool)
    if stored:
        times = np.fromiter((r[0] for r in stored), np.int64, len(stored))
        filled = np.fromiter((r[1] != 1 for r in stored), bool, len(stored))
        hit = np.isin(open_time_ms, times)
        fresh = ~hit
        replace = np.isin(open_time_ms, times[filled])
    cols = (open_, high, low, close, volume)
    written = fresh.copy()
    if fresh.any():
        idx = fresh if not fresh.all() else slice(None)
        data = encode_market_rows(exchange, symbol, timeframe, open_time_ms[idx],
                                  *(c[idx] for c in cols), source=source,
                                  trades=None if trades is None else trades[idx])
        schema, _, name = table.rpartition(".")
        await conn.copy_to_table(name, schema_name=schema or None, source=data,
                                 format="binary", columns=[*MARKET_COLUMNS, *(
                                     ("trades",) if trades is not None else ())])
    if replace.any():
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS usdcarb_merge_stage (ts timestamptz NOT NULL, "
            "open float8, high float8, low float8, close float8, volume float8) "
            "ON COMMIT DELETE ROWS")
        stage = encode_copy_binary(open_time_ms[replace], *(c[replace] for c in cols))
        await conn.copy_to_table("usdcarb_merge_stage", source=io.BytesIO(stage),
                                 format="binary", columns=list(STAGE_COLUMNS))
        updated = await conn.fetch(
            f"UPDATE {table} AS m SET open = s.open, high = s.high, low = s.low, "
            "close = s.close, volume = s.volume, provenance = 1, source = $4, "
            "ingest_time = now() FROM usdcarb_merge_stage s WHERE m.exchange = $1 AND "
            "m.symbol = $2 AND m.timeframe = $3 AND m.ts = s.ts AND m.provenance <> 1 "
            "RETURNING (extract(epoch FROM m.ts) * 1000)::int8",
            exchange, symbol, timeframe, source or exchange)
        await conn.execute(  # a gap-filled bar's trade count is not the original's
            f"UPDATE {table} AS m SET trades = u.n FROM unnest($4::int8[], $5::int8[]) "
            "AS u(t, n) WHERE m.exchange = $1 AND m.symbol = $2 AND m.timeframe = $3 AND "
            "m.ts = 'epoch'::timestamptz + u.t * interval '1 millisecond'",
            exchange, symbol, timeframe, open_time_ms[replace].tolist(),
            None if trades is None else trades[replace].tolist())
        if updated:
            written |= np.isin(open_time_ms,
                               np.fromiter((r[0] for r in updated), np.int64, len(updated)))
        await conn.execute("DELETE FROM usdcarb_merge_stage")
    return written


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
