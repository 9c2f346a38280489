"""Open the asyncpg pool a service uses, waiting for PostgreSQL at start-up.

Services start in any order (and PostgreSQL may still be recovering), so pool
creation retries with capped exponential backoff instead of crashing at once.
Every connection decodes json/jsonb to Python values and encodes them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

_RETRYABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused / unreachable / timed out while connecting
    asyncio.TimeoutError,
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
)


# "The database cannot answer now" (restart, failover, dropped connection), never "the
# statement is wrong": workers retry these, or leave the work to be resumed, instead of
# failing it.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError, asyncpg.InternalClientError,
    # 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now
    asyncpg.OperatorInterventionError,
)


async def init_connection(conn: Any) -> None:
    """Install the json and jsonb codecs on a new connection."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(
    dsn: str,
    min_size: int = 1,
    max_size: int = 10,
    *,
    attempts: int = 10,
    first_delay_s: float = 0.2,
    max_delay_s: float = 5.0,
    connect_timeout_s: float = 5.0,
    command_timeout_s: float | None = 60.0,
    search_path: str | None = None,
    settings: Mapping[str, str] | None = None,
) -> Any:
    """Create an asyncpg pool, retrying while PostgreSQL is not accepting connections.

    ``search_path`` (e.g. ``"strategy, public"``) lets a service name its tables
    unqualified, as its migrations do; tests point it at a throwaway schema. ``settings``
    are further session settings of every connection (e.g. ``plan_cache_mode``).

    Raise the last connection error after ``attempts`` failures.
    """
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                init=init_connection,
                timeout=connect_timeout_s,
                command_timeout=command_timeout_s,
                server_settings={**({"search_path": search_path} if search_path else {}),
                                 **(settings or {})} or None,
            )
        except _RETRYABLE as exc:
            if attempt == attempts:
                raise
            # The DSN holds the password: log only the error class and text.
            logger.warning(
                "PostgreSQL not ready (attempt %d/%d): %s: %s; retrying in %.1fs",
                attempt,
                attempts,
                type(exc).__name__,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
        else:
            logger.info("PostgreSQL pool open (min %d, max %d)", min_size, max_size)
            return pool
    raise AssertionError("unreachable")  # pragma: no cover


def postgres_check(pool: Any, timeout_s: float = 2.0) -> Callable[[], Awaitable[bool]]:
    """Return a health check that runs ``SELECT 1`` on the pool.

    A failed check also expires the pool's idle connections: after PostgreSQL restarts,
    every pooled connection is dead, and without this each would fail one caller's
    request before the pool replaced it.
    """

    async def check() -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                return bool(await pool.fetchval("SELECT 1") == 1)
        except Exception as exc:
            logger.warning("PostgreSQL health check failed: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(Exception):
                await pool.expire_connections()
            return False

    return check


class PooledStore:
    """Base of a service's store: its pool, transactions, and an optional caller connection.

    Methods that may run inside a caller's transaction take ``conn`` (or None) and
    use ``async with self._conn(conn)``: the caller's connection, or one from the pool.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @property
    def pool(self) -> Any:
        return self._pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """Yield a connection inside a transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    @contextlib.asynccontextmanager
    async def _conn(self, conn: Any | None) -> AsyncIterator[Any]:
        if conn is not None:
            yield conn
        else:
            async with self._pool.acquire() as acquired:
                yield acquired
