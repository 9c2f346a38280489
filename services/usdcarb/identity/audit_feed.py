"""Record the calls other services refused (the Redis stream ``usdcarb:audit``).

Every identity replica reads the stream in the consumer group ``identity-audit``; an
entry is acknowledged only after it is in ``audit_events``, where its entry id is
unique, so a redelivered entry is recorded once. Entries a dead replica left pending
are claimed after ``claim_idle_ms``. Redis being away delays the records; it never
touches the identity service's health or its other RPCs.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from usdcarb.identity.model import AuditRecord
from usdcarb.identity.store import IdentityStore
from usdcarb.platform.audit import AUDIT_STREAM, DeniedCall
from usdcarb.platform.streams import Entry, GroupReader

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
        self._store = store
        self.consumer = f"identity-{socket.gethostname()}-{os.getpid()}"
        self._reader = GroupReader(redis, stream=AUDIT_STREAM, group=GROUP,
                                   consumer=self.consumer, batch=batch, block_ms=block_ms,
                                   claim_idle_ms=claim_idle_ms)
        self.recorded = 0

    async def ensure_group(self) -> None:
        await self._reader.ensure_group()

    async def step(self) -> int:
        """Record one batch (entries left by a dead replica first); return its size."""
        return await self._reader.step(self._record)

    async def run(self) -> None:
        """Record until cancelled; wait and retry while Redis or PostgreSQL is away."""
        await self._reader.run(self._record, name="audit feed", first_delay_s=0.5)

    async def _record(self, entries: Sequence[Entry]) -> None:
        events = [(entry_id, record_of(DeniedCall.from_fields(fields)))
                  for entry_id, fields in entries]
        self.recorded += await self._store.insert_audit_once(events)
