"""Apply a service's ordered SQL migrations at start-up, once, under an advisory lock.

Files are named ``NNNN_name.sql`` and applied in version order, each in its own
transaction with ``search_path`` set to the service's schema (then ``public``, where
extensions such as TimescaleDB live), so a migration names its tables unqualified
and a test can apply the same files to a throwaway schema. ``<schema>.schema_migrations``
records version, name and checksum; an applied file whose content changed stops
start-up, because the database no longer matches what the code believes it ran.

Several replicas may start together: a session-level ``pg_advisory_lock`` keyed by
the schema name serialises them, and each re-reads the applied versions under it.
A migration cannot use statements that refuse transactions (CREATE INDEX
CONCURRENTLY, ALTER TYPE ... ADD VALUE before PostgreSQL 12 and the like).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9][a-z0-9_]*)\.sql$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class MigrationError(RuntimeError):
    """Refuse to start: the migration files or the database are inconsistent."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: version, name, SQL text and its checksum."""

    version: int
    name: str
    sql: str
    checksum: str


def load_migrations(directory: Path) -> list[Migration]:
    """Read every ``*.sql`` file of ``directory`` in version order.

    A ``.sql`` file whose name does not match ``NNNN_name.sql`` is an error rather
    than skipped: a misnamed migration silently not applied is worse than a crash.
    """
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"expected a file named NNNN_name.sql, got {path.name!r}")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"expected one file per version, got two for {version:04d} in {directory}"
            )
        # Line endings are normalised so a checkout with CRLF keeps the checksum.
        sql = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        checksum = hashlib.sha256(sql.encode("utf-8")).hexdigest()
        found[version] = Migration(version, match.group(2), sql, checksum)
    return [found[v] for v in sorted(found)]


def advisory_key(schema: str) -> int:
    """Return the signed 64-bit advisory lock key of a schema's migrations."""
    digest = hashlib.sha256(f"usdcarb.migrations:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def apply_migrations(
    db: Any, schema: str, directory: Path, *, timeout_s: float = 3600.0
) -> list[int]:
    """Apply the pending migrations of ``directory`` to ``schema``; return their versions.

    ``db`` is an asyncpg Pool or Connection. ``timeout_s`` bounds the wait for the
    lock and each migration; it overrides the pool's shorter command timeout.
    """
    if not _SCHEMA_NAME.match(schema):
        raise MigrationError(f"expected a lower-case schema identifier, got {schema!r}")
    migrations = load_migrations(directory)
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _apply_locked(conn, schema, migrations, timeout_s)
    return await _apply_locked(db, schema, migrations, timeout_s)


async def _apply_locked(
    conn: Any, schema: str, migrations: list[Migration], timeout_s: float
) -> list[int]:
    key = advisory_key(schema)
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
        logger.info("waiting for another process migrating schema %s", schema)
        await conn.execute("SELECT pg_advisory_lock($1)", key, timeout=timeout_s)
    try:
        return await _apply(conn, schema, migrations, timeout_s)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def _apply(
    conn: Any, schema: str, migrations: list[Migration], timeout_s: float
) -> list[int]:
    table = f"{_quote(schema)}.schema_migrations"
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " version integer PRIMARY KEY,"
        " name text NOT NULL,"
        " checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    rows = await conn.fetch(f"SELECT version, name, checksum FROM {table}")
    applied = {row["version"]: row for row in rows}
    known = {m.version: m for m in migrations}
    for version, row in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            # A newer release ran it; an older replica may still serve during a rollout.
            logger.warning(
                "schema %s has migration %04d %s that this code does not know",
                schema,
                version,
                row["name"],
            )
        elif migration.checksum != row["checksum"]:
            raise MigrationError(
                f"migration {version:04d}_{migration.name} of schema {schema} changed after it "
                f"was applied: expected checksum {row['checksum']}, got {migration.checksum}; "
                "add a new migration instead of editing an applied one"
            )
    latest = max(applied, default=-1)
    done: list[int] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        if migration.version < latest:
            logger.warning(
                "applying migration %04d of schema %s after newer %04d",
                migration.version,
                schema,
                latest,
            )
        async with conn.transaction():
            await conn.execute(
                "SELECT set_config('search_path', $1, true)", f"{_quote(schema)}, public"
            )
            await conn.execute(migration.sql, timeout=timeout_s)
            await conn.execute(
                f"INSERT INTO {table} (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        logger.info(
            "applied migration %04d_%s to schema %s", migration.version, migration.name, schema
        )
        done.append(migration.version)
    return done
