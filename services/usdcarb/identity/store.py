"""PostgreSQL storage of the identity service (unqualified tables: the pool's search_path).

Contract: every method takes an optional connection so the application can group
writes in one transaction; lookups by secret go through its hash only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from usdcarb.identity.model import (
    ApiKeyRecord,
    AuditRecord,
    RefreshRecord,
    SigningKeyRecord,
    UserRecord,
)
from usdcarb.platform.db import PooledStore
from usdcarb.platform.errors import AlreadyExists, NotFound

_USER = """SELECT u.id, u.username, u.display_name, u.email, u.password_hash, u.disabled,
       u.failed_logins, u.locked_until, u.create_time, u.last_login_time,
       COALESCE(ARRAY(SELECT role FROM user_roles r WHERE r.user_id = u.id ORDER BY role),
                '{}') AS roles
FROM users u"""
_KEY = """SELECT id, user_id, display_name, prefix, roles, expire_time, revoke_time,
       create_time, last_used_time FROM api_keys"""
_ROTATION_LOCK = 0x1D5C_4B1E  # advisory lock serialising key rotation across replicas


def _user(row: asyncpg.Record) -> UserRecord:
    data = dict(row)
    data["roles"] = tuple(data["roles"])
    return UserRecord(**data)


def _key(row: asyncpg.Record) -> ApiKeyRecord:
    data = dict(row)
    data["roles"] = tuple(data["roles"])
    return ApiKeyRecord(**data)


class IdentityStore(PooledStore):
    """Users, roles, refresh tokens, API keys, signing keys, audit events, request ids."""

    # -- users --------------------------------------------------------------------
    async def insert_user(self, conn: asyncpg.Connection, user: UserRecord) -> None:
        try:
            await conn.execute(
                """INSERT INTO users (id, username, display_name, email, password_hash, disabled)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                user.id, user.username, user.display_name, user.email, user.password_hash,
                user.disabled,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("user", user.username) from None
        await self.set_roles(conn, user.id, user.roles)

    async def set_roles(self, conn: asyncpg.Connection, user_id: str, roles: Sequence[str]) -> None:
        await conn.execute("DELETE FROM user_roles WHERE user_id = $1", user_id)
        await conn.executemany(
            "INSERT INTO user_roles (user_id, role) VALUES ($1, $2)",
            [(user_id, role) for role in roles],
        )

    async def get_user(
        self, user_id: str, *, conn: asyncpg.Connection | None = None, lock: bool = False
    ) -> UserRecord:
        sql = _USER + " WHERE u.id = $1" + (" FOR UPDATE OF u" if lock else "")
        async with self._conn(conn) as c:
            row = await c.fetchrow(sql, user_id)
        if row is None:
            raise NotFound("user", f"users/{user_id}")
        return _user(row)

    async def find_user(
        self, username: str, *, conn: asyncpg.Connection | None = None, lock: bool = False
    ) -> UserRecord | None:
        sql = _USER + " WHERE u.username = $1" + (" FOR UPDATE OF u" if lock else "")
        async with self._conn(conn) as c:
            row = await c.fetchrow(sql, username)
        return None if row is None else _user(row)

    async def count_users(self) -> int:
        async with self._conn(None) as c:
            return int(await c.fetchval("SELECT count(*) FROM users"))

    async def list_users(self, *, limit: int, after: str | None) -> list[UserRecord]:
        async with self._conn(None) as c:
            rows = await c.fetch(
                _USER + " WHERE ($1::text IS NULL OR u.username > $1) ORDER BY u.username"
                " LIMIT $2", after, limit)
        return [_user(r) for r in rows]

    async def update_user(
        self, conn: asyncpg.Connection, user_id: str, *, display_name: str, email: str,
        disabled: bool,
    ) -> None:
        await conn.execute(
            "UPDATE users SET display_name = $2, email = $3, disabled = $4 WHERE id = $1",
            user_id, display_name, email, disabled,
        )

    async def record_login(
        self, conn: asyncpg.Connection, user_id: str, *, failures: int,
        locked_until: datetime | None, login_time: datetime | None,
    ) -> None:
        await conn.execute(
            """UPDATE users SET failed_logins = $2, locked_until = $3,
                                last_login_time = COALESCE($4, last_login_time)
               WHERE id = $1""",
            user_id, failures, locked_until, login_time,
        )

    async def set_password(self, conn: asyncpg.Connection | None, user_id: str, hashed: str) -> None:
        async with self._conn(conn) as c:
            await c.execute(
                "UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = NULL"
                " WHERE id = $1", user_id, hashed)

    # -- refresh tokens -----------------------------------------------------------
    async def insert_refresh(
        self, conn: asyncpg.Connection, record: RefreshRecord, token_hash: str
    ) -> None:
        await conn.execute(
            """INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expire_time)
               VALUES ($1, $2, $3, $4, $5)""",
            record.id, record.family_id, record.user_id, token_hash, record.expire_time,
        )

    async def find_refresh(
        self, conn: asyncpg.Connection, token_hash: str, *, lock: bool = False
    ) -> RefreshRecord | None:
        row = await conn.fetchrow(
            "SELECT id, family_id, user_id, expire_time, use_time, revoke_time"
            " FROM refresh_tokens WHERE token_hash = $1" + (" FOR UPDATE" if lock else ""),
            token_hash,
        )
        return None if row is None else RefreshRecord(**dict(row))

    async def mark_refresh_used(self, conn: asyncpg.Connection, token_id: str, now: datetime) -> bool:
        """Mark a token used; False if it was used or revoked meanwhile (a race lost)."""
        done = await conn.fetchval(
            """UPDATE refresh_tokens SET use_time = $2
               WHERE id = $1 AND use_time IS NULL AND revoke_time IS NULL RETURNING id""",
            token_id, now,
        )
        return done is not None

    async def revoke_family(self, conn: asyncpg.Connection, family_id: str, now: datetime) -> int:
        result = await conn.execute(
            "UPDATE refresh_tokens SET revoke_time = $2"
            " WHERE family_id = $1 AND revoke_time IS NULL", family_id, now)
        return int(result.split()[-1])

    async def revoke_user_tokens(self, conn: asyncpg.Connection, user_id: str, now: datetime) -> int:
        result = await conn.execute(
            "UPDATE refresh_tokens SET revoke_time = $2"
            " WHERE user_id = $1 AND revoke_time IS NULL", user_id, now)
        return int(result.split()[-1])

    # -- API keys -----------------------------------------------------------------
    async def insert_api_key(
        self, conn: asyncpg.Connection, key: ApiKeyRecord, secret_hash: str
    ) -> ApiKeyRecord:
        await conn.execute(
            """INSERT INTO api_keys (id, user_id, display_name, prefix, secret_hash, roles,
                                     expire_time)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            key.id, key.user_id, key.display_name, key.prefix, secret_hash, list(key.roles),
            key.expire_time,
        )
        return await self.get_api_key(key.user_id, key.id, conn=conn)

    async def get_api_key(
        self, user_id: str, key_id: str, *, conn: asyncpg.Connection | None = None
    ) -> ApiKeyRecord:
        async with self._conn(conn) as c:
            row = await c.fetchrow(_KEY + " WHERE user_id = $1 AND id = $2", user_id, key_id)
        if row is None:
            raise NotFound("API key", f"users/{user_id}/apiKeys/{key_id}")
        return _key(row)

    async def find_api_key(self, conn: asyncpg.Connection, secret_hash: str) -> ApiKeyRecord | None:
        row = await conn.fetchrow(_KEY + " WHERE secret_hash = $1", secret_hash)
        return None if row is None else _key(row)

    async def list_api_keys(
        self, user_id: str, *, limit: int, after: tuple[datetime, str] | None
    ) -> list[ApiKeyRecord]:
        async with self._conn(None) as c:
            if after is None:
                rows = await c.fetch(
                    _KEY + " WHERE user_id = $1 ORDER BY create_time DESC, id DESC LIMIT $2",
                    user_id, limit)
            else:
                rows = await c.fetch(
                    _KEY + " WHERE user_id = $1 AND (create_time, id) < ($2, $3)"
                    " ORDER BY create_time DESC, id DESC LIMIT $4",
                    user_id, after[0], after[1], limit)
        return [_key(r) for r in rows]

    async def revoke_api_key(
        self, conn: asyncpg.Connection, user_id: str, key_id: str, now: datetime
    ) -> None:
        await conn.execute(
            "UPDATE api_keys SET revoke_time = COALESCE(revoke_time, $3)"
            " WHERE user_id = $1 AND id = $2", user_id, key_id, now)

    async def touch_api_key(self, conn: asyncpg.Connection, key_id: str, now: datetime) -> None:
        await conn.execute("UPDATE api_keys SET last_used_time = $2 WHERE id = $1", key_id, now)

    # -- signing keys -------------------------------------------------------------
    async def list_signing_keys(self, *, conn: asyncpg.Connection | None = None
                                ) -> list[SigningKeyRecord]:
        async with self._conn(conn) as c:
            rows = await c.fetch(
                "SELECT kid, private_pem, public_jwk, activate_time, retire_time"
                " FROM signing_keys ORDER BY activate_time")
        return [SigningKeyRecord(**dict(r)) for r in rows]

    async def lock_rotation(self, conn: asyncpg.Connection) -> None:
        """Serialise rotations of every replica until the transaction ends."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _ROTATION_LOCK)

    async def insert_signing_key(self, conn: asyncpg.Connection, key: SigningKeyRecord) -> None:
        await conn.execute(
            """INSERT INTO signing_keys (kid, private_pem, public_jwk, activate_time)
               VALUES ($1, $2, $3, $4)""",
            key.kid, key.private_pem, key.public_jwk, key.activate_time,
        )

    async def retire_signing_key(self, conn: asyncpg.Connection, kid: str, at: datetime) -> None:
        await conn.execute("UPDATE signing_keys SET retire_time = $2 WHERE kid = $1", kid, at)

    # -- audit --------------------------------------------------------------------
    async def insert_audit(self, event: AuditRecord, *, conn: asyncpg.Connection | None = None
                           ) -> None:
        async with self._conn(conn) as c:
            await c.execute(
                """INSERT INTO audit_events (actor, action, target, outcome, client_ip, details)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                event.actor, event.action, event.target, event.outcome, event.client_ip,
                event.details,
            )

    async def insert_audit_once(self, events: Sequence[tuple[str, AuditRecord]]) -> int:
        """Insert events keyed by a source id (a stream entry id), skipping ids already
        recorded; return how many were new."""
        if not events:
            return 0
        rows = await self._pool.fetch(
            """INSERT INTO audit_events (time, actor, action, target, outcome, client_ip,
                                         details, source_id)
               SELECT coalesce(t, now()), a, ac, ta, o, ip, d, src
               FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[],
                           $5::text[], $6::text[], $7::jsonb[], $8::text[])
                    AS u(t, a, ac, ta, o, ip, d, src)
               ON CONFLICT (source_id) WHERE source_id IS NOT NULL DO NOTHING
               RETURNING id""",
            [e.time for _, e in events], [e.actor for _, e in events],
            [e.action for _, e in events], [e.target for _, e in events],
            [e.outcome for _, e in events], [e.client_ip for _, e in events],
            [e.details for _, e in events], [source for source, _ in events])
        return len(rows)

    async def list_audit(
        self, *, limit: int, after: tuple[datetime, int] | None, action: str, actor: str,
        start: datetime | None, end: datetime | None,
    ) -> list[AuditRecord]:
        clauses, args = ["TRUE"], []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if action:
            # Prefix match: "login." matches login.success and login.failure.
            escaped = action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(f"action LIKE {arg(escaped + '%')}")
        if actor:
            clauses.append(f"actor = {arg(actor)}")
        if start is not None:
            clauses.append(f"time >= {arg(start)}")
        if end is not None:
            clauses.append(f"time < {arg(end)}")
        if after is not None:
            clauses.append(f"(time, id) < ({arg(after[0])}, {arg(after[1])})")
        sql = ("SELECT id, time, actor, action, target, outcome, client_ip, details"
               f" FROM audit_events WHERE {' AND '.join(clauses)}"
               f" ORDER BY time DESC, id DESC LIMIT {arg(limit)}")
        async with self._conn(None) as c:
            rows = await c.fetch(sql, *args)
        return [AuditRecord(**dict(r)) for r in rows]

    # -- request ids --------------------------------------------------------------
    async def find_request(
        self, conn: asyncpg.Connection, request_id: str, now: datetime
    ) -> asyncpg.Record | None:
        await conn.execute(
            "UPDATE request_ids SET secret_enc = NULL WHERE expire_time <= $1"
            " AND secret_enc IS NOT NULL", now)
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT method, owner, resource, secret_enc FROM request_ids WHERE request_id = $1",
            request_id)
        return row

    async def remember_request(
        self, conn: asyncpg.Connection, request_id: str, *, method: str, owner: str,
        resource: str, secret_enc: str | None, expire_time: datetime,
    ) -> None:
        await conn.execute(
            """INSERT INTO request_ids (request_id, method, owner, resource, secret_enc,
                                        expire_time) VALUES ($1, $2, $3, $4, $5, $6)""",
            request_id, method, owner, resource, secret_enc, expire_time,
        )
