"""Access tokens for calls: a static token, or one fetched from a provider when it expires.

A provider is any callable returning a token (the async client also accepts one
returning an awaitable). It is called before a call when there is no token yet or the
current one expires within ``leeway`` seconds (read from the JWT ``exp`` claim without
verifying it: the gateway verifies), and once more when a call is answered
UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable

__all__ = ["AsyncTokenSource", "TokenProvider", "TokenSource", "jwt_expiry"]

logger = logging.getLogger(__name__)

TokenProvider = Callable[[], "str | Awaitable[str]"]
DEFAULT_LEEWAY_S = 60.0


def jwt_expiry(token: str) -> float | None:
    """Return the ``exp`` claim of a JWT (Unix seconds), or None when it has none or is no JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


class _TokenState:
    """Hold the current token and decide when the provider must be asked for a new one."""

    def __init__(self, token: str | None, provider: TokenProvider | None, leeway: float,
                 clock: Callable[[], float]) -> None:
        self._provider = provider
        self._leeway = leeway
        self._clock = clock
        self._token: str | None = None
        self._expiry: float | None = None
        if token:
            self._store(token)

    @property
    def can_refresh(self) -> bool:
        """Tell whether a provider can replace the token."""
        return self._provider is not None

    def _store(self, token: str) -> None:
        self._token, self._expiry = token, jwt_expiry(token)

    def _stale(self) -> bool:
        if self._provider is None:
            return False
        if self._token is None:
            return True
        return self._expiry is not None and self._expiry - self._leeway <= self._clock()

    def _call_provider(self) -> str | Awaitable[str]:
        assert self._provider is not None
        logger.debug("asking the token provider for a new token")
        return self._provider()

    @staticmethod
    def _checked(token: object) -> str:
        if not isinstance(token, str) or not token:
            raise TypeError(f"expected the token provider to return a token, got {token!r}")
        return token


class TokenSource(_TokenState):
    """Supply tokens to the sync client; a provider must return a ``str``."""

    def __init__(self, token: str | None = None, provider: TokenProvider | None = None, *,
                 leeway: float = DEFAULT_LEEWAY_S, clock: Callable[[], float] = time.time) -> None:
        super().__init__(token, provider, leeway, clock)
        self._lock = threading.Lock()

    def token(self) -> str | None:
        """Return the token to send, refreshing it first when it is missing or expiring."""
        if self._stale():
            with self._lock:
                if self._stale():
                    self._fetch()
        return self._token

    def refresh(self, rejected: str | None) -> None:
        """Replace ``rejected`` (the token the server refused) unless another call did."""
        with self._lock:
            if self._token == rejected:
                self._fetch()

    def _fetch(self) -> None:
        result = self._call_provider()
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError("expected a synchronous token provider for Client, got an async one;"
                            " use AsyncClient")
        self._store(self._checked(result))


class AsyncTokenSource(_TokenState):
    """Supply tokens to the async client; a provider may be sync or async."""

    def __init__(self, token: str | None = None, provider: TokenProvider | None = None, *,
                 leeway: float = DEFAULT_LEEWAY_S, clock: Callable[[], float] = time.time) -> None:
        super().__init__(token, provider, leeway, clock)
        self._lock: asyncio.Lock | None = None  # made lazily: it binds to the running loop

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def token(self) -> str | None:
        """Return the token to send, refreshing it first when it is missing or expiring."""
        if self._stale():
            async with self._get_lock():
                if self._stale():
                    await self._fetch()
        return self._token

    async def refresh(self, rejected: str | None) -> None:
        """Replace ``rejected`` (the token the server refused) unless another call did."""
        async with self._get_lock():
            if self._token == rejected:
                await self._fetch()

    async def _fetch(self) -> None:
        result = self._call_provider()
        if inspect.isawaitable(result):
            result = await result
        self._store(self._checked(result))
