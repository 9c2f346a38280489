"""PostgreSQL store of the notification service (asyncpg).

Contract: methods taking ``conn`` run in the caller's transaction; the others on a pooled
connection. Deliveries are unique on (event id, subscription), so consuming an event twice
writes nothing twice. Due deliveries are claimed with ``FOR UPDATE SKIP LOCKED`` and a
lease: replicas never claim the same row at once, and a row whose lease ran out (its
replica died mid-attempt) is claimed again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from usdcarb.notification.domain import DeliveryState
from usdcarb.notification.model import (
    ChannelRecord,
    DeliveryRecord,
    Result,
    StoredEvent,
    SubscriptionRecord,
)
from usdcarb.platform.db import PooledStore
from usdcarb.platform.errors import NotFound

_PENDING = DeliveryState.PENDING.value
_CHANNEL_COLUMNS = ("id, display_name, kind, config, owner, secret, previous_secret, "
                    "previous_secret_expire_time, create_time")
_SUB_COLUMNS = ("id, channel_id, event_types, min_severity, subject_prefix, enabled, owner, "
                "create_time")
_DELIVERY_COLUMNS = ("id, channel_id, subscription_id, event, state, attempts, response_code, "
                     "last_error, create_time, end_time, next_attempt_time")


def _channel(row: Any) -> ChannelRecord:
    return ChannelRecord(**dict(row))


def _subscription(row: Any) -> SubscriptionRecord:
    d = dict(row)
    d["event_types"] = list(d["event_types"])
    return SubscriptionRecord(**d)


def _delivery(row: Any) -> DeliveryRecord:
    d = dict(row)
    d["event"] = StoredEvent.from_json(d["event"])
    d["state"] = DeliveryState(d["state"])
    return DeliveryRecord(**d)


def _keyset(clauses: list[str], args: list[Any], after: tuple[datetime, str] | None,
            prefix: str = "") -> None:
    if after is not None:
        args += [after[0], after[1]]
        clauses.append(f"({prefix}create_time, {prefix}id) < (${len(args) - 1}, ${len(args)})")


class NotificationStore(PooledStore):
    """Channels, subscriptions and deliveries."""

    # -- channels -------------------------------------------------------------------
    async def insert_channel(self, conn: Any, c: ChannelRecord, request_id: str) -> ChannelRecord:
        row = await conn.fetchrow(
            f"""INSERT INTO channels (id, display_name, kind, config, secret, owner, request_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_CHANNEL_COLUMNS}""",
            c.id, c.display_name, c.kind, c.config, c.secret, c.owner, request_id or None)
        return _channel(row)

    async def channel_for_request(self, conn: Any, request_id: str) -> ChannelRecord | None:
        row = await conn.fetchrow(
            f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE request_id = $1", request_id)
        return None if row is None else _channel(row)

    async def get_channel(self, channel_id: str, *, conn: Any | None = None,
                          lock: bool = False) -> ChannelRecord:
        sql = f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE id = $1"
        async with self._conn(conn) as c:
            row = await c.fetchrow(sql + (" FOR UPDATE" if lock else ""), channel_id)
        if row is None:
            raise NotFound("channel", f"channels/{channel_id}")
        return _channel(row)

    async def get_channels(self, ids: Sequence[str]) -> dict[str, ChannelRecord]:
        rows = await self._pool.fetch(
            f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE id = ANY($1::text[])", list(ids))
        return {r["id"]: _channel(r) for r in rows}

    async def list_channels(self, *, owner: str | None, limit: int,
                            after: tuple[datetime, str] | None) -> list[ChannelRecord]:
        clauses, args = ["TRUE"], list[Any]()
        if owner is not None:
            args.append(owner)
            clauses.append(f"owner = ${len(args)}")
        _keyset(clauses, args, after)
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE {' AND '.join(clauses)} "
            f"ORDER BY create_time DESC, id DESC LIMIT ${len(args)}", *args)
        return [_channel(r) for r in rows]

    async def update_channel(self, conn: Any, channel_id: str, display_name: str,
                             config: dict[str, Any]) -> ChannelRecord:
        row = await conn.fetchrow(
            f"UPDATE channels SET display_name = $2, config = $3 WHERE id = $1 "
            f"RETURNING {_CHANNEL_COLUMNS}", channel_id, display_name, config)
        return _channel(row)

    async def rotate_secret(self, conn: Any, channel_id: str, secret: str,
                            overlap_s: float) -> ChannelRecord:
        row = await conn.fetchrow(
            f"""UPDATE channels SET previous_secret = secret, secret = $2,
                       previous_secret_expire_time = now() + make_interval(secs => $3)
                WHERE id = $1 RETURNING {_CHANNEL_COLUMNS}""", channel_id, secret, overlap_s)
        return _channel(row)

    async def delete_channel(self, conn: Any, channel_id: str) -> None:
        await conn.execute("DELETE FROM channels WHERE id = $1", channel_id)

    # -- subscriptions --------------------------------------------------------------
    async def insert_subscription(self, conn: Any, s: SubscriptionRecord,
                                  request_id: str) -> SubscriptionRecord:
        row = await conn.fetchrow(
            f"""INSERT INTO subscriptions (id, channel_id, event_types, min_severity,
                                           subject_prefix, enabled, owner, request_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_SUB_COLUMNS}""",
            s.id, s.channel_id, s.event_types, s.min_severity, s.subject_prefix, s.enabled,
            s.owner, request_id or None)
        return _subscription(row)

    async def subscription_for_request(self, conn: Any,
                                       request_id: str) -> SubscriptionRecord | None:
        row = await conn.fetchrow(
            f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE request_id = $1", request_id)
        return None if row is None else _subscription(row)

    async def get_subscription(self, sub_id: str, *, conn: Any | None = None,
                               lock: bool = False) -> SubscriptionRecord:
        sql = f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE id = $1"
        async with self._conn(conn) as c:
            row = await c.fetchrow(sql + (" FOR UPDATE" if lock else ""), sub_id)
        if row is None:
            raise NotFound("subscription", f"subscriptions/{sub_id}")
        return _subscription(row)

    async def list_subscriptions(self, *, owner: str | None, channel_id: str | None,
                                 limit: int, after: tuple[datetime, str] | None,
                                 ) -> list[SubscriptionRecord]:
        clauses, args = ["TRUE"], list[Any]()
        if owner is not None:
            args.append(owner)
            clauses.append(f"owner = ${len(args)}")
        if channel_id is not None:
            args.append(channel_id)
            clauses.append(f"channel_id = ${len(args)}")
        _keyset(clauses, args, after)
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE {' AND '.join(clauses)} "
            f"ORDER BY create_time DESC, id DESC LIMIT ${len(args)}", *args)
        return [_subscription(r) for r in rows]

    async def update_subscription(self, conn: Any, s: SubscriptionRecord) -> SubscriptionRecord:
        row = await conn.fetchrow(
            f"""UPDATE subscriptions SET event_types = $2, min_severity = $3,
                       subject_prefix = $4, enabled = $5
                WHERE id = $1 RETURNING {_SUB_COLUMNS}""",
            s.id, s.event_types, s.min_severity, s.subject_prefix, s.enabled)
        return _subscription(row)

    async def delete_subscription(self, conn: Any, sub_id: str) -> None:
        await conn.execute("DELETE FROM subscriptions WHERE id = $1", sub_id)

    async def enabled_subscriptions(self) -> list[SubscriptionRecord]:
        rows = await self._pool.fetch(
            f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE enabled")
        return [_subscription(r) for r in rows]

    # -- deliveries -----------------------------------------------------------------
    async def insert_deliveries(self, rows: Sequence[tuple[str, str, str | None, StoredEvent]],
                                *, due_in_s: float = 0.0) -> int:
        """Insert (id, channel id, subscription id, event) rows, due in ``due_in_s``; skip
        the ones an earlier consumption of the same event inserted. Return how many are new."""
        if not rows:
            return 0
        inserted = await self._pool.fetch(
            """INSERT INTO deliveries (id, channel_id, subscription_id, event_id, event,
                                       next_attempt_time)
               SELECT r.id, r.channel_id, r.subscription_id, r.event_id, r.event::jsonb,
                      now() + make_interval(secs => $6)
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                    AS r(id, channel_id, subscription_id, event_id, event)
               ON CONFLICT DO NOTHING RETURNING id""",
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
            [r[3].id for r in rows], [_json(r[3].to_json()) for r in rows], due_in_s)
        return len(inserted)

    async def get_delivery(self, channel_id: str, delivery_id: str) -> DeliveryRecord:
        row = await self._pool.fetchrow(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE channel_id = $1 AND id = $2",
            channel_id, delivery_id)
        if row is None:
            raise NotFound("delivery", f"channels/{channel_id}/deliveries/{delivery_id}")
        return _delivery(row)

    async def list_deliveries(self, *, channel_id: str, state: str | None, limit: int,
                              after: tuple[datetime, str] | None) -> list[DeliveryRecord]:
        clauses, args = ["channel_id = $1"], list[Any]([channel_id])
        if state is not None:
            args.append(state)
            clauses.append(f"state = ${len(args)}")
        _keyset(clauses, args, after)
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE {' AND '.join(clauses)} "
            f"ORDER BY create_time DESC, id DESC LIMIT ${len(args)}", *args)
        return [_delivery(r) for r in rows]

    async def claim_due(self, *, owner: str, limit: int, per_channel: int, lease_s: float,
                        in_flight: dict[str, int] | None = None,
                        ids: Sequence[str] | None = None) -> list[DeliveryRecord]:
        """Lease up to ``limit`` due deliveries, oldest due first, so that no channel has
        more than ``per_channel`` in flight on this replica (``in_flight`` counts them).
        ``ids`` leases those rows whenever they are due or not (TestChannel)."""
        returning = ", ".join("d." + c.strip() for c in _DELIVERY_COLUMNS.split(","))
        if ids is not None:
            rows = await self._pool.fetch(
                f"""WITH leased AS (
                        SELECT id FROM deliveries
                        WHERE id = ANY($2::text[]) AND state = '{_PENDING}'
                          AND (lease_until IS NULL OR lease_until < now())
                        LIMIT $3 FOR UPDATE SKIP LOCKED)
                    UPDATE deliveries d
                    SET lease_owner = $1, lease_until = now() + make_interval(secs => $4)
                    FROM leased WHERE d.id = leased.id RETURNING {returning}""",
                owner, list(ids), limit, lease_s)
            return [_delivery(r) for r in rows]
        busy = in_flight or {}
        rows = await self._pool.fetch(
            f"""WITH RECURSIVE pending(channel_id) AS (
                    -- The channels with pending rows, one index probe each (a skip scan).
                    SELECT min(channel_id) FROM deliveries WHERE state = '{_PENDING}'
                    UNION ALL
                    SELECT (SELECT min(channel_id) FROM deliveries
                            WHERE state = '{_PENDING}' AND channel_id > p.channel_id)
                    FROM pending p WHERE p.channel_id IS NOT NULL
                ), room AS (
                    SELECT p.channel_id, $3 - coalesce(busy.n, 0) AS n
                    FROM pending p
                    LEFT JOIN unnest($4::text[], $5::int[]) AS busy(channel_id, n)
                        ON busy.channel_id = p.channel_id
                    WHERE p.channel_id IS NOT NULL
                ), leased AS (
                    -- Each channel's oldest due rows, as many as it has room for.
                    SELECT due.id, due.next_attempt_time FROM room CROSS JOIN LATERAL (
                        SELECT id, next_attempt_time FROM deliveries
                        WHERE channel_id = room.channel_id AND state = '{_PENDING}'
                          AND next_attempt_time <= now()
                          AND (lease_until IS NULL OR lease_until < now())
                        ORDER BY next_attempt_time LIMIT room.n
                        FOR UPDATE SKIP LOCKED) due
                    WHERE room.n > 0
                    ORDER BY due.next_attempt_time LIMIT $2
                )
                UPDATE deliveries d
                SET lease_owner = $1, lease_until = now() + make_interval(secs => $6)
                FROM leased WHERE d.id = leased.id
                RETURNING {returning}""",
            owner, limit, per_channel, list(busy), list(busy.values()), lease_s)
        return [_delivery(r) for r in rows]

    async def record_attempts(self, owner: str, results: Sequence[Result]) -> set[str]:
        """Store attempts' results, in one statement, for the rows ``owner`` still leases
        (a row whose lease ran out may be another replica's now); release them. Return
        the ids stored."""
        rows = await self._pool.fetch(
            f"""UPDATE deliveries d
                SET state = r.state, attempts = d.attempts + 1, response_code = r.code,
                    last_error = r.error, lease_owner = NULL, lease_until = NULL,
                    end_time = CASE WHEN r.state = '{_PENDING}' THEN NULL ELSE now() END,
                    next_attempt_time = CASE WHEN r.state = '{_PENDING}'
                        THEN now() + make_interval(secs => r.retry_in) ELSE NULL END
                FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::float8[])
                     AS r(id, state, code, error, retry_in)
                WHERE d.id = r.id AND d.lease_owner = $1
                RETURNING d.id""",
            owner, [r.id for r in results], [r.state.value for r in results],
            [r.code for r in results], [r.error[:2000] for r in results],
            [r.retry_in_s or 0.0 for r in results])
        return {row["id"] for row in rows}

    async def redeliver(self, conn: Any, channel_id: str,
                        delivery_id: str | None) -> list[DeliveryRecord]:
        """Make dead letters (or the one named, if ended) due now, attempts counted anew."""
        if delivery_id is None:
            where, args = "channel_id = $1 AND state = $2", [channel_id,
                                                               DeliveryState.DEAD_LETTERED.value]
        else:
            where, args = "channel_id = $1 AND id = $2 AND state <> $3", [
                channel_id, delivery_id, _PENDING]
        rows = await conn.fetch(
            f"""UPDATE deliveries SET state = '{_PENDING}', attempts = 0, end_time = NULL,
                       next_attempt_time = now(), lease_owner = NULL, lease_until = NULL
                WHERE {where} RETURNING {_DELIVERY_COLUMNS}""", *args)
        return sorted((_delivery(r) for r in rows), key=lambda d: (d.create_time, d.id),
                      reverse=True)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
