"""The replay HTTP server: loopback only, asyncio streams, HTTP/1.1 keep-alive.

URL layout: ``http://127.0.0.1:PORT/<exchange host>/<exchange path>?<query>``, which is
what rewriting ccxt's ``urls['api']`` produces. Each exchange's OHLCV endpoint and its
server-time endpoint (``fetch_time``: the replay clock, in the exchange's own format) are
answered. Admin endpoints under ``/_replay/``:

* ``GET  /_replay/catalog``  every series served, with its source and label
* ``GET  /_replay/stats``    request counters per exchange and status
* ``GET|POST /_replay/faults`` read or set fault switches (JSON body, see ``Faults``)
* ``POST /_replay/clock``    ``{"now_ms": N}`` moves the replay clock
* ``POST /_replay/reset``    clear faults and counters

The same controls exist as Python attributes (``server.faults``, ``server.clock_ms``,
``server.stats``) for in-process tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from usdcarb.replay.archives import ARCHIVE_FAULTS, ArchiveMirror
from usdcarb.replay.data import TIMEFRAME_MS, Catalog
from usdcarb.replay.formats import EXCHANGES, BadRequest, Reply, Row, rows_of, select
from usdcarb.replay.markets import markets_reply, recorded_ids

logger = logging.getLogger(__name__)

# End of the March 2023 recordings: the default frozen clock.
RECORDING_END_MS = 1_679_443_200_000  # 2023-03-22T00:00:00Z
CORRUPT_KINDS = ("nan", "negative", "high_below_low", "misaligned", "future", "spike",
                 "garbage")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}


@dataclass
class Faults:
    """Fault switches; counts are budgets consumed by matching OHLCV requests."""

    exchange: str = ""  # only this exchange id ('' = every exchange)
    latency_ms: float = 0.0  # added to every matching request
    # Matching exchanges serve only the bars closed by (replay clock - delay_ms): a venue
    # whose bars arrive late (or, with a large delay, a venue that stalls). Its
    # server-time endpoint still reads the replay clock.
    delay_ms: int = 0
    rate_limit: int = 0  # next N requests answer 429 with the exchange's error body
    server_errors: int = 0  # next N requests answer a 5xx
    server_error_status: int = 503
    truncate: int = 0  # next N non-empty pages lose their second half
    duplicate: int = 0  # next N pages repeat a few bars
    shuffle: int = 0  # next N pages come out of order
    corrupt: int = 0  # next N pages carry one malformed bar (or a cut body: "garbage")
    corrupt_index: int = -1  # which bar of the page (-1: the middle one)
    skip_pages: int = 0  # page faults (truncate..corrupt) leave the next N pages alone
    corrupt_kind: str = "nan"
    # Bulk archives (replay/archives.py): zip file name -> one of ARCHIVE_FAULTS.
    archive: dict[str, str] = dataclasses.field(default_factory=dict)

    def applies(self, exchange: str) -> bool:
        return not self.exchange or self.exchange == exchange

    def take(self, name: str) -> bool:
        left = getattr(self, name)
        if left > 0:
            setattr(self, name, left - 1)
            return True
        return False


@dataclass
class Stats:
    """Counters for tests."""

    requests: Counter[str] = dataclasses.field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(Counter))
    bars_served: Counter[str] = dataclasses.field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "bars_served": dict(self.bars_served),
                "statuses": {k: {str(s): n for s, n in v.items()}
                             for k, v in self.statuses.items()}}


def _mutate(rows: list[Row], faults: Faults, tf_ms: int, rng: random.Random) -> list[Row]:
    if faults.take("skip_pages"):
        return rows
    if rows and faults.take("truncate"):
        rows = rows[: max(1, len(rows) // 2)]
    if len(rows) > 2 and faults.take("duplicate"):
        picks = sorted(rng.sample(range(len(rows)), min(3, len(rows))))
        rows = rows + [rows[i] for i in picks]
    if len(rows) > 1 and faults.take("shuffle"):
        rows = rows[:]
        rng.shuffle(rows)
    if rows and faults.corrupt_kind != "garbage" and faults.take("corrupt"):
        rows = rows[:]
        i = faults.corrupt_index if 0 <= faults.corrupt_index < len(rows) else len(rows) // 2
        t, o, h, lo, c, v = rows[i]
        kind = faults.corrupt_kind
        if kind == "nan":
            rows[i] = (t, o, h, lo, "NaN", v)
        elif kind == "negative":
            rows[i] = (t, o, h, lo, c, "-5.0")
        elif kind == "high_below_low":
            rows[i] = (t, o, repr(float(lo) / 2), lo, c, v)
        elif kind == "misaligned":
            rows[i] = (t + 17_000, o, h, lo, c, v)
        elif kind == "spike":  # a consistent bar far off the market: x3 close and high
            spiked = repr(float(c) * 3)
            rows[i] = (t, o, repr(max(float(h), float(c) * 3)), lo, spiked, v)
        elif kind == "future":
            future = (int(time.time() * 1000) // tf_ms + 1440) * tf_ms
            rows[i] = (future, o, h, lo, c, v)
    return rows


class ReplayServer:
    """Serve a Catalog in each exchange's wire format; see the module docstring."""

    def __init__(self, catalog: Catalog, *, host: str = "127.0.0.1", port: int = 0,
                 clock_ms: int = RECORDING_END_MS, seed: int = 7,
                 archives: ArchiveMirror | None = None) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"expected a loopback host, got {host!r}")
        self.catalog = catalog
        self.archives = archives if archives is not None else ArchiveMirror(catalog)
        self.host, self.port = host, port
        self.clock_ms = clock_ms
        self.faults = Faults()
        self.stats = Stats()
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> ReplayServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("replay server on %s (%d series)", self.url, len(self.catalog))
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> ReplayServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def reset(self) -> None:
        self.faults = Faults()
        self.stats = Stats()

    # -- HTTP ----------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = b""
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    body = await reader.readexactly(length)
                reply = await self.handle(method, target, body)
                keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}",
                        f"Content-Length: {len(reply.body)}",
                        f"Connection: {'keep-alive' if keep else 'close'}"]
                if not any(k.lower() == "content-type" for k in reply.headers):
                    head.append("Content-Type: application/json")
                head += [f"{k}: {v}" for k, v in reply.headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def handle(self, method: str, target: str, body: bytes = b"") -> Reply:
        """Answer one request (also callable directly, without a socket)."""
        parts = urlsplit(target)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        path = parts.path
        if path.startswith("/_replay/"):
            return self._admin(method, path, body)
        host, _, rest = path.lstrip("/").partition("/")
        if self.archives.handles(host):
            return await self._archive(host, rest)
        exchange = EXCHANGES.get(host)
        if exchange is None:
            return Reply(404, b'{"error":"unknown host"}')
        if exchange.time_path and "/" + rest == exchange.time_path:
            return exchange.render_time(self.clock_ms)
        recorded = recorded_ids(exchange.markets, (
            s.symbol for s in self.catalog if s.exchange == exchange.id))
        listing = markets_reply(exchange.id, "/" + rest, params, recorded)
        if listing is not None:
            return listing
        market_id = exchange.route("/" + rest)
        if market_id is None:
            self.stats.statuses[exchange.id][404] += 1
            return Reply(404, b'{"error":"not an OHLCV endpoint of the replay server"}')
        self.stats.requests[exchange.id] += 1
        reply = await self._ohlcv(exchange.id, market_id, params)
        self.stats.statuses[exchange.id][reply.status] += 1
        return reply

    async def _ohlcv(self, exchange_id: str, market_id: str, params: dict[str, str]) -> Reply:
        exchange = next(e for e in EXCHANGES.values() if e.id == exchange_id)
        faults = self.faults
        hit = faults.applies(exchange_id)
        if hit and faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        if hit and faults.take("rate_limit"):
            return exchange.rate_limited()
        if hit and faults.take("server_errors"):
            return exchange.server_error(faults.server_error_status)
        try:
            query = exchange.parse(market_id, params)
            symbol = exchange.symbol_of(query.market_id)
        except BadRequest as exc:
            return exc.reply
        series = self.catalog.get(exchange_id, symbol, query.timeframe)
        if series is None:
            rows: list[Row] = []
        else:
            latest = exchange.max_limit if exchange_id == "kraken" else 0
            now = self.clock_ms - (max(0, int(faults.delay_ms)) if hit else 0)
            rows = rows_of(select(series, query, now, latest_only=latest))
        if hit:
            rows = _mutate(rows, faults, TIMEFRAME_MS[query.timeframe], self._rng)
        self.stats.bars_served[exchange_id] += len(rows)
        body = exchange.render(rows, query)
        if (hit and faults.corrupt_kind == "garbage" and not faults.skip_pages
                and faults.take("corrupt")):
            body = body[: len(body) // 2]
        return Reply(200, body)

    async def _archive(self, host: str, rest: str) -> Reply:
        key = f"archive:{host}"
        self.stats.requests[key] += 1
        faults = self.faults
        if faults.latency_ms > 0 and faults.applies("binance" if "binance" in host else
                                                    "kraken"):
            await asyncio.sleep(faults.latency_ms / 1000)
        served = self.archives.serve(host, rest, faults.archive)
        self.stats.statuses[key][served.status] += 1
        return Reply(served.status, served.body, {"Content-Type": served.content_type})

    def _admin(self, method: str, path: str, body: bytes) -> Reply:
        def ok(obj: object) -> Reply:
            return Reply(200, json.dumps(obj).encode())

        if path == "/_replay/catalog":
            return ok({"series": self.catalog.describe(), "clock_ms": self.clock_ms,
                       "archives": self.archives.describe()})
        if path == "/_replay/stats":
            return ok(self.stats.as_json())
        if path == "/_replay/reset" and method == "POST":
            self.reset()
            return ok({})
        try:
            data = json.loads(body or b"{}")
            if path == "/_replay/clock" and method == "POST":
                self.clock_ms = int(data["now_ms"])
                return ok({"clock_ms": self.clock_ms})
            if path == "/_replay/faults":
                if method == "POST":
                    self.set_faults(**data)
                return ok(dataclasses.asdict(self.faults))
        except (ValueError, KeyError, TypeError) as exc:
            return Reply(400, json.dumps({"error": str(exc)}).encode())
        return Reply(404, b'{"error":"unknown admin endpoint"}')

    def set_faults(self, **values: Any) -> Faults:
        """Replace the fault switches (unknown names raise TypeError)."""
        faults = Faults(**values)
        bad = {k: v for k, v in faults.archive.items() if v not in ARCHIVE_FAULTS}
        if bad:
            raise ValueError(f"expected archive faults in {ARCHIVE_FAULTS}, got {bad}")
        if faults.corrupt_kind not in CORRUPT_KINDS:
            raise ValueError(f"expected corrupt_kind in {CORRUPT_KINDS}, got "
                             f"{faults.corrupt_kind!r}")
        self.faults = faults
        return faults
