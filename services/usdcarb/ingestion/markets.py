"""Markets of each exchange from the exchange itself: ccxt ``load_markets()`` (spot),
cached for a while. With ``replay_url`` set the replay server answers in each exchange's
own format. ``symbols(exchange)`` maps unified symbols to the exchange's market ids.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ccxt.base.errors import BaseError

from usdcarb.ingestion.exchanges import create_exchange
from usdcarb.platform.errors import Unavailable


class MarketDirectory:
    """Spot markets per exchange, loaded through ccxt and kept ``ttl_s`` seconds."""

    def __init__(self, *, replay_url: str = "", ttl_s: float = 3600.0,
                 timeout_ms: int = 10_000) -> None:
        self._replay_url = replay_url
        self._ttl = ttl_s
        self._timeout = timeout_ms
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def symbols(self, exchange: str) -> dict[str, str]:
        """Unified symbol -> market id of the exchange's active spot markets."""
        hit = self._cache.get(exchange)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        async with self._locks.setdefault(exchange, asyncio.Lock()):
            hit = self._cache.get(exchange)
            if hit is not None and time.monotonic() - hit[0] < self._ttl:
                return hit[1]
            loaded = await self._load(exchange)
            self._cache[exchange] = (time.monotonic(), loaded)
            return loaded

    async def _load(self, exchange: str) -> dict[str, str]:
        ex: Any = create_exchange(exchange, self._replay_url, self._timeout, markets=False)
        try:
            markets = await ex.load_markets()
        except BaseError as exc:
            raise Unavailable(f"expected the market list of {exchange}, got "
                              f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        finally:
            await ex.close()
        return {s: str(m["id"]) for s, m in markets.items()
                if m.get("spot") and m.get("active") is not False}
