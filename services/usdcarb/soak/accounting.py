"""The accounting pass: read every store and compare it with what the clients were told.

Counted as **lost**: an acknowledged write absent (a strategy, a version, a rename, a
delete that did not hold, a backtest or sweep, an ingested bar of a window acknowledged
as done, a delivery or an event of a finished job). **Duplicated**: one acknowledged
request stored twice, a bar stored twice, a second delivery of one event to one
subscription, rows our callers made that no request of theirs asked for. **Stuck**: a job
acknowledged as created not terminal after the drain, a terminal job without a result or
a reason, a stream that never reached its outcome, a delivery still pending, a Redis
consumer-group entry never acknowledged. **Wrong**: a stored bar that differs from the
source bar, a stream outcome that differs from the stored state. The soak passes only
with all four at zero.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import redis.asyncio as aioredis

from usdcarb.devstack.stack import StackInfo
from usdcarb.replay.data import Catalog, load_catalog
from usdcarb.soak.workers import Ledger

TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
OUTCOME_STATE = {"RESULT_OK": "JOB_STATE_SUCCEEDED", "RESULT_FAILED": "JOB_STATE_FAILED",
                 "RESULT_CANCELLED": "JOB_STATE_CANCELLED"}
SAMPLES = Path(__file__).resolve().parents[1] / "replay" / "samples"


def _ids(names: Any) -> list[str]:
    return [str(n).rsplit("/", 1)[1] for n in names]


async def open_jobs(conn: asyncpg.Connection, ledger: Ledger) -> int:
    """How many jobs acknowledged as created are not terminal in their store yet."""
    n = 0
    for table, jobs in (("backtest.backtests", ledger.backtests),
                        ("backtest.sweeps", ledger.sweeps)):
        n += await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE id = ANY($1::text[]) "
            "AND state <> ALL($2::text[])", _ids(jobs), list(TERMINAL))
    n += await conn.fetchval(
        "SELECT count(*) FROM ingestion.ingest_jobs WHERE id = ANY($1::text[]) "
        "AND state <> ALL($2::text[])", _ids(a.name for a in ledger.ingests if a.name),
        list(TERMINAL))
    return int(n)


async def pending_deliveries(conn: asyncpg.Connection, ledger: Ledger) -> int:
    if not ledger.channel:
        return 0
    return int(await conn.fetchval(
        "SELECT count(*) FROM notification.deliveries WHERE channel_id = $1 "
        "AND state = 'DELIVERY_STATE_PENDING'", ledger.channel.rsplit("/", 1)[1]))


async def expected_event_subjects(conn: asyncpg.Connection, ledger: Ledger) -> set[str]:
    """Subjects whose finishing must produce an event our subscriptions match: our
    backtests that succeeded or failed, our sweeps that succeeded (SWEEP_FINISHED)."""
    rows = await conn.fetch(
        "SELECT 'backtests/' || id AS subject FROM backtest.backtests WHERE id = ANY($1::text[]) "
        "AND state IN ('JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED') UNION ALL "
        "SELECT 'sweeps/' || id FROM backtest.sweeps WHERE id = ANY($2::text[]) "
        "AND state = 'JOB_STATE_SUCCEEDED'",  # a failed sweep announces nothing
        _ids(ledger.backtests), _ids(ledger.sweeps))
    return {r["subject"] for r in rows}


class Table:
    """The accounting table: per store, lost / duplicated / stuck / wrong, with examples."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def row(self, name: str) -> dict[str, Any]:
        return self.rows.setdefault(name, {"checked": 0, "lost": 0, "duplicated": 0,
                                           "stuck": 0, "wrong": 0, "examples": []})

    def count(self, name: str, kind: str, n: int = 1, example: str = "") -> None:
        row = self.row(name)
        row[kind] += n
        if example and len(row["examples"]) < 8:
            row["examples"].append(f"{kind}: {example}")

    def totals(self) -> dict[str, int]:
        return {k: sum(int(r[k]) for r in self.rows.values())
                for k in ("lost", "duplicated", "stuck", "wrong")}


async def account(info: StackInfo, ledger: Ledger, catalog_dir: Path = SAMPLES) -> dict[str, Any]:
    """Compare every store with the ledger; return the table as JSON-ready data."""
    table = Table()
    conn = await asyncpg.connect(info.dsn, timeout=30)
    try:
        await _strategies(conn, ledger, table)
        await _jobs(conn, ledger, table, "backtests", "backtest.backtests", ledger.backtests)
        await _jobs(conn, ledger, table, "sweeps", "backtest.sweeps", ledger.sweeps)
        await _ingest(conn, ledger, table, load_catalog(catalog_dir))
        await _deliveries(conn, ledger, table)
    finally:
        await conn.close()
    await _redis(info.redis_url, table)
    return {"rows": table.rows, "totals": table.totals()}


async def _strategies(conn: asyncpg.Connection, ledger: Ledger, table: Table) -> None:
    prefix = f"soak-{ledger.run}-"
    rows = {r["id"]: r for r in await conn.fetch(
        "SELECT id, display_name FROM strategy.strategies WHERE id LIKE $1", prefix + "%")}
    versions: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in await conn.fetch(
            "SELECT strategy_id, version_id, content_hash FROM strategy.versions "
            "WHERE strategy_id LIKE $1", prefix + "%"):
        versions[r["strategy_id"]].append((r["version_id"], r["content_hash"]))
    for sid, ack in ledger.strategies.items():
        table.row("strategies")["checked"] += 1
        row = rows.get(sid)
        if ack.unanswered == "delete":
            continue  # deleted or not: the client was never told
        if ack.deleted:
            if row is not None:
                table.count("strategies", "lost", example=f"{sid}: deleted, still stored")
            continue
        if not ack.created:
            continue  # never acknowledged: stored or not, the client was told nothing
        if row is None:
            table.count("strategies", "lost", example=f"{sid}: acknowledged, absent")
            continue
        if ack.display_name and not ack.unanswered and row["display_name"] != ack.display_name:
            table.count("strategies", "lost",
                        example=f"{sid}: rename to {ack.display_name!r} acknowledged, stored "
                                f"{row['display_name']!r}")
        stored = versions.get(sid, [])
        ids = Counter(v for v, _ in stored)
        hashes = Counter(h for _, h in stored)
        table.row("versions")["checked"] += len(ack.versions)
        for vid in ack.versions:
            if ids[vid] == 0:
                table.count("versions", "lost", example=f"{sid}/{vid}: acknowledged, absent")
        for h, n in hashes.items():
            if n > 1:
                table.count("versions", "duplicated", n - 1, f"{sid}: content {h[:12]} x{n}")
    # Backtest strategies of the setup are ours too; anything else with our prefix was
    # made by no request of ours.
    for sid in rows:
        if sid not in ledger.strategies and "-bt-" not in sid:
            table.count("strategies", "duplicated", example=f"{sid}: stored, never requested")


async def _jobs(conn: asyncpg.Connection, ledger: Ledger, table: Table, name: str,
                relation: str, acks: dict[str, Any]) -> None:
    ids = _ids(acks)
    result = "result" if relation.endswith("backtests") else "points"  # a sweep's result
    rows = {r["id"]: r for r in await conn.fetch(
        f"SELECT id, state, {result} IS NOT NULL AS has_result, error, request_id "
        f"FROM {relation} WHERE id = ANY($1::text[])", ids)}
    kind = name.rstrip("s")
    ours = [k for k, v in ledger.create_request_ids.items() if v == kind]
    by_request = Counter(r["request_id"] for r in await conn.fetch(
        f"SELECT request_id FROM {relation} WHERE request_id = ANY($1::text[])", ours))
    for request_id, n in by_request.items():
        if n > 1:
            table.count(name, "duplicated", n - 1, f"request {request_id} stored {n} times")
    stream_row = f"{name} streams"
    for job_name, ack in acks.items():
        table.row(name)["checked"] += 1
        table.row(stream_row)["checked"] += 1
        row = rows.get(job_name.rsplit("/", 1)[1])
        if row is None:
            table.count(name, "lost", example=f"{job_name}: acknowledged, absent")
            continue
        if row["state"] not in TERMINAL:
            table.count(name, "stuck", example=f"{job_name}: {row['state']} after the drain")
        elif row["state"] == "JOB_STATE_SUCCEEDED" and not row["has_result"]:
            table.count(name, "stuck", example=f"{job_name}: succeeded without a result")
        elif row["state"] == "JOB_STATE_FAILED" and not _reason(row["error"]):
            table.count(name, "stuck", example=f"{job_name}: failed without a reason")
        if not ack.outcome:
            table.count(stream_row, "stuck",
                        example=f"{job_name} ({ack.transport}): stream never reached its outcome")
        elif OUTCOME_STATE.get(ack.outcome) != row["state"]:
            table.count(stream_row, "wrong", example=f"{job_name}: stream said {ack.outcome}, "
                                                     f"stored {row['state']}")
        if ack.duplicate_events:
            table.count(stream_row, "duplicated", ack.duplicate_events,
                        f"{job_name}: {ack.duplicate_events} events repeated after a resume")


def _reason(error: Any) -> str:
    if error is None:
        return ""
    data = json.loads(error) if isinstance(error, str) else error
    return str(data.get("message", "")) if isinstance(data, dict) else str(data)


async def _ingest(conn: asyncpg.Connection, ledger: Ledger, table: Table,
                  catalog: Catalog) -> None:
    """Every window acknowledged as done: its bars equal the source's, none twice."""
    jobs = {r["id"]: r for r in await conn.fetch(
        "SELECT id, state, error, cursor_time FROM ingestion.ingest_jobs "
        "WHERE id = ANY($1::text[])",
        _ids(a.name for a in ledger.ingests if a.name))}
    for ack in ledger.ingests:
        if not ack.name:
            continue  # never acknowledged as created
        table.row("ingest jobs")["checked"] += 1
        job = jobs.get(ack.name.rsplit("/", 1)[1])
        if job is None:
            table.count("ingest jobs", "lost", example=f"{ack.name}: acknowledged, absent")
            continue
        if job["state"] not in TERMINAL:
            table.count("ingest jobs", "stuck", example=f"{ack.name}: {job['state']}")
            continue
        if job["state"] == "JOB_STATE_FAILED" and not _reason(job["error"]):
            table.count("ingest jobs", "stuck", example=f"{ack.name}: failed without a reason")
        if ack.outcome and OUTCOME_STATE.get(ack.outcome) != job["state"]:
            table.count("ingest jobs", "wrong",
                        example=f"{ack.name}: stream said {ack.outcome}, stored {job['state']}")
        if ack.mode == "follow":
            # Followed until the client cancelled it: its bars up to where it got.
            if ack.outcome != "RESULT_CANCELLED" or job["cursor_time"] is None:
                table.count("ingest jobs", "stuck",
                            example=f"{ack.name}: follow job ended {ack.outcome or 'unseen'}")
                continue
            ack = dataclasses.replace(ack, end=min(ack.end, job["cursor_time"]))
        elif ack.outcome != "RESULT_OK":
            continue
        await _bars(conn, ack, table, catalog)


async def _bars(conn: asyncpg.Connection, ack: Any, table: Table, catalog: Catalog) -> None:
    series = catalog.get(ack.exchange, ack.symbol, "1m")
    label = f"{ack.exchange} {ack.symbol} {ack.start:%d %H:%M}-{ack.end:%d %H:%M}"
    if series is None:
        table.count("bars", "wrong", example=f"{label}: not in the replay data")
        return
    lo, hi = series.window(int(ack.start.timestamp() * 1000), int(ack.end.timestamp() * 1000))
    rows = await conn.fetch(
        "SELECT (extract(epoch FROM ts) * 1000)::bigint AS ms, open, high, low, close, volume, "
        "count(*) OVER (PARTITION BY ts) AS copies FROM ingestion.market_data "
        "WHERE exchange = $1 AND symbol = $2 AND timeframe = '1m' AND ts >= $3 AND ts < $4 "
        "ORDER BY ts", ack.exchange, ack.symbol, ack.start, ack.end)
    table.row("bars")["checked"] += hi - lo
    dup = sum(1 for r in rows if r["copies"] > 1)
    if dup:
        table.count("bars", "duplicated", dup, f"{label}: {dup} bars stored twice")
    stored = {int(r["ms"]): r for r in rows}
    source_ts = series.ts_ms[lo:hi]
    missing = [int(t) for t in source_ts if int(t) not in stored]
    if missing:
        table.count("bars", "lost", len(missing),
                    f"{label}: {len(missing)} source bars absent, first "
                    f"{datetime.fromtimestamp(missing[0] / 1000, UTC):%Y-%m-%d %H:%M}")
    extra = set(stored) - {int(t) for t in source_ts}
    if extra:
        table.count("bars", "wrong", len(extra), f"{label}: {len(extra)} bars not in the source")
    differs = 0
    for i, t in enumerate(source_ts, start=lo):
        r = stored.get(int(t))
        if r is None:
            continue
        got = np.array([r["open"], r["high"], r["low"], r["close"], r["volume"]])
        want = np.array([series.open[i], series.high[i], series.low[i], series.close[i],
                         series.volume[i]])
        if not np.array_equal(got, want):
            differs += 1
    if differs:
        table.count("bars", "wrong", differs, f"{label}: {differs} bars differ from the source")


async def _deliveries(conn: asyncpg.Connection, ledger: Ledger, table: Table) -> None:
    """Every finished job of ours: one delivery per subscription, delivered (received by
    our webhook, signature checked) or dead-lettered with a reason; and seen on the
    SubscribeEvents stream."""
    if not ledger.channel:
        return
    expected = await expected_event_subjects(conn, ledger)
    rows = await conn.fetch(
        "SELECT id, subscription_id, event->>'subject' AS subject, state, last_error "
        "FROM notification.deliveries WHERE channel_id = $1", ledger.channel.rsplit("/", 1)[1])
    per_subject = Counter(r["subject"] for r in rows)
    table.row("deliveries")["checked"] += len(expected)
    for subject in expected:
        if per_subject[subject] == 0:
            table.count("deliveries", "lost", example=f"{subject}: finished, no delivery")
        elif per_subject[subject] > 1:
            table.count("deliveries", "duplicated", per_subject[subject] - 1,
                        f"{subject}: {per_subject[subject]} deliveries for one event")
    stored_ids = set()
    for r in rows:
        stored_ids.add(r["id"])
        if r["state"] == "DELIVERY_STATE_PENDING":
            table.count("deliveries", "stuck", example=f"{r['id']}: pending after the drain")
        elif r["state"] == "DELIVERY_STATE_DELIVERED":
            if ledger.webhook_received[r["id"]] == 0:
                table.count("deliveries", "lost",
                            example=f"{r['id']} ({r['subject']}): marked delivered, never "
                                    "received")
        elif r["state"] == "DELIVERY_STATE_DEAD_LETTERED" and not r["last_error"]:
            table.count("deliveries", "stuck", example=f"{r['id']}: dead-lettered, no reason")
    for webhook_id in ledger.webhook_received:
        if webhook_id not in stored_ids:
            table.count("deliveries", "duplicated",
                        example=f"{webhook_id}: received, no such delivery stored")
    # The SubscribeEvents client: each finished job's event seen (once after de-dup by id).
    table.row("event stream")["checked"] += len(expected)
    seen_subjects = Counter(ledger.event_subjects.values())
    for subject in expected:
        if seen_subjects[subject] == 0:
            table.count("event stream", "lost", example=f"{subject}: finished, never streamed")
        elif seen_subjects[subject] > 1:
            table.count("event stream", "duplicated", seen_subjects[subject] - 1,
                        f"{subject}: {seen_subjects[subject]} distinct events")


async def _redis(url: str, table: Table) -> None:
    """Consumer groups of every stream: entries delivered and never acknowledged."""
    client = aioredis.from_url(url)
    try:
        async for key in client.scan_iter(count=500, _type="stream"):
            for group in await client.xinfo_groups(key):
                name = group["name"].decode() if isinstance(group["name"], bytes) \
                    else str(group["name"])
                table.row("redis consumer groups")["checked"] += 1
                pending = int(group.get("pending", 0))
                if pending:
                    stream = key.decode() if isinstance(key, bytes) else str(key)
                    table.count("redis consumer groups", "stuck", pending,
                                f"{stream} / {name}: {pending} entries never acknowledged")
    finally:
        await client.aclose()
