"""Start-up shared by every service that owns a PostgreSQL schema.

Each service's ``main`` stays its composition root: it names its settings, schema,
migrations and how to build its servicers; this module does the common wiring
(pool with the schema's search_path, migrations under the advisory lock, health
checks, graceful shutdown) so that it is written once.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.registry import Collector

from usdcarb.platform.db import create_pool, postgres_check
from usdcarb.platform.logging import configure_logging
from usdcarb.platform.migrations import apply_migrations
from usdcarb.platform.pending import pending_handler
from usdcarb.platform.replica import ReplicaCollector, service_read_router
from usdcarb.platform.server import Register, run_service
from usdcarb.platform.settings import PlatformSettings
from usdcarb.platform.telemetry import domain_registry, instrument_pool


async def serve_with_database(
    settings: PlatformSettings, *, names: Sequence[str], schema: str, migrations: Path,
    build: Callable[..., Register], reads: bool = False,
    collectors: Sequence[Collector] = (),
) -> None:
    """Open the pool on ``schema``, apply its migrations, and serve until SIGTERM.

    ``reads``: the service reads candles; ``build(pool, router)`` gets a read router
    (usdcarb.platform.replica) that sends them to the read replica when one is set.
    """
    pool = await create_pool(
        settings.database_url.get_secret_value(), settings.db_pool_min, settings.db_pool_max,
        search_path=f"{schema}, public",
    )
    pool_metrics = domain_registry()  # the pool's size, use and waiters (collectors: the
    instrument_pool(pool, pool_metrics)  # service's own metrics)
    try:
        await apply_migrations(pool, schema, migrations)
        router = (await service_read_router(settings, pool, search_path=f"{schema}, public")
                  if reads else None)
    except BaseException:
        await pool.close()
        raise
    await run_service(
        names, build(pool, router) if router is not None else build(pool), settings,
        health_checks={"postgres": postgres_check(pool)},
        on_close=[pool.close, *([router.close] if router is not None else [])],
        collectors=[pool_metrics, *collectors,
                    *([ReplicaCollector(router)] if router is not None else [])],
    )


def serve_pending(
    settings: PlatformSettings, *, service: str, pb2_module: str, schema: str,
    migrations: Path, owner: str,
) -> Coroutine[Any, Any, None]:
    """Serve a service whose RPCs are later work: each answers UNIMPLEMENTED naming
    ``owner``; its schema is migrated so the tables exist for the work that follows."""
    importlib.import_module(pb2_module)  # puts the service's descriptor in the pool

    def build(_pool: Any) -> Register:
        return lambda server: server.add_generic_rpc_handlers([pending_handler(service, owner)])

    return serve_with_database(
        settings, names=[service], schema=schema, migrations=migrations, build=build
    )


def run(settings: PlatformSettings, serve: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Configure logging and run ``serve`` on a fresh event loop."""
    configure_logging(settings.log_level, json=settings.log_json)
    asyncio.run(serve())
