"""A backtest's trades as ONE row of column arrays (table ``backtest_trade_columns``).

Why: a million-bar run makes tens of thousands of fills; stored a row each they cost
~0.4 s inside the result's transaction (a foreign-key check, an index entry and a
tuple per row). One row of little-endian arrays is a plain copy. Venue and symbol are
indexes into the row's ``venues``/``symbols`` dictionaries. A page (``seq`` from
``after_seq + 1``) is read with ``substring``, which on uncompressed (EXTERNAL) values
fetches only the TOAST chunks it needs, so paging stays cheap however long the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from usdcarb.backtest.model import TradeRows

# column -> little-endian dtype of its array
DTYPES: dict[str, str] = {
    "time_ms": "<i8", "venue": "<u2", "symbol": "<u2", "side": "i1", "quantity": "<f8",
    "price": "<f8", "fee": "<f8", "slippage": "<f8", "round_trip": "<i8",
    "signal_bar": "<i8", "signal_edge_bps": "<f8",
}
_FLOATS = ("quantity", "price", "fee", "slippage", "signal_edge_bps")
_INTS = ("side", "round_trip", "signal_bar")

INSERT_SQL = (
    "INSERT INTO backtest_trade_columns (backtest_id, count, venues, symbols, "
    f"{', '.join(DTYPES)}) VALUES ($1, $2, $3, $4, "
    f"{', '.join(f'${i}' for i in range(5, 5 + len(DTYPES)))}) "
    "ON CONFLICT (backtest_id) DO UPDATE SET count = EXCLUDED.count, "
    "venues = EXCLUDED.venues, symbols = EXCLUDED.symbols, "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in DTYPES))

# $1 backtest id, $2 after_seq, $3 limit: the arrays' slices of rows (after_seq, +limit]
PAGE_SQL = (
    "SELECT count, venues, symbols, "
    + ", ".join(f"substring({c} FROM $2 * {np.dtype(d).itemsize} + 1 "
                f"FOR $3 * {np.dtype(d).itemsize}) AS {c}" for c, d in DTYPES.items())
    + " FROM backtest_trade_columns WHERE backtest_id = $1")


@dataclass(frozen=True)
class TradeColumns:
    """A trade log as stored: the name dictionaries and each column's bytes (``DTYPES``
    order, any bytes-like object)."""

    count: int
    venues: list[str]
    symbols: list[str]
    arrays: tuple[Any, ...]


def trade_columns(trades: TradeRows) -> TradeColumns:
    """The stored columns of ``trades`` (seq 1..n in this order)."""
    venue, venues = _codes(trades, 0, trades.venue)
    symbol, symbols = _codes(trades, 1, trades.symbol)
    columns: dict[str, Any] = {
        "time_ms": trades.time_ms, "venue": venue, "symbol": symbol,
        **{name: getattr(trades, name) for name in (*_FLOATS, *_INTS)}}
    # the arrays' own memory where they already have the stored type (no copy)
    arrays = tuple(np.ascontiguousarray(np.asarray(columns[c]).reshape(-1), dtype=d)
                   .data.cast("B") for c, d in DTYPES.items())
    return TradeColumns(count=len(trades), venues=venues, symbols=symbols, arrays=arrays)


def _codes(trades: TradeRows, part: int, names: Any) -> tuple[Any, list[str]]:
    """Each fill's index into the sorted names (venue: ``part`` 0, symbol: 1) that occur.

    From the fills' series indexes when the engine gave them (a lookup per series, not
    per fill); else from the names themselves, hashed, not sorted (np.unique sorts
    ~80k Python strings: ~0.1 s).
    """
    if trades.series is not None and trades.series_names:
        series = np.asarray(trades.series, dtype=np.intp)
        present = np.flatnonzero(np.bincount(series, minlength=len(trades.series_names)))
        found = sorted({trades.series_names[i][part] for i in present})
        code = np.array([found.index(n[part]) if n[part] in found else 0
                         for n in trades.series_names], dtype=np.int64)
        return code[series], found
    import pandas as pd  # (only for fills without series: the engine always gives them)

    codes, uniques = pd.factorize(np.asarray(names, dtype=object), sort=True)
    return codes, [str(u) for u in uniques]


def encode_trades(backtest_id: str, trades: TradeRows | TradeColumns) -> tuple[Any, ...]:
    """Return the arguments of ``INSERT_SQL`` for ``trades``."""
    c = trades if isinstance(trades, TradeColumns) else trade_columns(trades)
    return (backtest_id, c.count, c.venues, c.symbols, *c.arrays)


def decode_page(row: Any, after_seq: int) -> list[dict[str, Any]]:
    """Turn a ``PAGE_SQL`` row into trade dicts (``time`` in epoch ms), seq ascending."""
    cols = {c: np.frombuffer(row[c], d) for c, d in DTYPES.items()}
    venues, symbols = list(row["venues"]), list(row["symbols"])
    n = len(cols["time_ms"])
    out: dict[str, list[Any]] = {
        "seq": list(range(after_seq + 1, after_seq + 1 + n)),
        "time": cols["time_ms"].tolist(),
        "venue": [venues[i] for i in cols["venue"].tolist()],
        "symbol": [symbols[i] for i in cols["symbol"].tolist()],
        **{c: cols[c].astype(np.float64).tolist() for c in _FLOATS},
        **{c: cols[c].astype(np.int64).tolist() for c in _INTS},
    }
    return [dict(zip(out, values, strict=True)) for values in zip(*out.values(), strict=True)]
