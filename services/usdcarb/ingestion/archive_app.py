"""Use cases of archive imports: create (checked), get, list, cancel, watch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

from usdcarb.ingestion import archive
from usdcarb.ingestion.archive import BINANCE_BASE, Granularity, Layout
from usdcarb.ingestion.archive_store import ArchiveStore, ImportRecord
from usdcarb.ingestion.domain import TIMEFRAME_MS
from usdcarb.ingestion.exchanges import MARKETS
from usdcarb.platform import paging
from usdcarb.platform.errors import InvalidArgument, expected
from usdcarb.platform.ownership import owner_filter, require_owner

LAYOUTS = {"ARCHIVE_LAYOUT_BINANCE_SPOT": Layout.BINANCE_SPOT,
           "ARCHIVE_LAYOUT_BINANCE_USDM": Layout.BINANCE_USDM,
           "ARCHIVE_LAYOUT_KRAKEN_OHLCVT": Layout.KRAKEN_OHLCVT}
GRANULARITIES = {"ARCHIVE_GRANULARITY_UNSPECIFIED": Granularity.AUTO,
                 "ARCHIVE_GRANULARITY_DAILY": Granularity.DAILY,
                 "ARCHIVE_GRANULARITY_MONTHLY": Granularity.MONTHLY}
# The exchange each layout stores into.
EXCHANGE_OF = {Layout.BINANCE_SPOT: "binance", Layout.BINANCE_USDM: "binanceusdm",
               Layout.KRAKEN_OHLCVT: "kraken"}
MAX_DAYS = 3660


def import_id_of(name: str, field: str = "name") -> str:
    parts = name.split("/")
    if len(parts) != 2 or parts[0] != "archiveImports" or not parts[1]:
        raise InvalidArgument.for_field(field, "a resource name 'archiveImports/{id}'", name)
    return parts[1]


def market_id(layout: Layout, symbol: str, field: str) -> str:
    """The archive's own id of a unified symbol."""
    if layout is Layout.KRAKEN_OHLCVT:
        kraken = MARKETS["kraken"]
        if symbol not in kraken:
            raise InvalidArgument.for_field(field, f"a Kraken market ({', '.join(sorted(kraken))})",
                                            symbol)
        base, quote = symbol.split("/")  # OHLCVT files use Kraken's altnames: XBTUSDC
        return ("XBT" if base == "BTC" else base) + quote
    base_quote, _, settle = symbol.partition(":")
    parts = base_quote.split("/")
    ok = len(parts) == 2 and all(p.isalnum() and p.isupper() for p in parts)
    if layout is Layout.BINANCE_USDM:
        ok = ok and settle == parts[1] if ok else False
    elif settle:
        ok = False
    if not ok:
        want = ("a linear perpetual like 'BTC/USDT:USDT'" if layout is Layout.BINANCE_USDM
                else "a spot symbol like 'BTC/USDC'")
        raise InvalidArgument.for_field(field, want, symbol)
    return parts[0] + parts[1]


class ArchiveApp:
    def __init__(self, store: ArchiveStore, *, on_created: Callable[[], None] = lambda: None,
                 archive_dir: str = "", watch_poll_s: float = 0.2) -> None:
        self._store = store
        self._on_created = on_created
        self._dir = Path(archive_dir).resolve() if archive_dir else None
        self._poll = watch_poll_s

    def _location(self, layout: Layout, location: str) -> str:
        field = "archive_import.source.location"
        if not location:
            if layout is Layout.KRAKEN_OHLCVT:
                raise InvalidArgument.for_field(field, "the URL of a Kraken OHLCVT zip", "empty")
            return BINANCE_BASE
        if archive.is_url(location):
            return location
        if location.startswith("file://"):
            if self._dir is None:
                raise InvalidArgument.for_field(
                    field, "an http(s) URL (this service has no archive directory for "
                    "file:// paths)", location)
            path = Path(location.removeprefix("file://")).resolve()
            if not path.is_relative_to(self._dir):
                raise InvalidArgument.for_field(field, f"a path under {self._dir}", str(path))
            return f"file://{path}"
        raise InvalidArgument.for_field(field, "an http(s):// URL or a file:// path", location)

    async def create(self, *, layout: str, location: str, granularity: str, exchange: str,
                     symbol: str, timeframe: str, start: datetime | None,
                     end: datetime | None, creator: str, request_id: str) -> ImportRecord:
        prefix = "archive_import"
        if layout not in LAYOUTS:
            raise InvalidArgument.for_field(f"{prefix}.source.layout", f"one of "
                                            f"{sorted(LAYOUTS)}", layout)
        lay = LAYOUTS[layout]
        violations = []
        if exchange != EXCHANGE_OF[lay]:
            violations.append((f"{prefix}.series.exchange",
                               expected(f"{EXCHANGE_OF[lay]!r} for {layout}", exchange)))
        if timeframe not in TIMEFRAME_MS or (lay is not Layout.KRAKEN_OHLCVT and timeframe
                                             not in archive.BINANCE_INTERVALS):
            violations.append((f"{prefix}.series.timeframe",
                               expected(f"one of {list(archive.BINANCE_INTERVALS)}", timeframe)))
        if violations:
            raise InvalidArgument(violations)
        mid = market_id(lay, symbol, f"{prefix}.series.symbol")
        if lay is not Layout.KRAKEN_OHLCVT:
            if start is None or end is None:
                raise InvalidArgument.for_field(f"{prefix}.range", "start_time and end_time",
                                                "missing")
            if granularity != "ARCHIVE_GRANULARITY_UNSPECIFIED" and granularity not in \
                    GRANULARITIES:
                raise InvalidArgument.for_field(f"{prefix}.source.granularity",
                                                f"one of {sorted(GRANULARITIES)}", granularity)
        if start is not None and end is not None:
            if end <= start:
                raise InvalidArgument.for_field(f"{prefix}.range.end_time",
                                                f"a time after {start.isoformat()}",
                                                end.isoformat())
            if (end - start).days > MAX_DAYS:
                raise InvalidArgument.for_field(f"{prefix}.range", f"at most {MAX_DAYS} days",
                                                f"{(end - start).days} days")
        loc = self._location(lay, location)
        rec = await self._store.create(
            layout=lay.value, location=loc, exchange=exchange, symbol=symbol, market_id=mid,
            timeframe=timeframe, start=start, end=end,
            granularity=GRANULARITIES.get(granularity, Granularity.AUTO).value,
            creator=creator, request_id=request_id)
        self._on_created()
        return rec

    async def get(self, name: str) -> ImportRecord:
        return await self._store.get(import_id_of(name))

    async def list(self, *, page_size: int, page_token: str, state: str | None,
                   owner: str = "") -> tuple[list[ImportRecord], str]:
        size = paging.page_size(page_size, default=50, maximum=1000)
        by = owner_filter(owner)
        filters = {"state": state, **({"owner": by} if by is not None else {})}
        key = paging.decode_token(page_token, filters)
        after = (datetime.fromisoformat(str(key[0])), str(key[1])) if key else None
        recs = await self._store.list(limit=size + 1, after=after, state=state, owner=by)
        token = ""
        if len(recs) > size:
            recs = recs[:size]
            token = paging.encode_token([recs[-1].create_time.isoformat(), recs[-1].id],
                                        filters)
        return recs, token

    async def cancel(self, name: str) -> ImportRecord:
        import_id = import_id_of(name)
        return await self._store.cancel(import_id, lambda owner: require_owner(
            owner, resource=f"archiveImports/{import_id}"))

    async def watch(self, name: str, after_sequence: int) -> AsyncIterator[ImportRecord]:
        import_id = import_id_of(name)
        last = after_sequence
        while True:
            rec = await self._store.get(import_id)
            if rec.version > last:
                last = rec.version
                yield rec
            if rec.terminal:
                return
            await asyncio.sleep(self._poll)
