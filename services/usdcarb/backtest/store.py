"""PostgreSQL store of the backtest service (asyncpg).

Contract: jobs move QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED, and only a
guarded UPDATE moves them (the state they must be in, and for a finish the worker and
attempt that started them), so a cancel racing a worker, or a worker that was presumed
dead and replaced, can never overwrite the other's outcome. A success writes the job,
its trades and its equity curve (each one row of uncompressed column arrays:
trade_columns.py) in ONE transaction: nothing is half-written.
Tables are unqualified: the pool's search_path names the service's schema.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from usdcarb.backtest.colcodec import decode_columns
from usdcarb.backtest.model import BacktestJob, EquityColumns, JobState, SweepJob, TradeRows
from usdcarb.backtest.trade_columns import (
    INSERT_SQL,
    PAGE_SQL,
    TradeColumns,
    decode_page,
    encode_trades,
)
from usdcarb.platform.db import PooledStore
from usdcarb.platform.errors import NotFound

_ACTIVE = [JobState.QUEUED.value, JobState.RUNNING.value]
_BACKTEST_COLUMNS = (
    "id, strategy_version, config, strategy_kind, parameters, state, progress, result, error, "
    "fingerprint_digest, creator, owner, request_id, attempts, worker, last_sequence, create_time, "
    "start_time, end_time")
_SWEEP_COLUMNS = (
    "id, strategy_version, config, axes, objective, walk_forward, strategy_kind, parameters, "
    "state, progress, points, folds, error, creator, owner, request_id, attempts, worker, "
    "last_sequence, create_time, start_time, end_time, cross_validation, analysis")


def _backtest(row: asyncpg.Record) -> BacktestJob:
    data = dict(row)
    data["state"] = JobState(data["state"])
    return BacktestJob(**data)


def _sweep(row: asyncpg.Record) -> SweepJob:
    data = dict(row)
    data["state"] = JobState(data["state"])
    return SweepJob(**data)


class BacktestStore(PooledStore):
    """Backtest and sweep jobs, trades and equity curves."""

    # -- backtests ----------------------------------------------------------------
    async def insert_backtest(self, job: BacktestJob) -> tuple[BacktestJob, bool]:
        """Insert a queued job; with a known request id return the first job (False)."""
        row = await self._pool.fetchrow(
            f"""INSERT INTO backtests (id, strategy_version, config, strategy_kind, parameters,
                                       creator, request_id, progress, owner)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $6)
                ON CONFLICT (request_id) DO NOTHING RETURNING {_BACKTEST_COLUMNS}""",
            job.id, job.strategy_version, job.config, job.strategy_kind, job.parameters,
            job.creator, job.request_id, job.progress,
        )
        if row is not None:
            return _backtest(row), True
        row = await self._pool.fetchrow(
            f"SELECT {_BACKTEST_COLUMNS} FROM backtests WHERE request_id = $1", job.request_id)
        return _backtest(row), False

    async def get_backtest(self, job_id: str) -> BacktestJob:
        row = await self._pool.fetchrow(
            f"SELECT {_BACKTEST_COLUMNS} FROM backtests WHERE id = $1", job_id)
        if row is None:
            raise NotFound("backtest", f"backtests/{job_id}")
        return _backtest(row)

    async def list_backtests(
        self, *, limit: int, after: tuple[datetime, str] | None, state: str | None,
        strategy: str, owner: str | None = None,
    ) -> list[BacktestJob]:
        """Newest first; ``after`` is the (create_time, id) of the last row served."""
        clauses: list[str] = ["TRUE"]
        args: list[Any] = []
        if after is not None:
            args += [after[0], after[1]]
            clauses.append(f"(create_time, id) < (${len(args) - 1}, ${len(args)})")
        if state is not None:
            args.append(state)
            clauses.append(f"state = ${len(args)}")
        if strategy:
            args += [strategy, strategy + "/%"]
            clauses.append(f"(strategy_version = ${len(args) - 1} "
                           f"OR strategy_version LIKE ${len(args)})")
        if owner is not None:
            args.append(owner)
            clauses.append(f"owner = ${len(args)}")
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT {_BACKTEST_COLUMNS} FROM backtests WHERE {' AND '.join(clauses)} "
            f"ORDER BY create_time DESC, id DESC LIMIT ${len(args)}", *args)
        return [_backtest(r) for r in rows]

    async def start_backtest(
        self, job_id: str, worker: str, max_attempts: int, lost_error: dict[str, Any]
    ) -> tuple[BacktestJob | None, bool]:
        """Claim a job for ``worker``: (job, True) when it may run now.

        A finished job gives (job, False); a job that used up its attempts (its workers
        died) is FAILED here with ``lost_error`` and given as (job, False); an unknown id
        gives (None, False).
        """
        async with self.transaction() as conn:
            row = await conn.fetchrow(
                f"SELECT {_BACKTEST_COLUMNS} FROM backtests WHERE id = $1 FOR UPDATE", job_id)
            if row is None:
                return None, False
            job = _backtest(row)
            if job.state.terminal:
                return job, False
            if job.attempts >= max_attempts:
                row = await conn.fetchrow(
                    f"""UPDATE backtests SET state = $2, error = $3, end_time = now()
                        WHERE id = $1 RETURNING {_BACKTEST_COLUMNS}""",
                    job_id, JobState.FAILED.value, lost_error)
                return _backtest(row), False
            row = await conn.fetchrow(
                f"""UPDATE backtests SET state = $2, attempts = attempts + 1, worker = $3,
                           start_time = now(), error = NULL
                    WHERE id = $1 RETURNING {_BACKTEST_COLUMNS}""",
                job_id, JobState.RUNNING.value, worker)
            return _backtest(row), True

    async def succeed_backtest(
        self, job: BacktestJob, *, result: dict[str, Any], digest: str,
        trades: TradeRows | TradeColumns,
        equity: EquityColumns | Awaitable[EquityColumns],
    ) -> bool:
        """Store the result, trades and equity curve in one transaction (the columns as
        given: bytes or any bytes-like object, e.g. mapped from the engine process).
        ``equity`` may still be on its way: it is awaited inside the transaction, once
        the trades are written (and its error raised, nothing written).

        Return False (and write nothing) when the job is no longer this attempt's.
        """
        if isinstance(trades, TradeColumns):   # encoded already (finish.py)
            trade_args = encode_trades(job.id, trades)
        else:   # encoded before the transaction, off the event loop (tens of ms a 1M run)
            trade_args = await asyncio.to_thread(encode_trades, job.id, trades)
        async with self.transaction() as conn:
            status = await conn.execute(
                """UPDATE backtests SET state = $2, result = $3, fingerprint_digest = $4,
                          end_time = now()
                   WHERE id = $1 AND state = $5 AND worker = $6 AND attempts = $7""",
                job.id, JobState.SUCCEEDED.value, result, digest, JobState.RUNNING.value,
                job.worker, job.attempts)
            if status != "UPDATE 1":
                return False
            await conn.execute(INSERT_SQL, *trade_args)
            if not isinstance(equity, EquityColumns):
                equity = await equity
            await conn.execute(
                """INSERT INTO backtest_equity (backtest_id, points, time_ms, equity, drawdown,
                                                exposure, baseline)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (backtest_id) DO UPDATE SET points = EXCLUDED.points,
                     time_ms = EXCLUDED.time_ms, equity = EXCLUDED.equity,
                     drawdown = EXCLUDED.drawdown, exposure = EXCLUDED.exposure,
                     baseline = EXCLUDED.baseline""",
                job.id, equity.points, equity.time_ms, equity.equity, equity.drawdown,
                equity.exposure, equity.baseline)
            return True

    async def end_backtest(
        self, job_id: str, state: JobState, error: dict[str, Any] | None, *,
        worker: str | None = None, attempts: int | None = None,
        from_states: Sequence[str] = tuple(_ACTIVE),
    ) -> BacktestJob | None:
        """Move an active job to FAILED/CANCELLED; None when it was not in ``from_states``
        (or, with ``worker``, no longer that worker's attempt)."""
        args: list[Any] = [job_id, state.value, error, list(from_states)]
        guard = ""
        if worker is not None:
            args += [worker, attempts]
            guard = " AND worker = $5 AND attempts = $6"
        row = await self._pool.fetchrow(
            f"""UPDATE backtests SET state = $2, error = $3, end_time = now()
                WHERE id = $1 AND state = ANY($4::text[]){guard}
                RETURNING {_BACKTEST_COLUMNS}""", *args)
        return None if row is None else _backtest(row)

    async def set_last_sequence(self, table: str, job_id: str, sequence: int) -> None:
        assert table in ("backtests", "sweeps")
        await self._pool.execute(
            f"UPDATE {table} SET last_sequence = GREATEST(last_sequence, $2) WHERE id = $1",
            job_id, sequence)

    async def list_trades(self, job_id: str, *, after_seq: int, limit: int) -> list[Any]:
        """Trades with seq in (after_seq, after_seq + limit], as mappings (time: datetime
        or epoch ms)."""
        row = await self._pool.fetchrow(PAGE_SQL, job_id, after_seq, limit)
        if row is not None:
            return decode_page(row, after_seq)
        # A result stored before migration 0003 has its trades as rows.
        return list(await self._pool.fetch(
            """SELECT seq, time, venue, symbol, side, quantity, price, fee, slippage,
                      round_trip, signal_bar, signal_edge_bps
               FROM backtest_trades WHERE backtest_id = $1 AND seq > $2
               ORDER BY seq LIMIT $3""", job_id, after_seq, limit))

    async def get_equity(self, job_id: str) -> EquityColumns | None:
        row = await self._pool.fetchrow(
            "SELECT points, time_ms, equity, drawdown, exposure, baseline FROM backtest_equity "
            "WHERE backtest_id = $1", job_id)
        if row is None:
            return None
        return decode_columns(EquityColumns(
            points=row["points"], time_ms=bytes(row["time_ms"]), equity=bytes(row["equity"]),
            drawdown=bytes(row["drawdown"]), exposure=bytes(row["exposure"]),
            baseline=bytes(row["baseline"])))

    # -- sweeps -------------------------------------------------------------------
    async def insert_sweep(self, job: SweepJob) -> tuple[SweepJob, bool]:
        row = await self._pool.fetchrow(
            f"""INSERT INTO sweeps (id, strategy_version, config, axes, objective, walk_forward,
                                    strategy_kind, parameters, creator, request_id, progress,
                                    owner, cross_validation)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $9, $12)
                ON CONFLICT (request_id) DO NOTHING RETURNING {_SWEEP_COLUMNS}""",
            job.id, job.strategy_version, job.config, job.axes, job.objective,
            job.walk_forward, job.strategy_kind, job.parameters, job.creator, job.request_id,
            job.progress, job.cross_validation)
        if row is not None:
            return _sweep(row), True
        row = await self._pool.fetchrow(
            f"SELECT {_SWEEP_COLUMNS} FROM sweeps WHERE request_id = $1", job.request_id)
        return _sweep(row), False

    async def get_sweep(self, job_id: str) -> SweepJob:
        row = await self._pool.fetchrow(f"SELECT {_SWEEP_COLUMNS} FROM sweeps WHERE id = $1",
                                        job_id)
        if row is None:
            raise NotFound("sweep", f"sweeps/{job_id}")
        return _sweep(row)

    async def list_sweeps(
        self, *, limit: int, after: tuple[datetime, str] | None, owner: str | None = None
    ) -> list[SweepJob]:
        args: list[Any] = []
        where = "TRUE"
        if after is not None:
            args += [after[0], after[1]]
            where = "(create_time, id) < ($1, $2)"
        if owner is not None:
            args.append(owner)
            where += f" AND owner = ${len(args)}"
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT {_SWEEP_COLUMNS} FROM sweeps WHERE {where} "
            f"ORDER BY create_time DESC, id DESC LIMIT ${len(args)}", *args)
        return [_sweep(r) for r in rows]

    async def start_sweep(
        self, job_id: str, worker: str, max_attempts: int, lost_error: dict[str, Any]
    ) -> tuple[SweepJob | None, bool]:
        """Claim a sweep; same contract as ``start_backtest``."""
        async with self.transaction() as conn:
            row = await conn.fetchrow(
                f"SELECT {_SWEEP_COLUMNS} FROM sweeps WHERE id = $1 FOR UPDATE", job_id)
            if row is None:
                return None, False
            job = _sweep(row)
            if job.state.terminal:
                return job, False
            if job.attempts >= max_attempts:
                row = await conn.fetchrow(
                    f"""UPDATE sweeps SET state = $2, error = $3, end_time = now()
                        WHERE id = $1 RETURNING {_SWEEP_COLUMNS}""",
                    job_id, JobState.FAILED.value, lost_error)
                return _sweep(row), False
            row = await conn.fetchrow(
                f"""UPDATE sweeps SET state = $2, attempts = attempts + 1, worker = $3,
                           start_time = now(), error = NULL
                    WHERE id = $1 RETURNING {_SWEEP_COLUMNS}""",
                job_id, JobState.RUNNING.value, worker)
            return _sweep(row), True

    async def succeed_sweep(
        self, job: SweepJob, *, points: list[dict[str, Any]], folds: list[dict[str, Any]],
        progress: dict[str, Any], analysis: dict[str, Any] | None = None,
    ) -> bool:
        status = await self._pool.execute(
            """UPDATE sweeps SET state = $2, points = $3, folds = $4, progress = $5,
                      analysis = $9, end_time = now()
               WHERE id = $1 AND state = $6 AND worker = $7 AND attempts = $8""",
            job.id, JobState.SUCCEEDED.value, points, folds, progress, JobState.RUNNING.value,
            job.worker, job.attempts, analysis)
        return bool(status == "UPDATE 1")

    async def end_sweep(
        self, job_id: str, state: JobState, error: dict[str, Any] | None, *,
        worker: str | None = None, attempts: int | None = None,
        from_states: Sequence[str] = tuple(_ACTIVE), progress: dict[str, Any] | None = None,
        points: list[dict[str, Any]] | None = None, folds: list[dict[str, Any]] | None = None,
    ) -> SweepJob | None:
        """Move an active sweep to FAILED/CANCELLED (with the ``progress`` it reached and
        the ``points`` or ``folds`` it finished, if given); None when it was not in
        ``from_states`` or no longer that worker's."""
        args: list[Any] = [job_id, state.value, error, list(from_states), progress,
                           points or None, folds or None]
        guard = ""
        if worker is not None:
            args += [worker, attempts]
            guard = " AND worker = $8 AND attempts = $9"
        row = await self._pool.fetchrow(
            f"""UPDATE sweeps SET state = $2, error = $3, end_time = now(),
                       progress = coalesce($5::jsonb, progress),
                       points = coalesce($6::jsonb, points), folds = coalesce($7::jsonb, folds)
                WHERE id = $1 AND state = ANY($4::text[]){guard}
                RETURNING {_SWEEP_COLUMNS}""", *args)
        return None if row is None else _sweep(row)


def error_json(error: dict[str, Any] | None) -> str:
    """Render a stored error for logs."""
    return json.dumps(error or {}, sort_keys=True)
