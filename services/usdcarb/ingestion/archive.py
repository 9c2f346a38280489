"""Exchange bulk archives: which files cover a range, how to fetch, verify and parse them.

Two layouts (see /work/shared/notes/market-archives.md):

* Binance public data (data.binance.vision): ``data/spot/{daily|monthly}/klines/SYM/IV/
  SYM-IV-{YYYY-MM-DD|YYYY-MM}.zip`` and USDⓈ-M futures under ``data/futures/um/``; each
  zip has ``<zip>.CHECKSUM`` in ``sha256sum`` format and holds one CSV of 12 columns.
  Spot CSVs have no header, futures CSVs have one (detected by the first byte); spot
  open times are microseconds from 2025-01-01 on, milliseconds before (detected per file).
* Kraken's downloadable OHLCVT zips: members ``<PAIR>_<minutes>.csv`` with rows
  ``unix_seconds,open,high,low,close,volume,trades`` and no header; only intervals with
  trades appear (gaps are real). Kraken publishes no checksum.

Everything here is pure or does one fetch; a file either parses whole or raises
``FileProblem`` with a reason code and an "expected X, got Y" message, so nothing of a
bad file is ever stored.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import io
import re
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
from zlib_ng import zlib_ng

from usdcarb.ingestion.domain import Bars

BINANCE_BASE = "https://data.binance.vision"
# Binance interval codes of the timeframes the platform stores.
BINANCE_INTERVALS = {"1m": "1m", "5m": "5m", "15m": "15m", "1h": "1h", "4h": "4h", "1d": "1d"}
KRAKEN_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "1h": 60, "4h": 240, "1d": 1440}
FUTURES_HEADER = (b"open_time,open,high,low,close,volume,close_time,quote_volume,count,"
                  b"taker_buy_volume,taker_buy_quote_volume,ignore")
_US_THRESHOLD = 10**14  # open times above this are microseconds (ms stay < 1e13 until 2286)
I8 = npt.NDArray[np.int64]


class Layout(enum.StrEnum):
    BINANCE_SPOT = "binance_spot"
    BINANCE_USDM = "binance_usdm"
    KRAKEN_OHLCVT = "kraken_ohlcvt"


class Granularity(enum.StrEnum):
    AUTO = "auto"  # monthly files for whole months inside the range, daily for the rest
    DAILY = "daily"
    MONTHLY = "monthly"


class Reason(enum.StrEnum):
    """Why a file was not imported (ArchiveFile.reason codes)."""

    MISSING = "ARCHIVE_FILE_MISSING"
    CHECKSUM_MISMATCH = "CHECKSUM_MISMATCH"
    CHECKSUM_MISSING = "CHECKSUM_MISSING"
    TRUNCATED = "ARCHIVE_TRUNCATED"
    CORRUPT = "ARCHIVE_CORRUPT"
    MALFORMED = "ARCHIVE_MALFORMED"
    UNAVAILABLE = "ARCHIVE_UNAVAILABLE"


class FileProblem(Exception):
    """One archive file cannot be imported; ``transient`` problems are retried."""

    def __init__(self, reason: Reason, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class Source:
    """What to import: a layout, where it lives (URL or local path), one series, a range."""

    layout: Layout
    location: str  # base URL / directory (Binance) or the zip's URL / path (Kraken)
    exchange: str  # stored as (binance, binanceusdm, kraken)
    symbol: str  # unified, e.g. "BTC/USDC"
    market_id: str  # the archive's own id: "BTCUSDC", Kraken "XBTUSDC"
    timeframe: str
    start_ms: int
    end_ms: int
    granularity: Granularity = Granularity.AUTO


@dataclass(frozen=True)
class ArchiveFile:
    """One file to import; ``key`` identifies it within its import (resumes skip it)."""

    key: str
    location: str
    checksum_location: str | None
    member: str | None  # Kraken: the CSV inside the zip
    start_ms: int  # bars kept: start_ms <= t < end_ms
    end_ms: int


@dataclass(frozen=True)
class Parsed:
    """Columns of one file (ascending as in the file), plus what was detected."""

    bars: Bars
    trades: I8
    unit: str  # "ms", "us" or "s"
    header: bool


def _ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def _next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def binance_files(src: Source) -> list[ArchiveFile]:
    """The daily/monthly zips covering [start, end) of ``src`` (whole UTC days)."""
    market = "spot" if src.layout is Layout.BINANCE_SPOT else "futures/um"
    iv = BINANCE_INTERVALS[src.timeframe]
    base = src.location.rstrip("/")
    day, last = _day(src.start_ms), _day(src.end_ms - 1)
    files: list[ArchiveFile] = []

    def add(period: str, stamp: str, lo: date, hi: date) -> None:
        name = f"{src.market_id}-{iv}-{stamp}.zip"
        loc = f"{base}/data/{market}/{period}/klines/{src.market_id}/{iv}/{name}"
        files.append(ArchiveFile(f"{period}/{name}", loc, loc + ".CHECKSUM", None,
                                 max(src.start_ms, _ms(lo)), min(src.end_ms, _ms(hi))))

    while day <= last:
        month_end = _next_month(day.replace(day=1))
        whole = day.day == 1 and _ms(month_end) <= src.end_ms
        if src.granularity is Granularity.MONTHLY or (
                src.granularity is Granularity.AUTO and whole):
            add("monthly", day.strftime("%Y-%m"), day.replace(day=1), month_end)
            day = month_end
        else:
            add("daily", day.isoformat(), day, day + timedelta(days=1))
            day += timedelta(days=1)
    return files


def kraken_files(src: Source) -> list[ArchiveFile]:
    member = f"{src.market_id}_{KRAKEN_MINUTES[src.timeframe]}.csv"
    name = src.location.rstrip("/").rsplit("/", 1)[-1]
    return [ArchiveFile(f"{name}:{member}", src.location, None, member, src.start_ms,
                        src.end_ms)]


def plan(src: Source) -> list[ArchiveFile]:
    """Every file the import reads, in time order."""
    return kraken_files(src) if src.layout is Layout.KRAKEN_OHLCVT else binance_files(src)


# -- fetching ---------------------------------------------------------------------------

def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


async def read_location(location: str, session: Any, *, what: str) -> bytes:
    """Download a URL (aiohttp ``session``) or read a local file; 404 / no such file is
    ``MISSING``, a network error or 5xx is transient ``UNAVAILABLE``."""
    if not is_url(location):
        path = Path(location.removeprefix("file://"))
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise FileProblem(Reason.MISSING, f"expected {what} at {path}, got no such "
                              "file") from None
        except OSError as exc:
            raise FileProblem(Reason.UNAVAILABLE, f"expected to read {path}, got {exc}") from exc
    import aiohttp

    try:
        async with session.get(location) as resp:
            if resp.status == 404:
                raise FileProblem(Reason.MISSING, f"expected {what} at {location}, got HTTP "
                                  "404 (not published)")
            if resp.status != 200:
                raise FileProblem(Reason.UNAVAILABLE, f"expected HTTP 200 for {location}, "
                                  f"got {resp.status}", transient=resp.status >= 429)
            body: bytes = await resp.read()
            return body
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise FileProblem(Reason.UNAVAILABLE, f"expected {location} to download, got "
                          f"{type(exc).__name__}: {exc}", transient=True) from exc


SPOOL_BYTES = 64 * 1024 * 1024  # archives larger than this go to a temporary file


async def fetch_archive(location: str, session: Any, *, what: str
                        ) -> tuple[IO[bytes], int, str]:
    """Fetch an archive into a seekable file (memory up to ``SPOOL_BYTES``, then a
    temporary file: Kraken's full-history zip is gigabytes) and hash it on the way;
    return (file, size, sha256). Problems as ``read_location``."""
    if not is_url(location):
        path = Path(location.removeprefix("file://"))

        def open_local() -> tuple[IO[bytes], int, str]:
            fh = path.open("rb")
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
            size = fh.tell()
            fh.seek(0)
            return fh, size, digest

        try:
            return await asyncio.to_thread(open_local)
        except FileNotFoundError:
            raise FileProblem(Reason.MISSING, f"expected {what} at {path}, got no such "
                              "file") from None
        except OSError as exc:
            raise FileProblem(Reason.UNAVAILABLE, f"expected to read {path}, got {exc}") from exc
    import aiohttp

    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    sha = hashlib.sha256()
    try:
        async with session.get(location) as resp:
            if resp.status == 404:
                raise FileProblem(Reason.MISSING, f"expected {what} at {location}, got HTTP "
                                  "404 (not published)")
            if resp.status != 200:
                raise FileProblem(Reason.UNAVAILABLE, f"expected HTTP 200 for {location}, "
                                  f"got {resp.status}", transient=resp.status >= 429)
            async for chunk in resp.content.iter_chunked(1 << 20):
                sha.update(chunk)
                spool.write(chunk)
    except (TimeoutError, aiohttp.ClientError) as exc:
        spool.close()
        raise FileProblem(Reason.UNAVAILABLE, f"expected {location} to download, got "
                          f"{type(exc).__name__}: {exc}", transient=True) from exc
    except BaseException:
        spool.close()
        raise
    size = spool.tell()
    spool.seek(0)
    return spool, size, sha.hexdigest()


_SHA = re.compile(rb"^([0-9a-fA-F]{64})\s+\*?(\S+)\s*$")


def verify_checksum(got: str, size: int, checksum_file: bytes, name: str) -> None:
    """Check the sha256 ``got`` of a file of ``size`` bytes against a ``sha256sum`` line
    naming ``name``."""
    m = _SHA.match(checksum_file.strip())
    if m is None:
        raise FileProblem(Reason.CHECKSUM_MISSING, f"expected a sha256sum line for {name}, "
                          f"got {checksum_file[:80]!r}")
    want, named = m.group(1).decode().lower(), m.group(2).decode()
    if named != name:
        raise FileProblem(Reason.CHECKSUM_MISMATCH, f"expected the checksum file to name "
                          f"{name}, got {named}")
    if got != want:
        raise FileProblem(Reason.CHECKSUM_MISMATCH, f"expected sha256 {want} for {name}, "
                          f"got {got} ({size} bytes)")


def unzip_member(data: bytes | IO[bytes], member: str | None, name: str) -> bytes:
    """The CSV inside a zip (the only member, or ``member``); truncated and corrupt zips
    are told apart (no end-of-central-directory record vs a bad CRC or deflate stream)."""
    fh = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        zf = zipfile.ZipFile(fh)
    except zipfile.BadZipFile as exc:
        size = fh.seek(0, io.SEEK_END)
        raise FileProblem(Reason.TRUNCATED, f"expected a complete zip {name}, got "
                          f"{size} bytes without an end-of-central-directory record "
                          f"({exc})") from exc
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if member is None:
            if len(names) != 1:
                raise FileProblem(Reason.MALFORMED, f"expected one CSV in {name}, got "
                                  f"{names[:5]}")
            member = names[0]
        elif member not in names:
            raise FileProblem(Reason.MISSING, f"expected {member} in {name}, got "
                              f"{len(names)} other members")
        info = zf.getinfo(member)
        try:
            if info.compress_type == zipfile.ZIP_DEFLATED and not info.flag_bits & 0x1:
                return _inflate(fh, info)
            return zf.read(member)
        except (zipfile.BadZipFile, zlib.error, _ZNG_ERROR, EOFError, OSError) as exc:
            raise FileProblem(Reason.CORRUPT, f"expected {member} of {name} to decompress "
                              f"with a matching CRC, got {exc}") from exc


# zlib-ng's stub declares ``error`` as an instance; it is the module's exception class.
_ZNG_ERROR = cast(type[Exception], zlib_ng.error)
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra length


def _inflate(fh: IO[bytes], info: zipfile.ZipInfo) -> bytes:
    """A deflated member, inflated in one call by zlib-ng (half zlib's CPU time, the
    largest cost of reading an archive) and checked against its CRC-32 — what
    ``ZipFile.read`` does, without its 64 KB-at-a-time loop over the stdlib's zlib."""
    fh.seek(info.header_offset)
    sig, name_len, extra_len = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
    if sig != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local file header signature {sig!r}")
    fh.seek(name_len + extra_len, io.SEEK_CUR)
    packed = fh.read(info.compress_size)
    if len(packed) != info.compress_size:
        raise EOFError(f"expected {info.compress_size} compressed bytes, got {len(packed)}")
    data: bytes = zlib_ng.decompress(packed, -15, max(info.file_size, 1))
    if len(data) != info.file_size:
        raise zipfile.BadZipFile(f"expected {info.file_size} bytes inflated, got {len(data)}")
    if zlib_ng.crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    return data


# -- parsing ----------------------------------------------------------------------------

THREADED_CSV_BYTES = 16 * 1024 * 1024


def _read_csv(data: bytes, names: list[str], types: dict[str, pa.DataType],
              skip: int, name: str) -> pa.Table:
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            # Arrow's thread pool only pays for itself on large inputs: a day's CSV is
            # parsed faster, in CPU terms, on the calling thread.
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip,
                                           use_threads=len(data) > THREADED_CSV_BYTES),
            convert_options=pacsv.ConvertOptions(column_types=types,
                                                 include_columns=list(types)),
            parse_options=pacsv.ParseOptions(newlines_in_values=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise FileProblem(Reason.MALFORMED, f"expected CSV rows of {len(names)} columns "
                          f"in {name}, got: {str(exc)[:300]}") from exc


def _f8(table: pa.Table, col: str) -> npt.NDArray[np.float64]:
    return np.ascontiguousarray(table.column(col).to_numpy(), dtype=np.float64)


def parse_binance(data: bytes, *, tf_ms: int, name: str) -> Parsed:
    """Parse a Binance kline CSV (12 columns; header and µs times detected)."""
    header = bool(data) and not data[:1].isdigit()
    names = ["open_time", "open", "high", "low", "close", "volume", "close_time",
             "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore"]
    types: dict[str, pa.DataType] = {"open_time": pa.int64(), "open": pa.float64(),
                                     "high": pa.float64(), "low": pa.float64(),
                                     "close": pa.float64(), "volume": pa.float64(),
                                     "close_time": pa.int64(), "count": pa.int64()}
    if header:
        first = data.split(b"\n", 1)[0].strip()
        if first.split(b",")[:6] != FUTURES_HEADER.split(b",")[:6]:
            raise FileProblem(Reason.MALFORMED, f"expected the kline header "
                              f"{FUTURES_HEADER.decode()!r} in {name}, got {first[:120]!r}")
    table = _read_csv(data, names, types, 1 if header else 0, name)
    t = np.ascontiguousarray(table.column("open_time").to_numpy(), dtype=np.int64)
    close_t = np.ascontiguousarray(table.column("close_time").to_numpy(), dtype=np.int64)
    unit = "ms"
    if t.size:
        us = t > _US_THRESHOLD
        if us.any() and not us.all():
            raise FileProblem(Reason.MALFORMED, f"expected one time unit in {name}, got "
                              f"{int(us.sum())} µs and {int((~us).sum())} ms open times")
        if us.all():
            if (t % 1000).any():
                raise FileProblem(Reason.MALFORMED, f"expected µs open times on whole ms in "
                                  f"{name}, got {int(t[np.flatnonzero(t % 1000)[0]])}")
            unit, t, close_t = "us", t // 1000, close_t // 1000
        want_close = t + tf_ms - 1
        bad = np.flatnonzero(close_t != want_close)
        if bad.size:
            i = int(bad[0])
            raise FileProblem(Reason.MALFORMED, f"expected close time {int(want_close[i])} "
                              f"(open + {tf_ms} - 1 ms) in {name}, got {int(close_t[i])} on "
                              f"row {i + 1 + header}: not a file of this interval")
    bars = Bars(t, _f8(table, "open"), _f8(table, "high"), _f8(table, "low"),
                _f8(table, "close"), _f8(table, "volume"))
    trades = np.ascontiguousarray(table.column("count").to_numpy(), dtype=np.int64)
    return Parsed(bars, trades, unit, header)


def parse_kraken(data: bytes, *, name: str) -> Parsed:
    """Parse a Kraken OHLCVT CSV (seconds, o, h, l, c, volume, trades; no header)."""
    if data and not data[:1].isdigit():
        raise FileProblem(Reason.MALFORMED, f"expected headerless OHLCVT rows in {name}, "
                          f"got {data[:60]!r}")
    names = ["time", "open", "high", "low", "close", "volume", "trades"]
    types: dict[str, pa.DataType] = {n: pa.float64() for n in names[1:6]}
    types["time"], types["trades"] = pa.int64(), pa.int64()
    table = _read_csv(data, names, types, 0, name)
    t = np.ascontiguousarray(table.column("time").to_numpy(), dtype=np.int64) * 1000
    bars = Bars(t, _f8(table, "open"), _f8(table, "high"), _f8(table, "low"),
                _f8(table, "close"), _f8(table, "volume"))
    trades = np.ascontiguousarray(table.column("trades").to_numpy(), dtype=np.int64)
    return Parsed(bars, trades, "s", False)


async def load_file(f: ArchiveFile, src: Source, session: Any, *, tf_ms: int
                    ) -> tuple[Parsed, int, str]:
    """Fetch, verify, unzip and parse one file; return it with its size and sha256."""
    name = f.location.rstrip("/").rsplit("/", 1)[-1]
    data, size, digest = await fetch_archive(f.location, session, what=f"archive {name}")
    with data:
        if f.checksum_location is not None:
            checksum = await read_location(f.checksum_location, session,
                                           what=f"checksum of {name}")
            verify_checksum(digest, size, checksum, name)
        # One hop to a thread for both (each hop wakes the event loop once more).
        parsed = await asyncio.to_thread(unzip_and_parse, data, f, src.layout, tf_ms, name)
    return parsed, size, digest


def unzip_and_parse(data: IO[bytes], f: ArchiveFile, layout: Layout, tf_ms: int,
                    name: str) -> Parsed:
    """Unzip one file's CSV and parse it (in a worker thread)."""
    csv_bytes = unzip_member(data, f.member, name)
    if layout is Layout.KRAKEN_OHLCVT:
        return parse_kraken(csv_bytes, name=f.member or name)
    return parse_binance(csv_bytes, tf_ms=tf_ms, name=name)
