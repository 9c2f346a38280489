"""The job queue: a Redis stream read through one consumer group by every replica.

Contract:
- ``enqueue`` appends {type, id} to the stream; each entry is delivered to one
  consumer of the group ``backtest-workers`` (so replicas share the work).
- ``claim`` returns the next entry for a consumer: first an entry another consumer
  left pending for longer than ``claim_idle_ms`` (its worker died: XAUTOCLAIM), else a
  new one (XREADGROUP, blocking up to ``block_ms``), else None.
- While a job runs, ``heartbeat`` re-claims the entry for its own consumer (XCLAIM with
  min idle 0, JUSTID), which resets its idle time: a live worker's job is never taken.
- ``ack`` acknowledges and deletes the entry once the job's outcome is stored. The
  attempt count lives with the job in PostgreSQL, where a re-run is decided.
- Lanes: backtests and sweeps wait in separate streams (``Lanes``), so a worker slot
  reserved for backtests never picks up a sweep and a backtest never queues behind one.
  ``length`` counts a lane's entries, queued or running (acknowledged ones are deleted):
  what a job enqueued now has ahead of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

logger = logging.getLogger(__name__)

GROUP = "backtest-workers"


@dataclass(frozen=True)
class JobEntry:
    """One delivered job: its stream entry id, type ("backtest" | "sweep" |
    "sweep-chunk"), job id and any other fields (a chunk's span and attempt)."""

    entry_id: str
    type: str
    job_id: str
    fields: Mapping[str, str] = field(default_factory=dict)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(entry_id: Any, fields: dict[Any, Any]) -> JobEntry:
    f = {_text(k): _text(v) for k, v in fields.items()}
    return JobEntry(_text(entry_id), f.get("type", "backtest"), f.get("id", ""),
                    {k: v for k, v in f.items() if k not in ("type", "id")})


class JobQueue:
    """Jobs waiting in a Redis Streams consumer group."""

    def __init__(self, redis: Any, stream: str, *, group: str = GROUP,
                 claim_idle_ms: int = 15_000) -> None:
        self._redis = redis
        self.stream = stream
        self.group = group
        self.claim_idle_ms = claim_idle_ms

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, type_: str, job_id: str, **extra: str) -> str:
        entry_id = await self._redis.xadd(self.stream, {"type": type_, "id": job_id, **extra})
        return _text(entry_id)

    async def length(self) -> int:
        """Entries in the lane: queued or running (acknowledged ones are deleted)."""
        return int(await self._redis.xlen(self.stream))

    async def claim(self, consumer: str, *, block_ms: int | None = 1000) -> JobEntry | None:
        """The next entry for ``consumer``; ``block_ms`` None asks without waiting."""
        reply = await self._redis.xautoclaim(
            self.stream, self.group, consumer, min_idle_time=self.claim_idle_ms,
            start_id="0-0", count=1)
        claimed = reply[1] if reply else []
        for entry_id, fields in claimed:
            if fields:  # an entry deleted meanwhile comes back without fields
                entry = _entry(entry_id, fields)
                logger.warning("reclaimed %s job %s from a silent worker", entry.type,
                               entry.job_id)
                return entry
            await self._redis.xack(self.stream, self.group, entry_id)
        try:
            reply = await self._redis.xreadgroup(
                self.group, consumer, {self.stream: ">"}, count=1, block=block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return None
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                return _entry(entry_id, fields)
        return None

    async def heartbeat(self, consumer: str, entry: JobEntry) -> None:
        await self._redis.xclaim(self.stream, self.group, consumer, 0, [entry.entry_id],
                                 justid=True)

    async def ack(self, entry: JobEntry) -> None:
        await self._redis.xack(self.stream, self.group, entry.entry_id)
        await self._redis.xdel(self.stream, entry.entry_id)


@dataclass(frozen=True)
class Lanes:
    """The two job lanes of the service: single backtests, and sweeps."""

    backtests: JobQueue
    sweeps: JobQueue

    def of(self, type_: str) -> JobQueue:
        return self.sweeps if type_ == "sweep" else self.backtests

    async def ensure_groups(self) -> None:
        await self.backtests.ensure_group()
        await self.sweeps.ensure_group()
