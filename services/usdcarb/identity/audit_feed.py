"""Record the calls other services refused (the Redis stream ``usdcarb:audit``).

Every identity replica reads the stream in the consumer group ``identity-audit``; an
entry is acknowledged only after it is in ``audit_events``, where its entry id is
unique, so a redelivered entry is recorded once. Entries a dead replica left pending
are claimed after ``claim_idle_ms``. Redis being away delays the records; it never
touches the identity service's health or its other RPCs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError, ResponseError

from usdcarb.identity.model import AuditRecord
from usdcarb.identity.store import IdentityStore
from usdcarb.platform.audit import AUDIT_STREAM, DeniedCall, as_text

logger = logging.getLogger(__name__)

GROUP = "identity-audit"


def record_of(entry: DeniedCall) -> AuditRecord:
    """The audit event of a refused call (as identity records its own)."""
    return AuditRecord.denied_call(
        subject=entry.subject, roles=entry.roles, client_ip=entry.client_ip,
        method=entry.method, service=entry.service,
        time=datetime.fromtimestamp(entry.time_ms / 1000, UTC) if entry.time_ms else None)


class AuditFeed:
    """Move entries of ``AUDIT_STREAM`` into the audit log, each once."""

    def __init__(self, redis: Any, store: IdentityStore, *, batch: int = 200,
                 block_ms: int = 1000, claim_idle_ms: int = 30_000) -> None:
        self._redis = redis
        self._store = store
        self._batch = batch
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self.consumer = f"identity-{socket.gethostname()}-{os.getpid()}"
        self.recorded = 0

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(AUDIT_STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def step(self) -> int:
        """Record one batch (entries left by a dead replica first); return its size."""
        claimed = await self._redis.xautoclaim(
            AUDIT_STREAM, GROUP, self.consumer, min_idle_time=self._claim_idle_ms,
            start_id="0-0", count=self._batch)
        entries = [e for e in claimed[1] if e and e[1]]
        if not entries:
            reply = await self._redis.xreadgroup(GROUP, self.consumer, {AUDIT_STREAM: ">"},
                                                 count=self._batch, block=self._block_ms)
            entries = [e for _, got in reply or [] for e in got]
        if not entries:
            return 0
        ids = [e[0] for e in entries]
        events = [(as_text(entry_id), record_of(DeniedCall.from_fields(fields)))
                  for entry_id, fields in entries]
        self.recorded += await self._store.insert_audit_once(events)
        await self._redis.xack(AUDIT_STREAM, GROUP, *ids)
        return len(entries)

    async def run(self) -> None:
        """Record until cancelled; wait and retry while Redis or PostgreSQL is away."""
        delay, ready = 0.5, False
        while True:
            try:
                if not ready:
                    await self.ensure_group()
                    ready = True
                await self.step()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ConnectionError) as exc:
                ready = ready and "NOGROUP" not in str(exc)
                logger.warning("audit feed: %s: %s; retrying in %.1fs",
                               type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                logger.exception("audit feed: recording failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
