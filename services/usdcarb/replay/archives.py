"""A byte-exact mirror of two bulk archive layouts, built from the recorded data.

URL layout (same ``/<host>/<path>`` convention as the API replay):

* ``/data.binance.vision/data/spot/daily/klines/SYM/1m/SYM-1m-YYYY-MM-DD.zip`` and
  ``….zip.CHECKSUM`` (``sha256sum`` format, two spaces, the zip's name): Binance's public
  data layout. Each zip holds one headerless 12-column CSV named like the zip. Served for
  every whole UTC day of the Binance.US recordings (March 1-21, 2023; millisecond times).
  Monthly files are published only for whole months, which the recordings do not cover,
  so ``…/monthly/…`` answers 404 like a month Binance has not published.
* ``/data.binance.vision/data/futures/um/daily/klines/SYM/1m/…``: the USDⓈ-M layout, with
  the futures CSV header. **Not futures data**: the Binance.US spot recording served in
  the futures file layout (the recordings hold no futures), labelled in the catalogue.
* ``/data.binance.vision/data/spot/daily/klines/SYM/1m/SYM-1m-2025-03-DD.zip``: spot files
  dated from 2025 carry **microsecond** open and close times, as Binance's do. **Not 2025
  data**: the March 2023 recording re-dated by exactly 731 days (2023-03-01 → 2025-03-01),
  labelled in the catalogue; it exists so the µs layout is exercised over HTTP.
* ``/kraken.com/ohlcvt/Kraken_OHLCVT_Q1_2023.zip``: Kraken's downloadable OHLCVT zip, whose
  members ``<PAIR>_<minutes>.csv`` are the recorded Kraken OHLCVT files byte for byte.

Faults (``Faults.archive``: zip file name → kind) make one file ``missing`` (404 for the
zip and its checksum), publish a wrong ``checksum``, or serve a ``truncate``d or
``corrupt`` zip whose published checksum matches the broken bytes (an upload gone wrong,
so the importer's zip check, not its checksum check, must catch it).
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from usdcarb.replay.data import KRAKEN_CSV, Catalog, Series

ARCHIVE_FAULTS = ("missing", "checksum", "truncate", "corrupt")
BINANCE_HOST = "data.binance.vision"
KRAKEN_HOST = "kraken.com"
KRAKEN_ZIP = "Kraken_OHLCVT_Q1_2023.zip"
REDATE_MS = 731 * 86_400_000  # 2023-03-01 -> 2025-03-01
REDATE_NOTE = ("NOT 2025 DATA: the Binance.US March 2023 recording re-dated by 731 days, in "
               "the microsecond layout Binance uses for spot files from 2025-01-01")
FUTURES_NOTE = ("NOT FUTURES DATA: the Binance.US spot recording in the USDⓈ-M futures file "
                "layout (with its CSV header)")
_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
           "taker_buy_volume,taker_buy_quote_volume,ignore\n")
_ZIP_TIME = (2023, 4, 1, 0, 0, 0)
_BINANCE_PATH = re.compile(
    r"^data/(spot|futures/um)/(daily|monthly)/klines/([A-Z0-9]+)/([0-9a-z]+)/"
    r"\3-\4-(\d{4}-\d{2}(?:-\d{2})?)\.zip(\.CHECKSUM)?$")
# Kraken members: (member in the zip, file under the data directory)
_KRAKEN_MEMBERS = (
    ("XBTUSDC_1.csv", "iaqf2026_cl8550/data/kraken/raw/BTCUSDC_1m_20230301_20230321.csv"),
    ("XBTUSDC_5.csv", f"{KRAKEN_CSV}/BTC_USDC/XBTUSDC_5.csv"),
    ("XBTUSDC_60.csv", f"{KRAKEN_CSV}/BTC_USDC/XBTUSDC_60.csv"),
    ("XBTUSDT_5.csv", f"{KRAKEN_CSV}/BTC_USDT/XBTUSDT_5.csv"),
    ("XBTUSDT_60.csv", f"{KRAKEN_CSV}/BTC_USDT/XBTUSDT_60.csv"),
)
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Served:
    status: int
    body: bytes
    content_type: str = "application/zip"


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _fmt(values: np.ndarray) -> list[str]:
    return [f"{float(x):.8f}" for x in values.tolist()]


def kline_csv(series: Series, lo: int, hi: int, *, shift_ms: int = 0, micro: bool = False,
              header: bool = False) -> bytes:
    """Rows lo..hi of a Binance recording as Binance's 12-column kline CSV."""
    ts = series.ts_ms[lo:hi] + shift_ms
    scale = 1000 if micro else 1
    close_t = (ts + 59_999) if "close_time" not in series.extra else (
        series.extra["close_time"][lo:hi].astype(np.int64) + shift_ms)
    n = hi - lo

    def extra(name: str, default: str) -> list[str]:
        col = series.extra.get(name)
        return [str(x) for x in col[lo:hi].tolist()] if col is not None else [default] * n

    cols = [[str(int(t) * scale) for t in ts.tolist()], _fmt(series.open[lo:hi]),
            _fmt(series.high[lo:hi]), _fmt(series.low[lo:hi]), _fmt(series.close[lo:hi]),
            _fmt(series.volume[lo:hi]), [str(int(t) * scale + (999 if micro else 0))
                                         for t in close_t.tolist()],
            extra("quote_volume", "0"), extra("trades", "0"), extra("taker_buy_base", "0"),
            extra("taker_buy_quote", "0"), extra("ignore", "0")]
    lines = [",".join(row) for row in zip(*cols, strict=True)]
    body = "\n".join(lines) + ("\n" if lines else "")
    return ((_HEADER if header else "") + body).encode("ascii")


class ArchiveMirror:
    """Serves the archive layouts above for a catalogue (and its data directory)."""

    def __init__(self, catalog: Catalog, data_dir: Path | None = None) -> None:
        self._catalog = catalog
        self._data_dir = data_dir
        self._cache: dict[str, bytes] = {}

    def describe(self) -> list[dict[str, object]]:
        """What the mirror serves, with its labels (part of /_replay/catalog)."""
        out: list[dict[str, object]] = []
        for s in self._binance_series():
            sym = s.symbol.replace("/", "")
            out += [{"layout": "binance spot daily", "prefix":
                     f"{BINANCE_HOST}/data/spot/daily/klines/{sym}/1m/", "source": s.source,
                     "days": len(self._days(s, 0)), "note": "Binance.US recording"},
                    {"layout": "binance spot daily (µs)", "prefix":
                     f"{BINANCE_HOST}/data/spot/daily/klines/{sym}/1m/", "source": s.source,
                     "days": len(self._days(s, REDATE_MS)), "note": REDATE_NOTE},
                    {"layout": "binance usdm daily", "prefix":
                     f"{BINANCE_HOST}/data/futures/um/daily/klines/{sym}/1m/",
                     "source": s.source, "days": len(self._days(s, 0)), "note": FUTURES_NOTE}]
        members = self._kraken_members()
        if members:
            out.append({"layout": "kraken ohlcvt", "prefix": f"{KRAKEN_HOST}/ohlcvt/{KRAKEN_ZIP}",
                        "members": [m for m, _ in members], "note": "Kraken OHLCVT files"})
        return out

    def paths(self) -> list[tuple[str, str]]:
        """(host, path) of every zip the mirror publishes."""
        out = []
        for s in self._binance_series():
            sym = s.symbol.replace("/", "")
            for market, shift in (("spot", 0), ("spot", REDATE_MS), ("futures/um", 0)):
                for day in self._days(s, shift):
                    out.append((BINANCE_HOST, f"data/{market}/daily/klines/{sym}/1m/"
                                              f"{sym}-1m-{day.isoformat()}.zip"))
        if self._kraken_members():
            out.append((KRAKEN_HOST, f"ohlcvt/{KRAKEN_ZIP}"))
        return out

    def warm(self) -> int:
        """Build every published file now, so requests are served like static files."""
        paths = self.paths()
        for host, path in paths:
            self._zip_bytes(host, path)
        return len(paths)

    def _binance_series(self) -> list[Series]:
        return [s for s in self._catalog if s.exchange == "binance" and s.timeframe == "1m"]

    @staticmethod
    def _days(series: Series, shift_ms: int) -> list[date]:
        """Whole UTC days the series covers (first bar at 00:00, last at 23:59)."""
        if not len(series):
            return []
        first = int(series.ts_ms[0]) + shift_ms
        last = int(series.ts_ms[-1]) + shift_ms
        lo = -(-first // DAY_MS)
        hi = (last + 60_000) // DAY_MS
        return [datetime.fromtimestamp(d * DAY_MS / 1000, UTC).date() for d in range(lo, hi)]

    def _kraken_members(self) -> list[tuple[str, Path]]:
        if self._data_dir is None:
            return []
        return [(m, self._data_dir / rel) for m, rel in _KRAKEN_MEMBERS
                if (self._data_dir / rel).exists()]

    def handles(self, host: str) -> bool:
        return host in (BINANCE_HOST, KRAKEN_HOST)

    def serve(self, host: str, path: str, faults: dict[str, str]) -> Served:
        """Answer GET /<host>/<path>."""
        name = path.rsplit("/", 1)[-1]
        zip_name = name.removesuffix(".CHECKSUM")
        fault = faults.get(zip_name, "")
        if fault == "missing":
            return Served(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        body = self._zip_bytes(host, path.removesuffix(".CHECKSUM"))
        if body is None:
            return Served(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        if fault == "truncate":
            body = body[: len(body) * 2 // 3]
        elif fault == "corrupt":
            body = _corrupt(body)
        if name.endswith(".CHECKSUM"):
            digest = hashlib.sha256(body).hexdigest()
            if fault == "checksum":
                digest = hashlib.sha256(body + b"\n").hexdigest()
            return Served(200, f"{digest}  {zip_name}\n".encode(), "text/plain")
        return Served(200, body)

    def _zip_bytes(self, host: str, path: str) -> bytes | None:
        key = f"{host}/{path}"
        if key in self._cache:
            return self._cache[key]
        body = None
        if host == KRAKEN_HOST and path == f"ohlcvt/{KRAKEN_ZIP}":
            members = self._kraken_members()
            if members:
                body = _zip([(m, p.read_bytes()) for m, p in members])
        elif host == BINANCE_HOST:
            body = self._binance_zip(path)
        if body is not None:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = body
        return body

    def _binance_zip(self, path: str) -> bytes | None:
        m = _BINANCE_PATH.match(path)
        if m is None or m.group(2) != "daily" or m.group(4) != "1m":
            return None
        market, symbol, stamp = m.group(1), m.group(3), m.group(5)
        series = next((s for s in self._binance_series()
                       if s.symbol.replace("/", "") == symbol), None)
        if series is None:
            return None
        day = date.fromisoformat(stamp)
        micro = market == "spot" and day >= date(2025, 1, 1)
        shift = REDATE_MS if micro else 0
        if day not in self._days(series, shift):
            return None
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
        lo, hi = series.window(start - shift, start - shift + DAY_MS)
        csv = kline_csv(series, lo, hi, shift_ms=shift, micro=micro,
                        header=market == "futures/um")
        return _zip([(f"{symbol}-1m-{stamp}.csv", csv)])


def _corrupt(body: bytes) -> bytes:
    """Flip bytes inside the first member's compressed data (CRC / deflate then fail)."""
    raw = bytearray(body)
    start = 30 + int.from_bytes(raw[26:28], "little") + int.from_bytes(raw[28:30], "little")
    size = int.from_bytes(raw[18:22], "little")
    for i in range(start + size // 3, start + size // 3 + 16):
        raw[i] ^= 0x5A
    return bytes(raw)

