"""PostgreSQL store of the strategy service (asyncpg).

Contract: every method runs in the caller's connection when one is given (so the
application can group calls in one transaction) and on a pooled connection otherwise.
Tables are unqualified: the pool's search_path names the service's schema.
Every row's ``owner`` is its creator, written once by the INSERT and never updated; the
application checks it on rows it read with ``lock=True`` (FOR UPDATE) in the transaction
of the write.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from usdcarb.platform.db import PooledStore
from usdcarb.platform.errors import AlreadyExists, NotFound
from usdcarb.strategy.domain import VersionState
from usdcarb.strategy.model import DeploymentRecord, StrategyRecord, VersionRecord

_STRATEGY_COLUMNS = """
    s.id, s.display_name, s.description, s.kind, s.labels, s.creator, s.create_time,
    s.update_time, s.etag, s.version_count, s.owner,
    coalesce((SELECT v.version_id FROM versions v WHERE v.strategy_id = s.id
              ORDER BY v.sequence DESC LIMIT 1), '') AS latest_version_id
"""


def new_etag() -> str:
    return uuid.uuid4().hex[:16]


def _strategy(row: asyncpg.Record) -> StrategyRecord:
    return StrategyRecord(**dict(row))


def _version(row: asyncpg.Record) -> VersionRecord:
    data = dict(row)
    data["state"] = VersionState(data["state"])
    return VersionRecord(**data)


def _deployment(row: asyncpg.Record) -> DeploymentRecord:
    return DeploymentRecord(**dict(row))


class StrategyStore(PooledStore):
    """Strategies, versions, transitions, deployments and request ids."""

    # -- request ids --------------------------------------------------------------
    async def resource_for_request(self, conn: asyncpg.Connection, request_id: str) -> str | None:
        """Return the resource a request id created, or None."""
        value: str | None = await conn.fetchval(
            "SELECT resource FROM request_ids WHERE request_id = $1", request_id
        )
        return value

    async def remember_request(
        self, conn: asyncpg.Connection, request_id: str, method: str, resource: str
    ) -> None:
        await conn.execute(
            "INSERT INTO request_ids (request_id, method, resource) VALUES ($1, $2, $3)",
            request_id, method, resource,
        )

    # -- strategies ---------------------------------------------------------------
    async def insert_strategy(self, conn: asyncpg.Connection, s: StrategyRecord) -> StrategyRecord:
        try:
            await conn.execute(
                """INSERT INTO strategies (id, display_name, description, kind, labels, creator,
                                           etag, owner)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $6)""",
                s.id, s.display_name, s.description, s.kind, s.labels, s.creator, new_etag(),
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("strategy", s.name) from None
        return await self.get_strategy(s.id, conn=conn)

    async def get_strategy(
        self, strategy_id: str, *, conn: asyncpg.Connection | None = None, lock: bool = False
    ) -> StrategyRecord:
        sql = f"SELECT {_STRATEGY_COLUMNS} FROM strategies s WHERE s.id = $1"
        if lock:
            sql += " FOR UPDATE OF s"
        async with self._conn(conn) as c:
            row = await c.fetchrow(sql, strategy_id)
        if row is None:
            raise NotFound("strategy", f"strategies/{strategy_id}")
        return _strategy(row)

    async def list_strategies(
        self, *, limit: int, after: tuple[datetime, str] | None, kind: str | None,
        label: tuple[str, str] | None, owner: str | None = None,
    ) -> list[StrategyRecord]:
        """Newest first; ``after`` is the (create_time, id) of the last row served."""
        clauses, args = ["TRUE"], []
        if after is not None:
            args += [after[0], after[1]]
            clauses.append(f"(s.create_time, s.id) < (${len(args) - 1}, ${len(args)})")
        if kind is not None:
            args.append(kind)
            clauses.append(f"s.kind = ${len(args)}")
        if label is not None:
            args.append({label[0]: label[1]})
            clauses.append(f"s.labels @> ${len(args)}")
        if owner is not None:
            args.append(owner)
            clauses.append(f"s.owner = ${len(args)}")
        args.append(limit)
        sql = (f"SELECT {_STRATEGY_COLUMNS} FROM strategies s WHERE {' AND '.join(clauses)} "
               f"ORDER BY s.create_time DESC, s.id DESC LIMIT ${len(args)}")
        async with self._pool.acquire() as conn:
            return [_strategy(r) for r in await conn.fetch(sql, *args)]

    async def update_strategy(
        self, conn: asyncpg.Connection, strategy_id: str, fields: dict[str, Any]
    ) -> StrategyRecord:
        sets = [f"{col} = ${i}" for i, col in enumerate(fields, start=2)]
        sets += ["update_time = now()", f"etag = ${len(fields) + 2}"]
        await conn.execute(
            f"UPDATE strategies SET {', '.join(sets)} WHERE id = $1",
            strategy_id, *fields.values(), new_etag(),
        )
        return await self.get_strategy(strategy_id, conn=conn)

    async def delete_strategy(self, conn: asyncpg.Connection, strategy_id: str) -> None:
        await conn.execute("DELETE FROM strategies WHERE id = $1", strategy_id)

    # -- versions -----------------------------------------------------------------
    async def find_version(
        self, strategy_id: str, version_id: str, *, conn: asyncpg.Connection | None = None,
        lock: bool = False,
    ) -> VersionRecord | None:
        if version_id == "latest":
            sql = "SELECT * FROM versions WHERE strategy_id = $1 ORDER BY sequence DESC LIMIT 1"
            args: tuple[Any, ...] = (strategy_id,)
        else:
            sql = "SELECT * FROM versions WHERE strategy_id = $1 AND version_id = $2"
            args = (strategy_id, version_id)
        if lock:
            sql += " FOR UPDATE"
        async with self._conn(conn) as c:
            row = await c.fetchrow(sql, *args)
        return None if row is None else _version(row)

    async def get_version(
        self, strategy_id: str, version_id: str, *, conn: asyncpg.Connection | None = None,
        lock: bool = False,
    ) -> VersionRecord:
        found = await self.find_version(strategy_id, version_id, conn=conn, lock=lock)
        if found is None:
            raise NotFound("strategy version", f"strategies/{strategy_id}/versions/{version_id}")
        return found

    async def insert_version(
        self, conn: asyncpg.Connection, *, strategy_id: str, version_id: str,
        parameters: dict[str, Any], canonical: str, content_hash: str, description: str,
        creator: str,
    ) -> VersionRecord:
        """Insert the next version; the caller holds the strategy row lock."""
        sequence = await conn.fetchval(
            "UPDATE strategies SET version_count = version_count + 1, update_time = now() "
            "WHERE id = $1 RETURNING version_count", strategy_id,
        )
        row = await conn.fetchrow(
            """INSERT INTO versions (strategy_id, version_id, sequence, parameters, canonical,
                                     content_hash, description, creator, owner)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING *""",
            strategy_id, version_id, sequence, parameters, canonical, content_hash,
            description, creator,
        )
        return _version(row)

    async def list_versions(
        self, strategy_id: str, *, limit: int, after_sequence: int | None, state: str | None
    ) -> list[VersionRecord]:
        args: list[Any] = [strategy_id]
        clauses = ["strategy_id = $1"]
        if after_sequence is not None:
            args.append(after_sequence)
            clauses.append(f"sequence < ${len(args)}")
        if state is not None:
            args.append(state)
            clauses.append(f"state = ${len(args)}")
        args.append(limit)
        sql = (f"SELECT * FROM versions WHERE {' AND '.join(clauses)} "
               f"ORDER BY sequence DESC LIMIT ${len(args)}")
        async with self._pool.acquire() as conn:
            return [_version(r) for r in await conn.fetch(sql, *args)]

    async def set_version_state(
        self, conn: asyncpg.Connection, v: VersionRecord, target: VersionState, reason: str,
        actor: str,
    ) -> VersionRecord:
        row = await conn.fetchrow(
            "UPDATE versions SET state = $3, state_time = now() "
            "WHERE strategy_id = $1 AND version_id = $2 RETURNING *",
            v.strategy_id, v.version_id, target.value,
        )
        await conn.execute(
            """INSERT INTO version_transitions (strategy_id, version_id, from_state, to_state,
                                                reason, actor)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            v.strategy_id, v.version_id, v.state.value, target.value, reason, actor,
        )
        return _version(row)

    # -- deployments --------------------------------------------------------------
    async def insert_deployment(
        self, conn: asyncpg.Connection, *, strategy_id: str, version_id: str, environment: str,
        notes: str, creator: str,
    ) -> DeploymentRecord:
        row = await conn.fetchrow(
            """INSERT INTO deployments (strategy_id, id, version_id, environment, notes, creator,
                                        owner)
               VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *""",
            strategy_id, uuid.uuid4().hex[:12], version_id, environment, notes, creator,
        )
        return _deployment(row)

    async def get_deployment(
        self, strategy_id: str, deployment_id: str, *, conn: asyncpg.Connection | None = None,
        lock: bool = False,
    ) -> DeploymentRecord:
        sql = "SELECT * FROM deployments WHERE strategy_id = $1 AND id = $2"
        if lock:
            sql += " FOR UPDATE"
        async with self._conn(conn) as c:
            row = await c.fetchrow(sql, strategy_id, deployment_id)
        if row is None:
            raise NotFound(
                "deployment", f"strategies/{strategy_id}/deployments/{deployment_id}"
            )
        return _deployment(row)

    async def list_deployments(
        self, strategy_id: str, *, limit: int, after: tuple[datetime, str] | None
    ) -> list[DeploymentRecord]:
        args: list[Any] = [strategy_id]
        where = "strategy_id = $1"
        if after is not None:
            args += [after[0], after[1]]
            where += " AND (create_time, id) < ($2, $3)"
        args.append(limit)
        sql = (f"SELECT * FROM deployments WHERE {where} "
               f"ORDER BY create_time DESC, id DESC LIMIT ${len(args)}")
        async with self._pool.acquire() as conn:
            return [_deployment(r) for r in await conn.fetch(sql, *args)]

    async def count_active_deployments(
        self, conn: asyncpg.Connection, strategy_id: str, version_id: str | None = None
    ) -> int:
        sql = "SELECT count(*) FROM deployments WHERE strategy_id = $1 AND state = $2"
        args: list[Any] = [strategy_id, "DEPLOYMENT_STATE_ACTIVE"]
        if version_id is not None:
            sql += " AND version_id = $3"
            args.append(version_id)
        count: int = await conn.fetchval(sql, *args)
        return count

    async def stop_deployment(
        self, conn: asyncpg.Connection, d: DeploymentRecord, reason: str
    ) -> DeploymentRecord:
        notes = f"{d.notes}\nstopped: {reason}".strip() if reason else d.notes
        row = await conn.fetchrow(
            "UPDATE deployments SET state = 'DEPLOYMENT_STATE_STOPPED', stop_time = now(), "
            "notes = $3 WHERE strategy_id = $1 AND id = $2 RETURNING *",
            d.strategy_id, d.id, notes,
        )
        return _deployment(row)
