"""ccxt async adapters: one client per exchange with pacing, retries and loopback URLs.

Contract of ``ExchangeClient.fetch_page(symbol, timeframe, since_ms, limit)``: return the
OHLCV rows ccxt parsed (``[[ts_ms, o, h, l, c, v], ...]``), after pacing the request with
the exchange's own ``rateLimit`` and retrying network (a body cut short by a dropped
connection too), 429, 5xx and malformed-body errors with exponential backoff and jitter; raise ``FetchFailed`` when retries are exhausted or
the error is not transient.

With ``replay_url`` set every API URL points at the replay server
(``http://127.0.0.1:PORT/<original host>/<original path>``), which answers the market
lists too: markets come from ccxt's ``load_markets()`` (``ingestion.markets``); the
static table below is only the fallback of callers that pass ``markets=True``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import ccxt.async_support as ccxt_async
from aiolimiter import AsyncLimiter
from ccxt.base.errors import BadResponse, NetworkError

from usdcarb.ingestion.domain import EXCHANGES, ExchangeSpec

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Markets this platform ingests, by exchange: unified symbol -> the exchange's market id.
MARKETS: dict[str, dict[str, str]] = {
    "binance": {"BTC/USDC": "BTCUSDC", "BTC/USDT": "BTCUSDT", "USDC/USDT": "USDCUSDT"},
    "coinbase": {"BTC/USD": "BTC-USD", "BTC/USDT": "BTC-USDT", "USDT/USD": "USDT-USD",
                 "BTC/USDC": "BTC-USDC", "USDC/USD": "USDC-USD"},
    "kraken": {"BTC/USD": "XXBTZUSD", "BTC/USDC": "XBTUSDC", "BTC/USDT": "XBTUSDT",
               "USDC/USD": "USDCUSD", "USDT/USD": "USDTZUSD"},
    "okx": {"BTC/USDC": "BTC-USDC", "USDC/USDT": "USDC-USDT", "BTC/USDT": "BTC-USDT"},
    "bybit": {"BTC/USDC": "BTCUSDC", "USDC/USDT": "USDCUSDT", "BTC/USDT": "BTCUSDT"},
}


class FetchFailed(Exception):
    """The exchange could not serve a page; ``transient`` if retries were exhausted."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class MalformedResponse(Exception):
    """A 200 response whose body is not a well-formed OHLCV page."""


class _CutShort(Exception):
    """A response the connection dropped in the middle of (a transient network error)."""


def market_dict(exchange: str, symbol: str, market_id: str) -> dict[str, Any]:
    """Return the minimal ccxt market structure ``set_markets`` needs."""
    base, quote = symbol.split("/")
    return {
        "id": market_id, "symbol": symbol, "base": base, "quote": quote,
        "baseId": base, "quoteId": quote, "type": "spot", "spot": True, "margin": False,
        "swap": False, "future": False, "option": False, "contract": False, "linear": None,
        "inverse": None, "active": True, "settle": None, "settleId": None,
        "precision": {"amount": 1e-8, "price": 1e-8}, "info": {"instFamily": ""},
        "limits": {"amount": {"min": None, "max": None}, "price": {"min": None, "max": None},
                   "cost": {"min": None, "max": None}, "leverage": {"min": None, "max": None}},
        "lowercaseId": market_id.lower(),
    }


_SCHEME_HOST = re.compile(r"^https?://([^/]+)")


def rewrite_urls(api: Any, base_url: str, hostname: str | None) -> Any:
    """Point every URL of ``urls['api']`` at ``base_url``/<original host>/<path>."""
    if isinstance(api, dict):
        return {k: rewrite_urls(v, base_url, hostname) for k, v in api.items()}
    if isinstance(api, str):
        url = api.replace("{hostname}", hostname or "")
        return _SCHEME_HOST.sub(lambda m: f"{base_url.rstrip('/')}/{m.group(1)}", url)
    return api


def create_exchange(exchange_id: str, replay_url: str = "", timeout_ms: int = 10_000, *,
                    markets: bool = True) -> Any:
    """Create a ccxt async exchange (ccxt's own throttle off: pacing is ours); with
    ``markets`` False, markets come from the exchange's own list (``load_markets``)."""
    cls = getattr(ccxt_async, exchange_id)
    ex = cls({"enableRateLimit": False, "timeout": timeout_ms,
              "options": {"fetchMarkets": {"types": ["spot"]}}})
    ex.enableLastJsonResponse = True
    if replay_url:
        ex.urls["api"] = rewrite_urls(ex.urls["api"], replay_url, getattr(ex, "hostname", None))
    if markets:
        ex.set_markets([market_dict(exchange_id, s, i)
                        for s, i in MARKETS[exchange_id].items()])
    return ex


@dataclass
class RetryPolicy:
    attempts: int = 8
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter over the upper half."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** attempt)
        return float(cap * (0.5 + 0.5 * self.rng.random()))


class Pacer:
    """Per-exchange request pacing from the exchange's ``rateLimit`` (ms per request),
    scaled by ``scale`` (1 against real exchanges; smaller against the replay server)."""

    def __init__(self, scale: float = 1.0) -> None:
        self._scale = scale
        self._limiters: dict[str, AsyncLimiter] = {}

    def limiter(self, spec: ExchangeSpec) -> AsyncLimiter | None:
        period = spec.rate_limit_ms / 1000 * self._scale
        if period <= 0:
            return None
        if spec.id not in self._limiters:
            # One request per period; a burst of one keeps the spacing honest.
            self._limiters[spec.id] = AsyncLimiter(1, period)
        return self._limiters[spec.id]


def _check_rows(rows: Any) -> list[list[Any]]:
    if not isinstance(rows, list):
        raise MalformedResponse(f"expected a list of OHLCV rows, got {type(rows).__name__}")
    for row in rows:
        if not isinstance(row, list) or len(row) < 6 or not isinstance(row[0], int):
            raise MalformedResponse(f"expected [int ms, o, h, l, c, v], got {row!r:.80}")
    return rows


class ExchangeClient:
    """One exchange through ccxt; see the module docstring for the contract."""

    def __init__(self, spec: ExchangeSpec, *, replay_url: str = "", pacer: Pacer | None = None,
                 retry: RetryPolicy | None = None, timeout_ms: int = 10_000,
                 on_retry: Callable[[str, BaseException], None] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.spec = spec
        # Markets from the exchange's own list: ccxt loads them (load_markets) on the
        # first call, inside the retry policy of that call.
        self._ex = create_exchange(spec.id, replay_url, timeout_ms, markets=False)
        self._limiter = (pacer or Pacer()).limiter(spec)
        self._retry = retry or RetryPolicy()
        self._on_retry = on_retry
        self._sleep = sleep
        # Told (seconds, retries) of every page fetched (the service's metrics).
        self.on_page: Callable[[float, int], None] | None = None

    async def close(self) -> None:
        await self._ex.close()

    async def fetch_page(self, symbol: str, timeframe: str, since_ms: int | None,
                         limit: int) -> tuple[list[list[Any]], int]:
        """Return (rows, retries) for one page; see the module contract."""

        async def page() -> list[list[Any]]:
            rows = await self._ex.fetch_ohlcv(symbol, timeframe, since_ms, limit)
            if self._ex.last_json_response is None:
                raise MalformedResponse("expected a JSON body, got an unparsable one")
            return _check_rows(rows)

        started = time.perf_counter()
        rows, retries = await self._call(f"{symbol} {timeframe} since {since_ms}", page)
        if self.on_page is not None:
            self.on_page(time.perf_counter() - started, retries)
        return rows, retries

    async def server_time_ms(self) -> tuple[int, int]:
        """Return (the exchange's clock in ms, retries), from its server-time endpoint:
        job ranges and cursors follow the exchange's clock, never this machine's."""

        async def now() -> int:
            value = await self._ex.fetch_time()
            if not isinstance(value, int) or value <= 0:
                raise MalformedResponse(f"expected a server time in ms, got {value!r:.80}")
            return value

        return await self._call("server time", now)

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        retries = 0
        while True:
            try:
                if self._limiter is not None:
                    async with self._limiter:
                        pass
                return await self._cut_short(call), retries
            except (NetworkError, BadResponse, MalformedResponse, TypeError, ValueError,
                    IndexError, KeyError, _CutShort) as exc:
                if retries + 1 >= self._retry.attempts:
                    raise FetchFailed(f"{self.spec.id} {what}: "
                                      f"{type(exc).__name__} after {retries + 1} attempts",
                                      transient=True) from exc
                delay = self._retry.delay(retries)
                logger.warning("%s fetch failed (%s: %.120s); retry %d in %.2fs", self.spec.id,
                               type(exc).__name__, exc, retries + 1, delay)
                if self._on_retry is not None:
                    self._on_retry(self.spec.id, exc)
                retries += 1
                await self._sleep(delay)
            except ccxt_async.BaseError as exc:
                raise FetchFailed(f"{self.spec.id} {what}: {type(exc).__name__}: "
                                  f"{str(exc)[:200]}", transient=False) from exc

    async def _cut_short(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``; a response the connection dropped in the middle of (ccxt raises a
        plain ExchangeError for aiohttp's ClientPayloadError) becomes ``_CutShort``, a
        network error to retry like the others."""
        try:
            return await call()
        except ccxt_async.ExchangeError as exc:
            if isinstance(exc.__cause__, aiohttp.ClientPayloadError):
                raise _CutShort(str(exc)) from exc
            raise


def spec_of(exchange_id: str) -> ExchangeSpec:
    return EXCHANGES[exchange_id]
