"""Load recorded market data into a catalogue of series the replay server serves.

Sources (see ../shared/data/exchanges/README.md): the IAQF 2026 1-minute parquet files
(Binance.US, Coinbase, Kraken, Bybit) and Kraken's official OHLCVT CSVs (5m, 1h).

Two deliberate labels, kept in every ``Series.note`` and in the catalogue endpoint:
* ``binance`` serves the **Binance.US** recording under api.binance.com's wire format.
* ``okx`` has no recording: it serves the Binance.US USDC series under OKX's wire format
  so that ccxt's OKX request/response path is exercised. It is not OKX market data.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

TIMEFRAME_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000,
                "4h": 14_400_000, "1d": 86_400_000}
IAQF = "iaqf2026_dhruvk1432/data_raw"
BYBIT = "iaqf2026_nl2992/data/cross_exchange/bybit_btcusdc_1min.parquet"
KRAKEN_CSV = "iaqf2026_cl8550/data/kraken_raw"

F8 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Series:
    """One recorded series, ascending by open time, as the replay server serves it."""

    exchange: str  # the wire format it is served under (ccxt id)
    symbol: str  # unified symbol, e.g. "USDC/USDT"
    timeframe: str
    ts_ms: npt.NDArray[np.int64]
    open: F8
    high: F8
    low: F8
    close: F8
    volume: F8
    source: str  # file it was read from, relative to the data directory
    note: str = ""
    extra: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def window(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        """Return the index range of bars with ``start_ms <= ts < end_ms``."""
        lo = int(np.searchsorted(self.ts_ms, start_ms, side="left"))
        hi = int(np.searchsorted(self.ts_ms, end_ms, side="left"))
        return lo, max(lo, hi)


def _series(exchange: str, symbol: str, timeframe: str, frame: pd.DataFrame, ts_ms: npt.NDArray[
        np.int64], source: str, note: str = "", extra: Iterable[str] = ()) -> Series:
    order = np.argsort(ts_ms, kind="stable")

    def col(name: str) -> F8:
        return np.ascontiguousarray(frame[name].to_numpy(np.float64)[order])

    return Series(
        exchange=exchange, symbol=symbol, timeframe=timeframe,
        ts_ms=np.ascontiguousarray(ts_ms[order]), open=col("open"), high=col("high"),
        low=col("low"), close=col("close"), volume=col("volume"), source=source, note=note,
        extra={name: frame[name].to_numpy()[order] for name in extra},
    )


def _index_ms(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    index = pd.DatetimeIndex(frame.index)
    return np.asarray(index.as_unit("ms").asi8, dtype=np.int64)


def load_parquet(path: Path, exchange: str, symbol: str, source: str, note: str = "") -> Series:
    """Read one of the 1-minute parquet recordings (index = bar open time, UTC)."""
    frame = pd.read_parquet(path)
    extra = [c for c in ("close_time", "quote_volume", "trades", "n_trades", "taker_buy_base",
                         "taker_buy_quote", "ignore") if c in frame.columns]
    return _series(exchange, symbol, "1m", frame, _index_ms(frame), source, note, extra)


def load_kraken_ohlcvt(path: Path, symbol: str, timeframe: str, source: str) -> Series:
    """Read a Kraken OHLCVT CSV (no header: unix_s, o, h, l, c, volume, trades)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    arr = np.array([[float(x) for x in r[:7]] for r in rows], dtype=np.float64).reshape(-1, 7)
    frame = pd.DataFrame(arr[:, 1:7], columns=["open", "high", "low", "close", "volume", "trades"])
    ts = (arr[:, 0].astype(np.int64)) * 1000
    return _series("kraken", symbol, timeframe, frame, ts, source, "Kraken OHLCVT file",
                   ["trades"])


# (file stem, exchange served as, unified symbol, note)
_PARQUET = [
    ("binance_btcusdc", "binance", "BTC/USDC", "Binance.US recording"),
    ("binance_btcusdt", "binance", "BTC/USDT", "Binance.US recording"),
    ("binance_usdcusdt", "binance", "USDC/USDT", "Binance.US recording"),
    ("coinbase_btcusd", "coinbase", "BTC/USD", "Coinbase recording"),
    ("coinbase_btcusdt", "coinbase", "BTC/USDT", "Coinbase recording"),
    ("coinbase_usdtusd", "coinbase", "USDT/USD", "Coinbase recording"),
    ("kraken_btcusd", "kraken", "BTC/USD", "Kraken recording (from Trades)"),
    ("kraken_btcusdc", "kraken", "BTC/USDC", "Kraken recording (from Trades)"),
    ("kraken_btcusdt", "kraken", "BTC/USDT", "Kraken recording (from Trades)"),
    ("kraken_usdcusd", "kraken", "USDC/USD", "Kraken recording (from Trades)"),
    ("kraken_usdtusd", "kraken", "USDT/USD", "Kraken recording (from Trades)"),
]
OKX_STANDIN = "NOT OKX DATA: the Binance.US recording served in OKX's wire format"


class Catalog:
    """Series by (exchange, symbol, timeframe)."""

    def __init__(self, series: Iterable[Series] = ()) -> None:
        self._by_key: dict[tuple[str, str, str], Series] = {}
        for s in series:
            self.add(s)

    def add(self, series: Series) -> None:
        self._by_key[(series.exchange, series.symbol, series.timeframe)] = series

    def get(self, exchange: str, symbol: str, timeframe: str) -> Series | None:
        return self._by_key.get((exchange, symbol, timeframe))

    def __iter__(self) -> Iterator[Series]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def describe(self) -> list[dict[str, object]]:
        """Return the catalogue as JSON-able rows (served at /_replay/catalog)."""
        return [{"exchange": s.exchange, "symbol": s.symbol, "timeframe": s.timeframe,
                 "bars": len(s), "first_ms": int(s.ts_ms[0]) if len(s) else None,
                 "last_ms": int(s.ts_ms[-1]) if len(s) else None, "source": s.source,
                 "note": s.note} for s in self._by_key.values()]


def with_okx_standin(catalog: Catalog) -> None:
    """Serve Binance.US's USDC series under OKX's wire format, labelled as such."""
    for symbol in ("BTC/USDC", "USDC/USDT", "BTC/USDT"):
        s = catalog.get("binance", symbol, "1m")
        if s is not None:
            catalog.add(Series(exchange="okx", symbol=symbol, timeframe="1m", ts_ms=s.ts_ms,
                               open=s.open, high=s.high, low=s.low, close=s.close,
                               volume=s.volume, source=s.source, note=OKX_STANDIN))


def load_catalog(data_dir: Path) -> Catalog:
    """Load every recording found under ``data_dir`` (../shared/data/exchanges layout).

    Also accepts a samples directory (``samples/*.csv.gz`` written by ``write_sample``).
    """
    data_dir = Path(data_dir)
    catalog = Catalog()
    for stem, exchange, symbol, note in _PARQUET:
        path = data_dir / IAQF / f"{stem}.parquet"
        if path.exists():
            catalog.add(load_parquet(path, exchange, symbol, f"{IAQF}/{stem}.parquet", note))
    bybit = data_dir / BYBIT
    if bybit.exists():
        catalog.add(load_parquet(bybit, "bybit", "BTC/USDC", BYBIT, "Bybit trade archive"))
    for pair, symbol in (("BTC_USDC/XBTUSDC", "BTC/USDC"), ("BTC_USDT/XBTUSDT", "BTC/USDT")):
        for minutes, tf in ((5, "5m"), (60, "1h")):
            path = data_dir / KRAKEN_CSV / f"{pair}_{minutes}.csv"
            if path.exists():
                rel = f"{KRAKEN_CSV}/{pair}_{minutes}.csv"
                catalog.add(load_kraken_ohlcvt(path, symbol, tf, rel))
    for path in sorted(data_dir.glob("*.csv.gz")):
        catalog.add(read_sample(path))
    with_okx_standin(catalog)
    return catalog


# -- small re-encoded samples for the demo (see samples/PROVENANCE.md) -------------------

_SAMPLE_HEADER = "open_time_ms,open,high,low,close,volume"


def write_sample(series: Series, start_ms: int, end_ms: int, path: Path) -> int:
    """Re-encode ``series`` bars in [start_ms, end_ms) as a gzip CSV; return the rows."""
    lo, hi = series.window(start_ms, end_ms)
    buf = io.StringIO()
    buf.write(f"# exchange={series.exchange} symbol={series.symbol} "
              f"timeframe={series.timeframe} source={series.source}\n{_SAMPLE_HEADER}\n")
    cols = [c[lo:hi].tolist() for c in (series.open, series.high, series.low, series.close,
                                        series.volume)]
    for t, *vals in zip(series.ts_ms[lo:hi].tolist(), *cols, strict=True):
        buf.write(f"{t}," + ",".join(repr(float(x)) for x in vals) + "\n")
    # mtime=0 keeps the bytes reproducible from run to run.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9,
                                                mtime=0, filename="") as fh:
        fh.write(buf.getvalue().encode("ascii"))
    return hi - lo


def read_sample(path: Path) -> Series:
    """Read a sample written by ``write_sample``."""
    with gzip.open(path, "rt", encoding="ascii") as fh:
        meta_line = fh.readline().lstrip("# ").split()
        meta = dict(item.split("=", 1) for item in meta_line)
        frame = pd.read_csv(fh, float_precision="round_trip")
    ts = frame["open_time_ms"].to_numpy(np.int64)
    return _series(meta["exchange"], meta["symbol"], meta["timeframe"], frame, ts,
                   f"samples/{path.name} (from {meta['source']})", "re-encoded sample")


# The demo's samples: three days around the depeg low, re-encoded from the recordings.
# Binance.US's three markets let a triangle run on one venue (BTC/USDC, BTC/USDT,
# USDC/USDT); USDC/USDT (Binance.US) and USDC/USD (Kraken) are USDC's USDT and USD quotes
# for peg reversion; BTC/USDC on two venues is the cross-exchange spread.
SAMPLE_SERIES = (("binance", "USDC/USDT"), ("binance", "BTC/USDC"), ("binance", "BTC/USDT"),
                 ("bybit", "BTC/USDC"), ("kraken", "USDC/USD"))
SAMPLE_START_MS = 1_678_406_400_000  # 2023-03-10T00:00Z
SAMPLE_END_MS = 1_678_665_600_000  # 2023-03-13T00:00Z


def write_samples(catalog: Catalog, out_dir: Path) -> list[tuple[Path, int]]:
    """Write the demo samples (SAMPLE_SERIES over SAMPLE_START..END) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for exchange, symbol in SAMPLE_SERIES:
        series = catalog.get(exchange, symbol, "1m")
        if series is None:
            raise FileNotFoundError(f"expected a recording of {exchange} {symbol} 1m")
        path = out_dir / f"{exchange}_{symbol.replace('/', '').lower()}_1m.csv.gz"
        written.append((path, write_sample(series, SAMPLE_START_MS, SAMPLE_END_MS, path)))
    return written
