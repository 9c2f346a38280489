"""Each exchange's OHLCV endpoint as ccxt 4.5.90 calls it: request parsing and responses.

Requests are parsed from the query string (parameter order differs between exchanges
and ccxt versions); responses follow each exchange's documented JSON shape, ordering,
page limits and error bodies. Prices are written with ``repr`` so ccxt parses back the
exact recorded float.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from usdcarb.replay.data import TIMEFRAME_MS, Series


class BadRequest(Exception):
    """A request the exchange would refuse; ``reply`` is its error response."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.body[:200])
        self.reply = reply


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def _json(status: int, obj: object, **headers: str) -> Reply:
    return Reply(status, json.dumps(obj, separators=(",", ":")).encode(), headers)


@dataclass(frozen=True)
class Query:
    """What an OHLCV request asks for, in the exchange's own semantics made explicit."""

    market_id: str
    timeframe: str  # unified, e.g. "1m"
    lower_ms: int | None  # inclusive lower bound of open times
    upper_ms: int | None  # exclusive upper bound
    limit: int
    newest: bool  # more bars than limit in range: serve the newest (True) or oldest


@dataclass(frozen=True)
class Page:
    """Selected bars: indices into a Series, ascending."""

    series: Series
    index: np.ndarray

    @property
    def n(self) -> int:
        return int(self.index.shape[0])


def _int(params: Mapping[str, str], name: str, reply: Reply) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(reply) from None


def _iso(ms: int) -> str:
    return str(np.datetime64(int(ms) // 1000, "s")) + "Z"


def _num(x: float) -> str:
    return repr(float(x))


Row = tuple[int, str, str, str, str, str]  # open time ms, o, h, l, c, v as decimal strings


def rows_of(page: Page) -> list[Row]:
    """Format a page's bars (ascending) as exchange decimal strings."""
    s, idx = page.series, page.index
    return [(int(s.ts_ms[i]), _num(s.open[i]), _num(s.high[i]), _num(s.low[i]),
             _num(s.close[i]), _num(s.volume[i])) for i in idx.tolist()]


class Exchange(ABC):
    """Base: one exchange's OHLCV endpoint."""

    id = ""
    host = ""
    max_limit = 1000
    newest_first = False
    markets: ClassVar[Mapping[str, str]] = {}  # exchange market id -> unified symbol
    timeframes: ClassVar[Mapping[str, str]] = {}  # exchange code -> unified

    @abstractmethod
    def route(self, path: str) -> str | None:
        """Return the market id ('' when it is a query parameter) if ``path`` is OHLCV."""
        raise NotImplementedError

    @abstractmethod
    def parse(self, path_id: str, params: Mapping[str, str]) -> Query:
        raise NotImplementedError

    @abstractmethod
    def render(self, rows: list[Row], query: Query) -> bytes:
        """Write ascending ``rows`` in the exchange's response shape and order."""
        raise NotImplementedError

    def bad_request(self, message: str) -> Reply:
        return _json(400, {"error": message})

    time_path = ""  # the exchange's server-time endpoint ccxt's fetch_time calls

    @abstractmethod
    def render_time(self, now_ms: int) -> Reply:
        """The exchange's server-time response at ``now_ms`` (the replay clock)."""
        raise NotImplementedError

    @abstractmethod
    def rate_limited(self) -> Reply:
        raise NotImplementedError

    def server_error(self, status: int) -> Reply:
        # What a CDN or gateway in front of the exchange sends: not JSON.
        return Reply(status, b"<html><body><h1>Service Unavailable</h1></body></html>",
                     {"Content-Type": "text/html"})

    def symbol_of(self, market_id: str) -> str:
        if market_id not in self.markets:
            raise BadRequest(self.bad_request(f"unknown market {market_id}"))
        return self.markets[market_id]

    def timeframe_of(self, code: str | None) -> str:
        if code is None or code not in self.timeframes:
            raise BadRequest(self.bad_request(f"unsupported interval {code}"))
        return self.timeframes[code]

    def limit_of(self, params: Mapping[str, str], name: str, default: int) -> int:
        limit = _int(params, name, self.bad_request(f"bad {name}"))
        if limit is None:
            return default
        if limit <= 0 or limit > self.max_limit:
            raise BadRequest(self.bad_request(f"{name} must be 1..{self.max_limit}"))
        return limit



class Binance(Exchange):
    """GET /api/v3/klines?symbol&interval[&startTime][&endTime][&limit] (ascending)."""

    id, host, max_limit = "binance", "api.binance.com", 1000
    time_path = "/api/v3/time"

    def render_time(self, now_ms: int) -> Reply:
        return _json(200, {"serverTime": now_ms})
    markets: ClassVar[Mapping[str, str]] = {"BTCUSDC": "BTC/USDC", "BTCUSDT": "BTC/USDT", "USDCUSDT": "USDC/USDT"}
    timeframes: ClassVar[Mapping[str, str]] = {"1m": "1m", "5m": "5m", "15m": "15m", "1h": "1h", "4h": "4h", "1d": "1d"}

    def route(self, path: str) -> str | None:
        return "" if path == "/api/v3/klines" else None

    def bad_request(self, message: str) -> Reply:
        return _json(400, {"code": -1100, "msg": message})

    def parse(self, path_id: str, params: Mapping[str, str]) -> Query:
        bad = self.bad_request("Illegal characters found in a parameter.")
        start = _int(params, "startTime", bad)
        end = _int(params, "endTime", bad)
        market_id = params.get("symbol", "")
        self.symbol_of(market_id)
        return Query(market_id,
                     self.timeframe_of(params.get("interval")), start,
                     None if end is None else end + 1, self.limit_of(params, "limit", 500),
                     newest=start is None)

    def render(self, rows: list[Row], query: Query) -> bytes:
        tf = TIMEFRAME_MS[query.timeframe]
        return json.dumps([[t, o, h, lo, c, v, t + tf - 1, "0", 0, "0", "0", "0"]
                           for t, o, h, lo, c, v in rows],
                          separators=(",", ":")).encode()

    def rate_limited(self) -> Reply:
        return _json(429, {"code": -1003, "msg": "Too many requests; current limit of IP is "
                           "6000 requests per minute. Please use the websocket for live "
                           "updates to avoid polling the API."}, **{"Retry-After": "1"})


class Coinbase(Exchange):
    """GET /api/v3/brokerage/market/products/{id}/candles?granularity&start&end (seconds;
    start inclusive, end exclusive; at most 350 candles; newest first)."""

    id, host, max_limit, newest_first = "coinbase", "api.coinbase.com", 350, True
    time_path = "/v2/time"

    def render_time(self, now_ms: int) -> Reply:
        return _json(200, {"data": {"epoch": now_ms // 1000, "iso": _iso(now_ms)}})
    markets: ClassVar[Mapping[str, str]] = {"BTC-USD": "BTC/USD", "BTC-USDT": "BTC/USDT", "USDT-USD": "USDT/USD",
               "BTC-USDC": "BTC/USDC", "USDC-USD": "USDC/USD"}
    timeframes: ClassVar[Mapping[str, str]] = {"ONE_MINUTE": "1m", "FIVE_MINUTE": "5m", "FIFTEEN_MINUTE": "15m",
                  "ONE_HOUR": "1h", "ONE_DAY": "1d"}
    _path = re.compile(r"^/api/v3/brokerage/market/products/([^/]+)/candles$")

    def route(self, path: str) -> str | None:
        m = self._path.match(path)
        return m.group(1) if m else None

    def bad_request(self, message: str) -> Reply:
        return _json(400, {"error": "INVALID_ARGUMENT", "error_details": message,
                           "message": message})

    def parse(self, path_id: str, params: Mapping[str, str]) -> Query:
        tf = self.timeframe_of(params.get("granularity"))
        bad = self.bad_request("start and end must be unix seconds")
        start, end = _int(params, "start", bad), _int(params, "end", bad)
        if start is None or end is None or end <= start:
            raise BadRequest(bad)
        if (end - start) * 1000 // TIMEFRAME_MS[tf] > self.max_limit:
            raise BadRequest(self.bad_request(
                f"number of candles requested should be less than {self.max_limit}"))
        return Query(path_id, tf, start * 1000, end * 1000, self.max_limit, newest=True)

    def render(self, rows: list[Row], query: Query) -> bytes:
        candles = [{"start": str(t // 1000), "low": lo, "high": h, "open": o, "close": c,
                    "volume": v} for t, o, h, lo, c, v in reversed(rows)]
        return json.dumps({"candles": candles}, separators=(",", ":")).encode()

    def rate_limited(self) -> Reply:
        return _json(429, {"errors": [{"id": "rate_limit_exceeded",
                                       "message": "Too many requests"}]})


class Kraken(Exchange):
    """GET /0/public/OHLC?pair&interval[&since] (seconds, exclusive): only the latest 720
    bars relative to now exist; ascending; ``last`` is the newest bar's time."""

    id, host, max_limit = "kraken", "api.kraken.com", 720
    time_path = "/0/public/Time"

    def render_time(self, now_ms: int) -> Reply:
        return _json(200, {"error": [], "result": {"unixtime": now_ms // 1000, "rfc1123": _iso(now_ms)}})
    markets: ClassVar[Mapping[str, str]] = {"XXBTZUSD": "BTC/USD", "XBTUSDC": "BTC/USDC", "XBTUSDT": "BTC/USDT",
               "USDCUSD": "USDC/USD", "USDTZUSD": "USDT/USD"}
    timeframes: ClassVar[Mapping[str, str]] = {"1": "1m", "5": "5m", "15": "15m", "60": "1h", "240": "4h", "1440": "1d"}

    def route(self, path: str) -> str | None:
        return "" if path == "/0/public/OHLC" else None

    def bad_request(self, message: str) -> Reply:
        return _json(200, {"error": [f"EGeneral:Invalid arguments:{message}"]})

    def parse(self, path_id: str, params: Mapping[str, str]) -> Query:
        pair = params.get("pair", "")
        if pair not in self.markets:
            raise BadRequest(_json(200, {"error": ["EQuery:Unknown asset pair"]}))
        since = _int(params, "since", self.bad_request("since"))
        lower = None if since is None else since * 1000 + 1
        return Query(pair, self.timeframe_of(params.get("interval", "1")), lower, None,
                     self.max_limit, newest=True)

    def render(self, rows: list[Row], query: Query) -> bytes:
        out = [[t // 1000, o, h, lo, c, c, v, 0] for t, o, h, lo, c, v in rows]
        last = out[-1][0] if out else 0
        return json.dumps({"error": [], "result": {query.market_id: out, "last": last}},
                          separators=(",", ":")).encode()

    def rate_limited(self) -> Reply:
        return _json(429, {"error": ["EAPI:Rate limit exceeded"]})


class Okx(Exchange):
    """GET /api/v5/market/history-candles|candles?instId&bar&limit[&before][&after]
    (before/after: exclusive ms bounds; newest ``limit`` bars; newest first)."""

    id, host, max_limit, newest_first = "okx", "www.okx.com", 300, True
    time_path = "/api/v5/public/time"

    def render_time(self, now_ms: int) -> Reply:
        return _json(200, {"code": "0", "msg": "", "data": [{"ts": str(now_ms)}]})
    markets: ClassVar[Mapping[str, str]] = {"BTC-USDC": "BTC/USDC", "USDC-USDT": "USDC/USDT", "BTC-USDT": "BTC/USDT"}
    timeframes: ClassVar[Mapping[str, str]] = {"1m": "1m", "5m": "5m", "15m": "15m", "1H": "1h", "4H": "4h", "1Dutc": "1d"}

    def route(self, path: str) -> str | None:
        return "" if path in ("/api/v5/market/history-candles", "/api/v5/market/candles") else None

    def bad_request(self, message: str) -> Reply:
        return _json(400, {"code": "51000", "msg": f"Parameter {message} error", "data": []})

    def parse(self, path_id: str, params: Mapping[str, str]) -> Query:
        inst = params.get("instId", "")
        if inst not in self.markets:
            raise BadRequest(_json(400, {"code": "51001", "msg": "Instrument ID doesn't exist",
                                         "data": []}))
        before = _int(params, "before", self.bad_request("before"))
        after = _int(params, "after", self.bad_request("after"))
        return Query(inst, self.timeframe_of(params.get("bar", "1m")),
                     None if before is None else before + 1, after,
                     self.limit_of(params, "limit", 100), newest=True)

    def render(self, rows: list[Row], query: Query) -> bytes:
        data = [[str(t), o, h, lo, c, v, v, v, "1"] for t, o, h, lo, c, v in
                reversed(rows)]
        return json.dumps({"code": "0", "msg": "", "data": data},
                          separators=(",", ":")).encode()

    def rate_limited(self) -> Reply:
        return _json(429, {"code": "50011", "msg": "Too Many Requests", "data": []})


class Bybit(Exchange):
    """GET /v5/market/kline?category&symbol&interval[&start][&end][&limit] (ms, inclusive;
    with start: the oldest ``limit`` bars from start; else the newest; newest first)."""

    id, host, max_limit, newest_first = "bybit", "api.bybit.com", 1000, True
    time_path = "/v5/market/time"

    def render_time(self, now_ms: int) -> Reply:
        return _json(200, {"retCode": 0, "retMsg": "OK", "result": {"timeSecond": str(now_ms // 1000), "timeNano": str(now_ms * 1_000_000)}, "retExtInfo": {}, "time": now_ms})
    markets: ClassVar[Mapping[str, str]] = {"BTCUSDC": "BTC/USDC", "USDCUSDT": "USDC/USDT", "BTCUSDT": "BTC/USDT"}
    timeframes: ClassVar[Mapping[str, str]] = {"1": "1m", "5": "5m", "15": "15m", "60": "1h", "240": "4h", "D": "1d"}

    def route(self, path: str) -> str | None:
        return "" if path == "/v5/market/kline" else None

    def bad_request(self, message: str) -> Reply:
        return _json(200, {"retCode": 10001, "retMsg": message, "result": {},
                           "retExtInfo": {}, "time": 0})

    def parse(self, path_id: str, params: Mapping[str, str]) -> Query:
        if params.get("category") != "spot":
            raise BadRequest(self.bad_request("Not supported category"))
        symbol = params.get("symbol", "")
        if symbol not in self.markets:
            raise BadRequest(self.bad_request("Not supported symbols"))
        start = _int(params, "start", self.bad_request("start"))
        end = _int(params, "end", self.bad_request("end"))
        return Query(symbol, self.timeframe_of(params.get("interval")), start,
                     None if end is None else end + 1, self.limit_of(params, "limit", 200),
                     newest=start is None)

    def render(self, rows: list[Row], query: Query) -> bytes:
        out = [[str(t), o, h, lo, c, v, "0"] for t, o, h, lo, c, v in reversed(rows)]
        return json.dumps({"retCode": 0, "retMsg": "OK", "result": {
            "category": "spot", "symbol": query.market_id, "list": out},
            "retExtInfo": {}, "time": 0}, separators=(",", ":")).encode()

    def rate_limited(self) -> Reply:
        return _json(429, {"retCode": 10006, "retMsg": "Too many visits!", "result": {},
                           "retExtInfo": {}, "time": 0})


EXCHANGES: dict[str, Exchange] = {e.host: e for e in (Binance(), Coinbase(), Kraken(), Okx(),
                                                       Bybit())}
BY_ID: dict[str, Exchange] = {e.id: e for e in EXCHANGES.values()}


def select(series: Series, query: Query, now_ms: int, *, latest_only: int = 0) -> Page:
    """Pick the bars a query gets: closed by ``now_ms``, within bounds, at most ``limit``.

    ``latest_only`` > 0 keeps only that many most recent intervals (Kraken's 720).
    """
    tf = TIMEFRAME_MS[query.timeframe]
    closed_end = now_ms - tf + 1  # bars whose close time is <= now
    lower = query.lower_ms if query.lower_ms is not None else -(2**62)
    upper = min(query.upper_ms if query.upper_ms is not None else 2**62, closed_end)
    if latest_only:
        lower = max(lower, (now_ms // tf) * tf - latest_only * tf)
    lo, hi = series.window(lower, upper)
    if hi - lo > query.limit:
        lo, hi = (hi - query.limit, hi) if query.newest else (lo, lo + query.limit)
    return Page(series, np.arange(lo, hi, dtype=np.int64))
